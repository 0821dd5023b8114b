#if canImport(Glibc)
import Glibc
#endif
import Foundation
import NIOCore
import NIOHTTP1
import NIOHTTPCompression

/// The master's side of one HTTP connection, in its reactor thread. It parses the requests
/// from the bytes read (``HTTPRequestParser``, llhttp), gathers each request whole, hands it
/// to a worker, and writes the worker's answer back: the common response as bytes of its own
/// (`RawResponse`), past NIO's encoder, and the others through that encoder.
///
/// It takes one request at a time, which keeps responses in request order whichever
/// workers answer them: the parts of a pipelined request are held until the response in
/// hand has ended, and reading pauses while any are held. It does this itself rather than
/// with NIO's `HTTPServerPipelineHandler` (and its `HTTPServerProtocolErrorHandler`):
/// that handler paused reading around every request whose answer was not written within
/// the read, which in process mode is every request (two `epoll_ctl` calls each), and
/// each response had to pass it, and the encoder, as NIO parts, cast back from `NIOAny` at
/// every handler. Together that was over a quarter of the master's instructions per request.
///
/// Touched on its reactor's loop only, and no access to its state calls anything that
/// touches the same property: the run-time exclusivity checks are off (see ``EpollSocket``).
final class HTTPSession: ChannelDuplexHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private enum State {
        /// Waiting for a request head; the header timeout runs.
        case idle
        /// Gathering a request's body; the body timeout runs.
        case reading(ParsedRequestHead, body: ByteBuffer)
        /// The request is with a worker and nothing of its response came yet; the response
        /// timeout runs.
        case waiting(ParsedRequestHead)
        /// The response's head is written and body parts follow; `close` once it ends.
        case responding(ParsedRequestHead, close: Bool)
        /// The connection is being closed: everything that still arrives is dropped.
        case closing
    }

    private unowned let connection: ClientConnection
    private let settings: ProtocolSettings
    @exclusivity(unchecked) private var state = State.idle
    private let parser = HTTPRequestParser()
    @exclusivity(unchecked) private var context: ChannelHandlerContext?
    /// Where responses are written from: this handler's place, or with compression on the
    /// place past the compressor (see `install`), so that they pass it.
    @exclusivity(unchecked) private var responses: ChannelHandlerContext?
    /// The number of the request now in hand; answers for another one are late and dropped.
    @exclusivity(unchecked) private var sequence: UInt32 = 0
    /// The one timeout running (head, body, response, keep-alive): checked by the reactor's
    /// sweep rather than scheduled on the loop, because arming and cancelling a scheduled
    /// task for every request cost more than the rest of the request's handling.
    @exclusivity(unchecked) private(set) var timer: (deadline: NIODeadline, body: (HTTPSession) -> Void)?
    /// A file region is being sent. NIO counts its bytes as pending output, so the
    /// `bufferOutputSize` bound (meant for bytes held in memory) does not apply meanwhile.
    @exclusivity(unchecked) private(set) var sendingFile = false
    /// Request heads received, to tell whether a new request began meanwhile.
    @exclusivity(unchecked) private var headsSeen = 0
    /// What arrived while a response was pending (pipelining), taken in order once it ends.
    @exclusivity(unchecked) private var held = CircularBuffer<Held>()
    private enum Held {
        case part(HTTPRequestEvent)
        case inputClosed
        case parseError(HTTPParseError)
    }
    /// The channel asked for a read while requests were held: it is passed on once they are taken.
    @exclusivity(unchecked) private var readWithheld = false
    /// `takeHeld` is running (a request it hands on may be answered at once, in base mode).
    @exclusivity(unchecked) private var takingHeld = false
    /// The client will send nothing more: close once the response in hand has ended.
    @exclusivity(unchecked) private var inputClosed = false
    /// The worker (its IPC endpoint) that holds the request in hand; nil while it waits for one.
    @exclusivity(unchecked) var heldBy: ObjectIdentifier?

    /// NIO's response encoder's place: writing from it puts bytes past the encoder (and
    /// the compressor), straight to the socket.
    @exclusivity(unchecked) private var wire: ChannelHandlerContext?
    /// Responses may be written as `RawResponse` bytes: not when they may be compressed
    /// (the compressor pairs each response it sees with a request, so it must see them all).
    @exclusivity(unchecked) private var rawResponses = false

    /// Where static files come from, when this listener serves them.
    private let staticFiles: StaticFileSettings?

    init(connection: ClientConnection, settings: ProtocolSettings) {
        self.connection = connection
        self.settings = settings
        if settings.enableStaticHandler, let root = settings.documentRoot {
            staticFiles = StaticFileSettings(documentRoot: root, enabled: true, indexFiles: settings.httpIndexFiles)
        } else {
            staticFiles = nil
        }
    }

    /// Adds an HTTP connection's handlers (the connection's transport goes after): NIO's
    /// response encoder, the session, and with compression on NIO's compressor.
    ///
    /// The compressor pairs each response with the Accept-Encoding of the request it answers,
    /// in order, from the request heads that pass it inbound: the session passes it each head
    /// it parses, and writes its responses from past it (a sink after it drops the heads), so
    /// that every response passes it and none goes past the encoder. NIO's encoder is not
    /// told which request a response answers (as `configureHTTPServerPipeline` tells it, so
    /// that it can leave out the body of a response to HEAD): most responses never pass the
    /// encoder, and the session leaves out those bodies itself.
    @discardableResult
    static func install(on pipeline: ChannelPipeline.SynchronousOperations, for connection: ClientConnection,
                        transport: ChannelTransport, framing: ProtocolSettings) throws -> HTTPSession {
        let encoder = HTTPResponseEncoder()
        try pipeline.addHandler(encoder)
        let session = HTTPSession(connection: connection, settings: framing)
        try pipeline.addHandler(session)
        session.responses = session.context
        if framing.httpCompression {
            try pipeline.addHandler(HTTPResponseCompressor(
                responseCompressionPredicate: compressionPredicate(minLength: framing.httpCompressionMinLength)))
            let sink = RequestHeadSink()
            try pipeline.addHandler(sink)
            session.responses = try pipeline.context(handler: sink)
        }
        session.rawResponses = !framing.httpCompression
        session.wire = try pipeline.context(handler: encoder)
        transport.output = session.wire
        connection.http = session
        return session
    }

    /// Drops the request heads the session passes the compressor (see `install`).
    private final class RequestHeadSink: ChannelInboundHandler, Sendable {
        typealias InboundIn = HTTPServerRequestPart
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {}
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func channelActive(context: ChannelHandlerContext) {
        awaitNextRequest()
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer = nil
        state = .closing
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer = nil
        held.removeAll()
        self.context = nil
        responses = nil
        wire = nil
    }

    /// Reading pauses while pipelined requests are held, so that a client cannot make the
    /// master buffer more than one read's worth of them.
    func read(context: ChannelHandlerContext) {
        if held.isEmpty {
            context.read()
        } else {
            readWithheld = true
        }
    }

    /// The client shut down its sending side (allowed on HTTP listeners): it still reads, so
    /// the requests it sent are answered, and then the connection closes.
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard let event = event as? ChannelEvent, event == .inputClosed else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        if !held.isEmpty { return held.append(.inputClosed) }
        inputEnded()
    }

    private func inputEnded() {
        switch state {
        case .idle, .reading: closeNow(reason: nil)
        case .waiting, .responding: inputClosed = true
        case .closing: break
        }
    }

    // MARK: Requests

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        connection.touched()
        if case .closing = state { return }
        do {
            try parser.feed(unwrapInboundIn(data)) { arrived($0, context: context) }
        } catch let error as HTTPParseError {
            if !held.isEmpty || responsePending { return held.append(.parseError(error)) }
            badRequest(error)
        } catch {
            closeNow(reason: "\(error)")
        }
    }

    private func arrived(_ event: HTTPRequestEvent, context: ChannelHandlerContext) {
        if case .closing = state { return }
        if settings.httpCompression, case .head(let head) = event {
            // The compressor learns each request's Accept-Encoding, in order (see `install`).
            context.fireChannelRead(wrapInboundOut(.head(head.nioHead)))
        }
        if !held.isEmpty || responsePending { return held.append(.part(event)) }
        take(event, context: context)
    }

    /// A response is being waited for or written: what arrives now belongs to a later request.
    private var responsePending: Bool {
        switch state {
        case .waiting, .responding: return true
        case .idle, .reading, .closing: return false
        }
    }

    /// Bytes that are not a request get a 400 (431 for a head too long), once the responses
    /// before it are out (none can be sent once one has begun), and the connection closes.
    private func badRequest(_ error: HTTPParseError) {
        guard let context else { return }
        if case .closing = state { return }
        state = .closing
        timer = nil
        let stats = connection.reactor.core.stats
        stats.abortCount.wrappingIncrement(ordering: .relaxed)
        connection.reactor.core.logger.info(
            "connection \(connection.id) from \(connection.remoteIP):\(connection.remotePort): malformed HTTP request (\(error)); closing it")
        let answer = error.headTooLarge ? HTTPSession.headTooLargeBytes : HTTPSession.badRequestBytes
        let sent = context.eventLoop.makePromise(of: Void.self)
        // Past the compressor, which has no request to pair it with.
        wire?.writeAndFlush(NIOAny(context.channel.allocator.buffer(staticString: answer)), promise: sent)
        sent.futureResult.whenComplete { [self] _ in lingeringClose() }
    }

    /// NIO's error handler's answer, byte for byte.
    static let badRequestBytes: StaticString = "HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    static let headTooLargeBytes: StaticString =
        "HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"

    /// Takes what was held while the response just ended was pending, up to the next request
    /// that needs a worker (or until the connection closes), then lets reading go on.
    private func takeHeld() {
        guard !takingHeld, let context else { return }
        takingHeld = true
        defer { takingHeld = false }
        while !held.isEmpty && !responsePending {
            if case .closing = state { held.removeAll(); break }
            switch held.removeFirst() {
            case .part(let part): take(part, context: context)
            case .inputClosed: inputEnded()
            case .parseError(let error): badRequest(error)
            }
        }
        if held.isEmpty && readWithheld {
            readWithheld = false
            context.read()
        }
    }

    private func take(_ part: HTTPRequestEvent, context: ChannelHandlerContext) {
        switch (part, state) {
        case (.head(let head), .idle):
            timer = nil
            headsSeen &+= 1
            let max = settings.packageMaxLength
            if let length = head.contentLength, length > UInt64(max) {
                reject(.payloadTooLarge, head, reason: "request body of \(length) bytes exceeds packageMaxLength (\(max))")
                return
            }
            if !(head.version < .http1_1), head.expectsContinue {
                // The client waits for this before it sends the body; the length was checked
                // above. Written from here, past the compressor, which would take it for the
                // response and pair the real one with the next request. (An HTTP/1.0 client
                // gets no 1xx, RFC 9110 §15.2; it sends its body without waiting long.)
                context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .continue))),
                                      promise: nil)
            }
            state = .reading(head, body: context.channel.allocator.buffer(capacity: 0))
            armTimer(settings.httpBodyTimeout) { session in
                guard case .reading(let head, _) = session.state else { return }
                session.reject(.requestTimeout, head, reason: "request body not received within httpBodyTimeout")
            }
        case (.body(var part), .reading(let head, var body)):
            // Released from the state while appending, so the buffer is not copied on write.
            state = .idle
            if body.readableBytes + part.readableBytes > settings.packageMaxLength {
                reject(.payloadTooLarge, head,
                       reason: "request body exceeds packageMaxLength (\(settings.packageMaxLength))")
                return
            }
            body.writeBuffer(&part)
            state = .reading(head, body: body)
        case (.end, .reading(let head, let body)):
            timer = nil
            if offerToStaticHandler(head) { return }
            sequence &+= 1
            state = .waiting(head)
            armTimer(settings.httpResponseTimeout) { session in
                guard case .waiting(let head) = session.state else { return }
                session.connection.reactor.core.logger.warning(
                    "connection \(session.connection.id): no worker answered \(head.method) \(head.uri) within httpResponseTimeout; 504")
                session.answer(.gatewayTimeout, head)
            }
            connection.reactor.dispatchHTTP(connection, sequence: sequence, head: head, body: body)
        case (_, .closing):
            break
        case (let part, _):
            // The parts of a pipelined request are held while a response is pending, so this is a bug.
            connection.reactor.core.logger.error("connection \(connection.id): unexpected HTTP part \(part); closing it")
            closeNow(reason: nil)
        }
    }

    /// The hook for static files (`documentRoot` + `enableStaticHandler`, Protocol/StaticFiles.swift):
    /// a request the static handler serves is answered here in the reactor, without a worker
    /// hop, and the method returns true ("handled"); false ("not mine") sends it on to a
    /// worker. Offered once the request is read whole, so that its body (if any) is consumed
    /// and pipelined responses stay in order.
    private func offerToStaticHandler(_ head: ParsedRequestHead) -> Bool {
        guard let staticFiles, let context, let responses,
              let answer = StaticFiles.prepare(head.nioHead, settings: staticFiles, now: Date()) else { return false }
        let close = !head.isKeepAlive || inputClosed
        var extra = HTTPHeaders([("Date", HTTPDate.now()), ("Server", HTTPDate.serverName)])
        if close {
            extra.add(name: "Connection", value: "close")
        } else if head.version < .http1_1 {
            extra.add(name: "Connection", value: "keep-alive")
        }
        // The compressor cannot compress a file region; the marker makes it pass the answer through.
        if settings.httpCompression { extra.add(name: HTTPSession.uncompressedMarker, value: "1") }
        sendingFile = answer.file != nil
        state = close ? .closing : .idle
        let mark = headsSeen
        let done = context.eventLoop.makePromise(of: Void.self)
        done.futureResult.whenComplete { [self] _ in
            sendingFile = false
            if close { return lingeringClose() }
            guard case .idle = state, headsSeen == mark else { return }
            awaitNextRequest()
        }
        StaticFiles.write(answer.response, file: answer.file, version: head.version, extraHeaders: extra,
                          context: responses, promise: done)
        if !close { takeHeld() }
        return true
    }

    // MARK: Responses

    /// Whether a worker's header fields include one that may not be sent: a name that is not
    /// a token, or a value with a control character (which could end the head early and
    /// inject fields). `Response` cleans what handlers set, so only a worker that bypassed
    /// it could send one.
    static func hasInvalidField(_ headers: [HTTPWirePair]) -> Bool {
        !headers.allSatisfy { RawResponse.isToken($0.name) && RawResponse.isFieldValue($0.value) }
    }

    /// Whether a status can end a request. An interim one (1xx) from a handler would leave the
    /// response open in NIO's handlers, whose preconditions would then stop the master.
    static func isFinal(_ status: Int) -> Bool {
        (200...999).contains(status)
    }

    /// A worker's response head, with the body so far (the whole body when `end`).
    func response(sequence: UInt32, status: Int, headers: [HTTPWirePair], body: ByteBuffer, end: Bool) {
        guard sequence == self.sequence, case .waiting(let request) = state, let context = responses else { return }
        guard Self.isFinal(status) else {
            return answer(.internalServerError, request, why: "a handler answered with status \(status), which cannot end a response")
        }
        timer = nil
        // RawResponse checks the fields itself (and declines invalid ones).
        if end, rawResponses,
           let (bytes, close) = RawResponse.encode(status: status, headers: headers, body: body, isHead: request.isHead,
                                                   version: request.version, keepAlive: request.isKeepAlive,
                                                   allocator: context.channel.allocator) {
            // A response that fits a socket buffer leaves at once: the wait for the next
            // request starts now, without a promise to learn when it was written.
            return finish(close: close, last: .raw(bytes), leavesAtOnce: bytes.readableBytes <= 64 * 1024)
        }
        guard !Self.hasInvalidField(headers) else {
            return answer(.internalServerError, request, why: "a handler's header field has a character HTTP does not allow")
        }
        var fields = HTTPHeaders(headers.map { ($0.name, $0.value) })
        let status = HTTPResponseStatus(statusCode: status)
        var close = !request.isKeepAlive || fields.first(name: "connection")?.lowercased() == "close"
        let noBody = status.code == 204 || status.code == 304
        // Framing is the master's: a whole body has a length, a stream is chunked by the encoder.
        fields.remove(name: "Transfer-Encoding")
        if end && !noBody && !(request.isHead && fields.contains(name: "Content-Length")) {
            fields.replaceOrAdd(name: "Content-Length", value: String(body.readableBytes))
        }
        if !end && !fields.contains(name: "Content-Length") && request.version < .http1_1 {
            // HTTP/1.0 has no chunked encoding: the end of the connection ends the body.
            close = true
        }
        if noBody { fields.remove(name: "Content-Length") }
        if !end && request.isHead {
            // No body goes out, and its length is not known: the connection ends with it.
            close = true
        }
        let head = responseHead(status, fields, for: request, close: close)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        if !noBody { writeBody(body, for: request) }
        if end {
            finish(close: close)
        } else {
            state = .responding(request, close: close)
            context.flush()
        }
    }

    /// More of a worker's response body; `end`: its last part.
    func responseBody(sequence: UInt32, data: ByteBuffer, end: Bool) {
        guard sequence == self.sequence, case .responding(let request, let close) = state, let context = responses else { return }
        // The encoder is not told which request a response answers: the session leaves out
        // the body of a response to HEAD, and its end (the head of a stream to HEAD says
        // chunked, and the encoder would write the last chunk; the connection closes instead).
        if request.isHead {
            if end { finish(close: true, last: .nothing) }
            return
        }
        writeBody(data, for: request)
        if end { finish(close: close) } else { context.flush() }
    }

    /// A worker's whole response whose body is a file: sent from here with sendfile (a
    /// `FileRegion`), a socket buffer at a time as the client reads, so a large file neither
    /// crosses the IPC socket nor counts against `bufferOutputSize`.
    func sendfile(sequence: UInt32, status: Int, headers: [HTTPWirePair], path: String,
                  identity: (device: UInt64, inode: UInt64), offset: UInt64, length: UInt64) {
        guard sequence == self.sequence, case .waiting(let request) = state, let context = responses else { return }
        guard Self.isFinal(status) else {
            return answer(.internalServerError, request, why: "a handler answered with status \(status), which cannot end a response")
        }
        guard !Self.hasInvalidField(headers) else {
            return answer(.internalServerError, request, why: "a handler's header field has a character HTTP does not allow")
        }
        timer = nil
        var file: NIOFileHandle?
        if !request.isHead && length > 0 {
            // The file the worker looked at, still long enough; a file replaced or cut short
            // since cannot give the length the worker promised.
            guard let fd = try? Syscall.open(path, O_RDONLY) else {
                return answer(.internalServerError, request, why: "sendfile: cannot open \(path)")
            }
            var info = stat()
            guard fstat(fd, &info) == 0, UInt64(info.st_dev) == identity.device, UInt64(info.st_ino) == identity.inode,
                  UInt64(info.st_size) >= offset + length else {
                Syscall.close(fd)
                return answer(.internalServerError, request, why: "sendfile: \(path) changed after the worker checked it")
            }
            file = NIOFileHandle(_deprecatedTakingOwnershipOfDescriptor: fd)
        }
        var fields = HTTPHeaders(headers.map { ($0.name, $0.value) })
        fields.replaceOrAdd(name: "Content-Length", value: String(length))
        // The compressor cannot compress a file region: this marker, which its predicate
        // removes, makes it pass the response through.
        if settings.httpCompression { fields.add(name: HTTPSession.uncompressedMarker, value: "1") }
        let close = !request.isKeepAlive || fields.first(name: "connection")?.lowercased() == "close"
        let head = responseHead(HTTPResponseStatus(statusCode: status), fields, for: request, close: close)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        if let file {
            let region = FileRegion(fileHandle: file, readerIndex: Int(offset), endIndex: Int(offset + length))
            let sent = context.eventLoop.makePromise(of: Void.self)
            sendingFile = true
            context.write(wrapOutboundOut(.body(.fileRegion(region))), promise: sent)
            let watchdog = watchForTruncation(file, needing: Int64(offset + length))
            sent.futureResult.whenComplete { [self] _ in
                sendingFile = false
                watchdog.cancel()
                try? file.close()
            }
        }
        finish(close: close)
    }

    /// Closes the connection if the file being sent shrinks below `end`: sendfile then
    /// returns 0, which NIO takes as "try again when writable", at once, forever.
    private func watchForTruncation(_ file: NIOFileHandle, needing end: Int64) -> RepeatedTask {
        let loop = context!.eventLoop
        let session = NIOLoopBound(self, eventLoop: loop)
        return loop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { task in
            let size = try? file.withUnsafeFileDescriptor { fd -> Int64 in
                var info = stat()
                return fstat(fd, &info) == 0 ? Int64(info.st_size) : Int64.max
            }
            if let size, size < end {
                task.cancel()
                session.value.closeNow(reason: "a file being sent was truncated")
            }
        }
    }

    /// The header that keeps the compressor off a response; never sent.
    static let uncompressedMarker = "x-swoop-uncompressed"

    /// The worker holding this connection's request died. A request still waiting for its
    /// response gets a 503 and the connection goes on; one whose response had begun cannot
    /// be completed, so the connection is closed. A worker that held an earlier request of
    /// the connection (in dispatch modes 1 and 3 each request may go elsewhere) is not the
    /// one the request in hand depends on.
    func workerDied(_ worker: ObjectIdentifier, _ reason: String) {
        guard heldBy == worker else { return }
        switch state {
        case .waiting(let head):
            connection.reactor.core.logger.warning("connection \(connection.id): \(reason); answering 503")
            answer(.serviceUnavailable, head)
        case .responding:
            closeNow(reason: reason)
        default:
            break
        }
    }

    /// Answers the request in hand from the master with a short text (500, 503, 504).
    private func answer(_ status: HTTPResponseStatus, _ request: ParsedRequestHead, why: String? = nil) {
        if let why { connection.reactor.core.logger.warning("connection \(connection.id): \(why); answering \(status.code)") }
        respondLocally(status, headers: HTTPHeaders([("Content-Type", "text/plain")]),
                       body: ByteBuffer(string: "\(status.code) \(status.reasonPhrase)\n"), to: request)
    }

    /// Writes a whole response made in the reactor (no worker involved) to `request`, the
    /// request in hand, and goes on to the next request, or closes when the request asked so.
    func respondLocally(_ status: HTTPResponseStatus, headers: HTTPHeaders, body: ByteBuffer, to request: ParsedRequestHead) {
        guard let context = responses else { return }
        timer = nil
        var fields = headers
        fields.replaceOrAdd(name: "Content-Length", value: String(body.readableBytes))
        let close = !request.isKeepAlive || fields.first(name: "Connection")?.lowercased() == "close"
        context.write(wrapOutboundOut(.head(responseHead(status, fields, for: request, close: close))), promise: nil)
        writeBody(body, for: request)
        finish(close: close)
    }

    /// Refuses a request before it was read whole: answers and closes, as the rest of its
    /// body cannot be told apart from the next request.
    private func reject(_ status: HTTPResponseStatus, _ request: ParsedRequestHead, reason: String) {
        guard let context = responses else { return }
        timer = nil
        connection.reactor.core.logger.info("connection \(connection.id): \(reason); answering \(status.code) and closing")
        let text = "\(status.code) \(status.reasonPhrase)\n"
        let fields = HTTPHeaders([("Content-Type", "text/plain"), ("Content-Length", String(text.utf8.count)),
                                  ("Connection", "close")])
        context.write(wrapOutboundOut(.head(responseHead(status, fields, for: request, close: true))), promise: nil)
        writeBody(context.channel.allocator.buffer(string: text), for: request)
        finish(close: true)
    }

    /// Writes a part of a response's body through the encoder; none for a response to HEAD.
    /// (The encoder is not told which request a response answers, see `install`, so the
    /// session leaves those bodies out: this is the one place that writes body bytes.)
    private func writeBody(_ data: ByteBuffer, for request: ParsedRequestHead) {
        guard data.readableBytes > 0, !request.isHead, let context = responses else { return }
        context.write(wrapOutboundOut(.body(.byteBuffer(data))), promise: nil)
    }

    /// What ends a response: NIO's end (through the encoder), a whole response encoded by
    /// `RawResponse` (past it), or nothing (a stream to HEAD, cut short by the close).
    private enum LastWrite {
        case end
        case raw(ByteBuffer)
        case nothing
    }

    /// Ends the response in hand; the connection then takes the next request (held ones
    /// first) or closes.
    private func finish(close: Bool, last: LastWrite = .end, leavesAtOnce: Bool = false) {
        guard let context = responses else { return }
        let closing = close || inputClosed
        state = closing ? .closing : .idle
        let flushed = leavesAtOnce && !closing ? nil : context.eventLoop.makePromise(of: Void.self)
        switch last {
        case .end: context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: flushed)
        case .raw(let bytes):
            if let wire { wire.writeAndFlush(NIOAny(bytes), promise: flushed) } else { flushed?.succeed(()) }
        case .nothing:
            context.flush()
            flushed?.succeed(())
        }
        if closing {
            flushed?.futureResult.whenComplete { [self] _ in lingeringClose() }
            return
        }
        let mark = headsSeen
        if let flushed {
            // The wait for the next request starts once this response has left, not when it
            // was queued: a large file to a slow client may take longer than the timeout.
            flushed.futureResult.whenSuccess { [self] in
                guard case .idle = state, headsSeen == mark else { return }
                awaitNextRequest()
            }
        } else {
            awaitNextRequest()
        }
        // A held request's own timeout replaces the wait armed above.
        takeHeld()
    }

    /// Closes the sending side first and the socket a moment later. Closing at once while
    /// the client is still sending (the body of a refused request) would make the kernel
    /// answer its data with a reset, which can destroy the response before the client reads it.
    private func lingeringClose() {
        guard let context else { return }
        connection.closedByServer = true
        context.close(mode: .output, promise: nil)
        armTimer(1) { session in session.closeNow(reason: nil) }
    }

    private func closeNow(reason: String?) {
        state = .closing
        connection.reactor.close(connection.id, reset: false, reason: reason)
    }

    /// The head sent for `request`: its version, Swoop's Server and Date headers (unless the
    /// handler set them), and the connection header that the version needs.
    private func responseHead(_ status: HTTPResponseStatus, _ fields: HTTPHeaders, for request: ParsedRequestHead,
                              close: Bool) -> HTTPResponseHead {
        var fields = fields
        if !fields.contains(name: "Server") { fields.add(name: "Server", value: HTTPDate.serverName) }
        if !fields.contains(name: "Date") { fields.add(name: "Date", value: HTTPDate.now()) }
        if close {
            fields.replaceOrAdd(name: "Connection", value: "close")
        } else if request.version < .http1_1 {
            fields.replaceOrAdd(name: "Connection", value: "keep-alive")
        }
        return HTTPResponseHead(version: request.version < .http1_1 ? .http1_0 : .http1_1, status: status, headers: fields)
    }

    /// Which responses the compressor may compress: text of at least `minLength` bytes, or
    /// streamed text (its length unknown), and nothing the handler encoded itself.
    static func compressionPredicate(minLength: Int) -> HTTPResponseCompressor.ResponseCompressionPredicate {
        return { head, supported in
            if head.headers.contains(name: uncompressedMarker) {
                head.headers.remove(name: uncompressedMarker)
                return .doNotCompress
            }
            guard supported, !head.headers.contains(name: "Content-Encoding") else { return .doNotCompress }
            if let length = head.headers.first(name: "Content-Length").flatMap(Int.init), length < minLength {
                return .doNotCompress
            }
            let type = head.headers.first(name: "Content-Type")?.lowercased() ?? ""
            let text = type.hasPrefix("text/") || type.hasPrefix("application/json") || type.contains("javascript")
                || type.hasPrefix("application/xml") || type.hasPrefix("image/svg+xml") || type.hasSuffix("+json")
            return text ? .compressIfPossible : .doNotCompress
        }
    }

    /// The wait for the next request's head (also the keep-alive idle time): when it runs
    /// out the connection closes.
    private func awaitNextRequest() {
        armTimer(settings.httpHeaderTimeout) { session in session.closeNow(reason: nil) }
    }

    private func armTimer(_ seconds: Double, _ body: @escaping (HTTPSession) -> Void) {
        timer = (.now() + .milliseconds(Int64(seconds * 1000)), body)
        connection.reactor.sweepHTTPTimers()
    }

    /// Runs the timeout if it is due (the reactor's sweep).
    func fireTimer(now: NIODeadline) {
        guard let (deadline, body) = timer, deadline <= now else { return }
        timer = nil
        body(self)
    }
}

extension HTTPVersion {
    static func < (a: HTTPVersion, b: HTTPVersion) -> Bool {
        (a.major, a.minor) < (b.major, b.minor)
    }
}
