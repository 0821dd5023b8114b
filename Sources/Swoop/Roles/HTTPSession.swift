#if canImport(Glibc)
import Glibc
#endif
import Foundation
import NIOCore
import NIOHTTP1

/// One HTTP connection's protocol, above its transport (a NIO channel in the master's
/// reactor threads, a socket of Swoop's own loop in a base-mode worker): it parses the
/// requests from the bytes read (``HTTPRequestParser``, llhttp), gathers each request whole,
/// hands it to a worker, and writes the worker's answer back as bytes: the common response
/// encoded whole by ``RawResponse``, the others by ``ResponseEncoder``, compressed by
/// ``ResponseCompressor`` when `httpCompression` is on and the client accepts it.
///
/// It takes one request at a time, which keeps responses in request order whichever
/// workers answer them: what arrives of a pipelined request is held until the response in
/// hand has ended, and reading pauses while anything is held, so that a client cannot make
/// the server buffer more than one read's worth of requests.
///
/// Touched on its connection's loop only, and no access to its state calls anything that
/// touches the same property: the run-time exclusivity checks are off (see ``EpollSocket``).
final class HTTPSession: @unchecked Sendable {
    private enum State {
        /// Waiting for a request head; the header timeout runs.
        case idle
        /// Gathering a request's body; the body timeout runs.
        case reading(ParsedRequestHead, body: ByteBuffer)
        /// The request is with a worker and nothing of its response came yet; the response
        /// timeout runs.
        case waiting(ParsedRequestHead)
        /// The response's head is written and body parts follow; `close` once it ends.
        case responding(Stream)
        /// The connection is being closed: everything that still arrives is dropped.
        case closing
    }

    /// A response whose body comes in parts.
    private final class Stream {
        let request: ParsedRequestHead
        let close: Bool
        /// Its parts are framed as chunks (HTTP/1.1, no Content-Length).
        let chunked: Bool
        let compressor: ResponseCompressor?

        init(request: ParsedRequestHead, close: Bool, chunked: Bool, compressor: ResponseCompressor?) {
            self.request = request
            self.close = close
            self.chunked = chunked
            self.compressor = compressor
        }
    }

    /// The connection holding this session, which runs only while it is held: from its
    /// connection's reads, its reactor's sweep and responses (both look the connection up),
    /// and its transport's callbacks (the transport holds the connection). Checked in debug
    /// builds, where a use after the connection went traps; unchecked in release, where
    /// each checked use cost a retain and a release (`swift_unownedRetainStrong`), about
    /// 400 instructions per request over the request path's unowned references.
    #if DEBUG
    private unowned let connection: ClientConnection
    #else
    private unowned(unsafe) let connection: ClientConnection
    #endif
    private let settings: ProtocolSettings
    private let parser = HTTPRequestParser()
    private let allocator = ByteBufferAllocator()
    @exclusivity(unchecked) private var state = State.idle
    /// The number of the request now in hand; answers for another one are late and dropped.
    @exclusivity(unchecked) private var sequence: UInt32 = 0
    /// The one timeout running (head, body, response, keep-alive): checked by the reactor's
    /// sweep rather than scheduled on the loop, because arming and cancelling a scheduled
    /// task for every request cost more than the rest of the request's handling.
    @exclusivity(unchecked) private(set) var timer: (deadline: NIODeadline, kind: Timeout)?
    /// What a timeout that runs out does.
    enum Timeout {
        /// The body did not arrive in time: 408.
        case body
        /// No worker answered in time: 504.
        case response
        /// No next request (keep-alive), or a lingering close's moment is over: closed.
        case close
    }
    /// Request heads received, to tell whether a new request began meanwhile.
    @exclusivity(unchecked) private var headsSeen = 0
    /// What arrived while a response was pending (pipelining), taken in order once it ends.
    @exclusivity(unchecked) private var held = CircularBuffer<Held>()
    private enum Held {
        case part(HTTPRequestEvent)
        case inputClosed
        case parseError(HTTPParseError)
    }
    /// `takeHeld` is running (a request it hands on may be answered at once, in base mode).
    @exclusivity(unchecked) private var takingHeld = false
    /// The client will send nothing more: close once the response in hand has ended.
    @exclusivity(unchecked) private var inputClosed = false
    /// The worker (its IPC endpoint) that holds the request in hand; nil while it waits for one.
    @exclusivity(unchecked) var heldBy: ObjectIdentifier?
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

    private var transport: ClientTransport? { connection.transport }

    // MARK: The connection's events

    /// The connection is up: the wait for its first request begins.
    func opened() {
        awaitNextRequest()
    }

    func closed() {
        timer = nil
        state = .closing
        held.removeAll()
    }

    /// The client shut down its sending side (allowed on HTTP listeners): it still reads, so
    /// the requests it sent are answered, and then the connection closes.
    func clientInputClosed() {
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

    /// Bytes read from the client.
    func received(_ bytes: ByteBuffer) {
        if case .closing = state { return }
        do {
            try parser.feed(bytes) { arrived($0) }
            armBodyTimeout()
        } catch let error as HTTPParseError {
            if !held.isEmpty || responsePending { return hold(.parseError(error)) }
            badRequest(error)
        } catch {
            closeNow(reason: "\(error)")
        }
    }

    private func arrived(_ event: HTTPRequestEvent) {
        if case .closing = state { return }
        if !held.isEmpty || responsePending { return hold(.part(event)) }
        take(event)
    }

    /// Holds what arrived while a response is pending; reading pauses until it is taken.
    private func hold(_ item: Held) {
        if held.isEmpty { transport?.pauseReading() }
        held.append(item)
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
        if case .closing = state { return }
        state = .closing
        timer = nil
        connection.reactor.core.stats.abortCount.wrappingIncrement(ordering: .relaxed)
        connection.reactor.core.logger.info(
            "connection \(connection.id) from \(connection.remoteIP):\(connection.remotePort): malformed HTTP request (\(error)); closing it")
        let answer = error.headTooLarge ? HTTPSession.headTooLargeBytes : HTTPSession.badRequestBytes
        transport?.write(ByteBuffer(staticString: answer), flush: true)
        transport?.whenWritten { [self] in lingeringClose() }
    }

    /// NIO's error handler's answer, byte for byte.
    static let badRequestBytes: StaticString = "HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    static let headTooLargeBytes: StaticString =
        "HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"

    /// Takes what was held while the response just ended was pending, up to the next request
    /// that needs a worker (or until the connection closes), then lets reading go on.
    private func takeHeld() {
        // Nothing held (the usual case): reading was not paused either.
        guard !held.isEmpty, !takingHeld else { return }
        takingHeld = true
        defer { takingHeld = false }
        while !held.isEmpty && !responsePending {
            if case .closing = state { held.removeAll(); break }
            switch held.removeFirst() {
            case .part(let part): take(part)
            case .inputClosed: inputEnded()
            case .parseError(let error): badRequest(error)
            }
        }
        armBodyTimeout()
        if held.isEmpty { transport?.resumeReading() }
    }

    private func take(_ part: HTTPRequestEvent) {
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
                // above. (An HTTP/1.0 client gets no 1xx, RFC 9110 §15.2; it sends its body
                // without waiting long.)
                transport?.write(ByteBuffer(staticString: "HTTP/1.1 100 Continue\r\n\r\n"), flush: true)
            }
            // The body's timeout is armed once the bytes at hand are parsed, if the request
            // is still being read then (`armBodyTimeout`): most requests end in the same read.
            state = .reading(head, body: ByteBuffer())
        case (.body(var part), .reading(let head, var body)):
            // Released from the state while appending, so the buffer is not copied on write.
            state = .idle
            if body.readableBytes + part.readableBytes > settings.packageMaxLength {
                reject(.payloadTooLarge, head,
                       reason: "request body exceeds packageMaxLength (\(settings.packageMaxLength))")
                return
            }
            if body.readableBytes == 0 {
                // The first part as it was read, without a copy (most bodies come in one).
                body = part
            } else {
                body.writeBuffer(&part)
            }
            state = .reading(head, body: body)
        case (.end, .reading(let head, let body)):
            timer = nil
            if offerToStaticHandler(head) { return }
            sequence &+= 1
            state = .waiting(head)
            armTimer(settings.httpResponseTimeout, .response)
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
    /// and pipelined responses stay in order. Static answers are not compressed.
    private func offerToStaticHandler(_ head: ParsedRequestHead) -> Bool {
        guard let staticFiles, let transport,
              let answer = StaticFiles.prepare(head.nioHead, settings: staticFiles, now: Date()) else { return false }
        let close = !head.isKeepAlive || inputClosed
        var fields = answer.response.headers
        fields.add(contentsOf: [("Date", HTTPDate.now()), ("Server", HTTPDate.serverName)])
        if close {
            fields.add(name: "Connection", value: "close")
        } else if head.version < .http1_1 {
            fields.add(name: "Connection", value: "keep-alive")
        }
        let response = HTTPResponseHead(version: head.version, status: answer.response.status, headers: fields)
        transport.write(ResponseEncoder.encode(response, allocator: allocator).bytes, flush: false)
        if let file = answer.file {
            if let range = answer.response.bodyRange, let fd = try? file.takeDescriptorOwnership() {
                transport.sendFile(fd, offset: Int(range.lowerBound), end: Int(range.upperBound))
            } else {
                try? file.close()
            }
        }
        transport.flush()
        state = close ? .closing : .idle
        let mark = headsSeen
        // The wait for the next request starts once the file has left.
        transport.whenWritten { [self] in
            if close { return lingeringClose() }
            guard case .idle = state, headsSeen == mark else { return }
            awaitNextRequest()
        }
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

    /// Whether a status can end a request: an interim one (1xx) from a handler is refused.
    static func isFinal(_ status: Int) -> Bool {
        (200...999).contains(status)
    }

    /// A worker's response head, with the body so far (the whole body when `end`): the
    /// fields and body as the handler left them in base mode, an IPC message's in process mode.
    func response<Fields: Collection, Body: WireBody>(sequence: UInt32, status: Int, headers: Fields, body: Body,
                                                      end: Bool) where Fields.Element: WireField {
        guard sequence == self.sequence, case .waiting(let request) = state, transport != nil else { return }
        guard Self.isFinal(status) else {
            return answer(.internalServerError, request, why: "a handler answered with status \(status), which cannot end a response")
        }
        timer = nil
        // RawResponse checks the fields itself (and declines invalid ones).
        if end, !settings.httpCompression,
           let (bytes, close) = RawResponse.encode(status: status, headers: headers, body: body, isHead: request.isHead,
                                                   version: request.version, keepAlive: request.isKeepAlive,
                                                   allocator: allocator) {
            // A response that fits a socket buffer leaves at once: the wait for the next
            // request starts now, without waiting to learn when it was written.
            return finish(close: close, last: bytes, leavesAtOnce: bytes.readableBytes <= 64 * 1024)
        }
        respondThroughNIO(request, status: status, headers: headers.wirePairs, body: body.buffer, end: end)
    }

    /// The rest of `response`: a head or body NIO's encoder writes (a part of a stream, a
    /// compressed body, a status or field `RawResponse` leaves to it).
    private func respondThroughNIO(_ request: ParsedRequestHead, status: Int, headers: [HTTPWirePair], body: ByteBuffer,
                                   end: Bool) {
        guard let transport else { return }
        guard !Self.hasInvalidField(headers) else {
            return answer(.internalServerError, request, why: "a handler's header field has a character HTTP does not allow")
        }
        var fields = HTTPHeaders(headers.map { ($0.name, $0.value) })
        let status = HTTPResponseStatus(statusCode: status)
        var close = !request.isKeepAlive || fields.first(name: "connection")?.lowercased() == "close"
        let noBody = status.code == 204 || status.code == 304
        // Framing is the server's: a whole body has a length, a stream is chunked.
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
        var body = body
        var compressor: ResponseCompressor?
        if settings.httpCompression, !request.isHead, !noBody,
           ResponseCompressor.applies(to: fields, status: status, minLength: settings.httpCompressionMinLength),
           let algorithm = ResponseCompressor.algorithm(accepting: request.wire.headers.compactMap {
               RawResponse.equalsIgnoringCase($0.name, "accept-encoding") ? $0.value : nil
           }) {
            let coder = ResponseCompressor(algorithm)
            fields.replaceOrAdd(name: "Content-Encoding", value: algorithm.rawValue)
            if end {
                body = coder.compress(body, last: true, allocator: allocator)
                fields.replaceOrAdd(name: "Content-Length", value: String(body.readableBytes))
            } else {
                fields.remove(name: "Content-Length")
                compressor = coder
            }
        }
        let head = responseHead(status, fields, for: request, close: close)
        let (headBytes, chunked) = ResponseEncoder.encode(head, allocator: allocator)
        transport.write(headBytes, flush: false)
        let stream = Stream(request: request, close: close, chunked: chunked, compressor: compressor)
        if !noBody {
            writeBody(compressor.map { $0.compress(body, last: false, allocator: allocator) } ?? body, in: stream)
        }
        if end {
            finish(close: close, last: chunked && !request.isHead ? ResponseEncoder.lastChunk : nil)
        } else {
            state = .responding(stream)
            transport.flush()
        }
    }

    /// More of a worker's response body; `end`: its last part.
    func responseBody(sequence: UInt32, data: ByteBuffer, end: Bool) {
        guard sequence == self.sequence, case .responding(let stream) = state, let transport else { return }
        // Nothing of a body goes to HEAD; the connection closes at the end (the head of a
        // stream to HEAD says chunked, and no last chunk follows).
        if stream.request.isHead {
            if end { finish(close: true, last: nil) }
            return
        }
        writeBody(stream.compressor.map { $0.compress(data, last: end, allocator: allocator) } ?? data, in: stream)
        if end {
            finish(close: stream.close, last: stream.chunked ? ResponseEncoder.lastChunk : nil)
        } else {
            transport.flush()
        }
    }

    /// A worker's whole response whose body is a file: sent from here with sendfile, a
    /// socket buffer at a time as the client reads, so a large file neither crosses the IPC
    /// socket nor counts against `bufferOutputSize`.
    func sendfile(sequence: UInt32, status: Int, headers: [HTTPWirePair], path: String,
                  identity: (device: UInt64, inode: UInt64), offset: UInt64, length: UInt64) {
        guard sequence == self.sequence, case .waiting(let request) = state, let transport else { return }
        guard Self.isFinal(status) else {
            return answer(.internalServerError, request, why: "a handler answered with status \(status), which cannot end a response")
        }
        guard !Self.hasInvalidField(headers) else {
            return answer(.internalServerError, request, why: "a handler's header field has a character HTTP does not allow")
        }
        timer = nil
        var file: CInt?
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
            file = fd
        }
        var fields = HTTPHeaders(headers.map { ($0.name, $0.value) })
        fields.replaceOrAdd(name: "Content-Length", value: String(length))
        let close = !request.isKeepAlive || fields.first(name: "connection")?.lowercased() == "close"
        let head = responseHead(HTTPResponseStatus(statusCode: status), fields, for: request, close: close)
        transport.write(ResponseEncoder.encode(head, allocator: allocator).bytes, flush: false)
        if let file { transport.sendFile(file, offset: Int(offset), end: Int(offset + length)) }
        finish(close: close, last: nil)
    }

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

    /// Answers the request in hand from the server with a short text (500, 503, 504).
    private func answer(_ status: HTTPResponseStatus, _ request: ParsedRequestHead, why: String? = nil) {
        if let why { connection.reactor.core.logger.warning("connection \(connection.id): \(why); answering \(status.code)") }
        respond(status, to: request, close: false)
    }

    /// Refuses a request before it was read whole: answers and closes, as the rest of its
    /// body cannot be told apart from the next request.
    private func reject(_ status: HTTPResponseStatus, _ request: ParsedRequestHead, reason: String) {
        connection.reactor.core.logger.info("connection \(connection.id): \(reason); answering \(status.code) and closing")
        respond(status, to: request, close: true)
    }

    /// Writes a whole short text response made here (no worker involved) to `request`, the
    /// request in hand, and goes on to the next request, or closes.
    private func respond(_ status: HTTPResponseStatus, to request: ParsedRequestHead, close: Bool) {
        guard let transport else { return }
        timer = nil
        let text = "\(status.code) \(status.reasonPhrase)\n"
        let fields = HTTPHeaders([("Content-Type", "text/plain"), ("Content-Length", String(text.utf8.count))])
        let close = close || !request.isKeepAlive
        let head = responseHead(status, fields, for: request, close: close)
        transport.write(ResponseEncoder.encode(head, allocator: allocator).bytes, flush: false)
        if !request.isHead { transport.write(ByteBuffer(string: text), flush: false) }
        finish(close: close, last: nil)
    }

    /// Writes a part of a response's body, framed as a chunk when the response is chunked.
    /// None goes to HEAD: this is the one place that writes body bytes of a stream.
    private func writeBody(_ data: ByteBuffer, in stream: Stream) {
        guard data.readableBytes > 0, !stream.request.isHead, let transport else { return }
        guard stream.chunked else { return transport.write(data, flush: false) }
        transport.write(ResponseEncoder.chunkStart(data.readableBytes, allocator: allocator), flush: false)
        transport.write(data, flush: false)
        transport.write(ResponseEncoder.chunkEnd, flush: false)
    }

    /// Ends the response in hand with `last` (its final bytes, if any); the connection then
    /// takes the next request (held ones first) or closes.
    private func finish(close: Bool, last: ByteBuffer?, leavesAtOnce: Bool = false) {
        guard let transport else { return }
        let closing = close || inputClosed
        state = closing ? .closing : .idle
        if let last { transport.write(last, flush: true) } else { transport.flush() }
        if closing {
            transport.whenWritten { [self] in lingeringClose() }
            return
        }
        if leavesAtOnce {
            awaitNextRequest()
        } else {
            // The wait for the next request starts once this response has left, not when it
            // was queued: a large file to a slow client may take longer than the timeout.
            let mark = headsSeen
            transport.whenWritten { [self] in
                guard case .idle = state, headsSeen == mark else { return }
                awaitNextRequest()
            }
        }
        // A held request's own timeout replaces the wait armed above.
        takeHeld()
    }

    /// Closes the sending side first and the socket a moment later. Closing at once while
    /// the client is still sending (the body of a refused request) would make the kernel
    /// answer its data with a reset, which can destroy the response before the client reads it.
    private func lingeringClose() {
        guard let transport else { return }
        connection.closedByServer = true
        transport.closeOutput()
        armTimer(1, .close)
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

    /// The wait for the next request's head (also the keep-alive idle time): when it runs
    /// out the connection closes.
    private func awaitNextRequest() {
        armTimer(settings.httpHeaderTimeout, .close)
    }

    /// A request whose head came without its whole body gets `httpBodyTimeout` for the rest.
    private func armBodyTimeout() {
        if case .reading = state, timer == nil { armTimer(settings.httpBodyTimeout, .body) }
    }

    private func armTimer(_ seconds: Double, _ kind: Timeout) {
        timer = (Syscall.coarseNow() + .milliseconds(Int64(seconds * 1000)), kind)
        connection.reactor.sweepHTTPTimers()
    }

    /// Runs the timeout if it is due (the reactor's sweep).
    func fireTimer(now: NIODeadline) {
        guard let (deadline, kind) = timer, deadline <= now else { return }
        timer = nil
        switch (kind, state) {
        case (.body, .reading(let head, _)):
            reject(.requestTimeout, head, reason: "request body not received within httpBodyTimeout")
        case (.response, .waiting(let head)):
            connection.reactor.core.logger.warning(
                "connection \(connection.id): no worker answered \(head.method) \(head.uri) within httpResponseTimeout; 504")
            answer(.gatewayTimeout, head)
        case (.close, _):
            closeNow(reason: nil)
        case (.body, _), (.response, _):
            break
        }
    }
}

extension HTTPVersion {
    static func < (a: HTTPVersion, b: HTTPVersion) -> Bool {
        (a.major, a.minor) < (b.major, b.minor)
    }
}
