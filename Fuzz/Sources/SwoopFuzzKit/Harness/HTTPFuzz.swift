// Fuzz harness for the HTTP request path of the master and the worker.
//
// The untrusted bytes of one client connection, cut into arbitrary reads, go through the
// very pipeline `Master.adopt` builds for an HTTP listener, on an `EmbeddedChannel`: the
// `ChannelTransport` of a `ClientConnection` and its `HTTPSession` (its llhttp parser, request
// assembly, limits, timeouts, static files, response encoding and, optionally, compression),
// owned by a real `Reactor` of a real `MasterCore`. The worker end of the
// IPC link is another `EmbeddedChannel`: every frame the reactor sends is decoded with
// `IPCCodec`, turned into the worker's `Request` (query, cookies, form), and answered in one of
// several ways (whole, streamed, 204/304 with a body, an interim status, late, or never, so
// the 504 timeout fires), which lets pipelined requests through.
//
// Invariants: a request reaches the worker with a body within `packageMaxLength` and a head
// within `HTTPRequestParser.maxHeadBytes`; its frame survives an IPC round trip; a static file
// sent lies inside the document root; when the connection is gone the reactor no longer
// holds it; nothing traps.

#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1

public enum HTTPFuzz {
    /// One master for the whole fuzz run: building one starts a reactor thread.
    private final class Fixture: @unchecked Sendable {
        /// One loop for the reactor, the worker link and every client channel: the reactor's
        /// deferred work (its per-turn outbox, its timeout sweep) runs when the harness runs
        /// the loop or advances its clock, on this thread.
        let loop = EmbeddedEventLoop()
        let reactor: Reactor
        let workerLink: EmbeddedChannel
        let endpoint: WorkerEndpoint
        let documentRoot: String
        let realRoot: String
        var nextSequence: UInt64 = 0

        init() {
            var settings = ServerSettings()
            settings.reactorNum = 1
            settings.workerNum = 1
            let logger = Logger(label: "swoop-fuzz", factory: { _ in SwiftLogNoOpLogHandler() })
            let host = ReactorHost(settings: settings, listeners: [ListenerConfig(host: "127.0.0.1", port: 0, type: .tcp)],
                                   logger: logger)
            reactor = Reactor(id: 0, loop: loop, core: host)
            workerLink = EmbeddedChannel(loop: loop)
            endpoint = WorkerEndpoint(role: .worker, workerId: 0, generation: 1, pid: 1, link: EmbeddedLink(workerLink))
            reactor.publish([endpoint])
            (documentRoot, realRoot) = Fixture.makeDocumentRoot()
        }

        /// A small tree: files, an index, a subdirectory, a symlink inside the root and two
        /// that lead out of it, and a secret next to the root that must never be served.
        static func makeDocumentRoot() -> (String, String) {
            let base = "/tmp/swoop-fuzz-docroot-\(getpid())"
            let root = base + "/www"
            let files = FileManager.default
            try? files.createDirectory(atPath: root + "/sub", withIntermediateDirectories: true)
            _ = files.createFile(atPath: base + "/secret.txt", contents: Data("secret".utf8))
            _ = files.createFile(atPath: root + "/index.html", contents: Data("<h1>index</h1>".utf8))
            _ = files.createFile(atPath: root + "/a.txt", contents: Data("0123456789abcdef".utf8))
            _ = files.createFile(atPath: root + "/empty.json", contents: Data())
            _ = files.createFile(atPath: root + "/sub/b.css", contents: Data("b{}".utf8))
            _ = files.createFile(atPath: root + "/sub/index.html", contents: Data("sub".utf8))
            try? files.createSymbolicLink(atPath: root + "/inside.txt", withDestinationPath: "a.txt")
            try? files.createSymbolicLink(atPath: root + "/out.txt", withDestinationPath: "../secret.txt")
            try? files.createSymbolicLink(atPath: root + "/up", withDestinationPath: "..")
            atexit { _ = try? FileManager.default.removeItem(atPath: "/tmp/swoop-fuzz-docroot-\(getpid())") }
            let real = (try? FileManager.default.destinationOfSymbolicLink(atPath: root)) ?? root
            return (root, URL(fileURLWithPath: real).resolvingSymlinksInPath().path)
        }
    }

    nonisolated(unsafe) private static var fixture: Fixture?

    /// Sits next to the socket: sees every byte and file region the connection sends.
    private final class SocketSide: ChannelOutboundHandler, @unchecked Sendable {
        typealias OutboundIn = IOData
        let realRoot: String
        var sentBytes = 0
        var filesSent = 0

        init(realRoot: String) { self.realRoot = realRoot }

        func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
            switch unwrapOutboundIn(data) {
            case .byteBuffer(let buffer):
                sentBytes += buffer.readableBytes
            case .fileRegion(let region):
                filesSent += 1
                let path = try? region.fileHandle.withUnsafeFileDescriptor { fd in
                    try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(fd)")
                }
                guard let path else { fuzzFail("a file region whose descriptor is not open") }
                fuzzCheck(path.hasPrefix(realRoot + "/"), "a static response sends \(path), outside \(realRoot)")
                fuzzCheck(region.readerIndex <= region.endIndex, "a file region of negative length")
            }
            context.write(data, promise: promise)
        }
    }

    /// Input: [options] [chunk mode] [chunk seed] [answer seed] bytes of the connection…
    /// options bit 0: response compression; bits 1–2: packageMaxLength 64, 1 KiB, 64 KiB, 2 MiB;
    /// bit 3: static files; bit 4: the clock jumps between reads (timeouts fire);
    /// bit 5: the client half-closes after its last byte.
    public static func request(_ data: UnsafeRawBufferPointer) {
        let fixture = Self.fixture ?? Fixture()
        Self.fixture = fixture
        var input = FuzzInput(data)
        let options = input.byte()
        let chunking = Chunking(&input)
        var answers = SplitMix64(seed: UInt64(input.byte()))
        let stream = input.rest()

        var framing = ProtocolSettings()
        framing.openHTTPProtocol = true
        framing.httpCompression = options & 1 != 0
        framing.packageMaxLength = [64, 1024, 64 * 1024, 2 * 1024 * 1024][Int(options >> 1 & 3)]
        if options & 8 != 0 {
            framing.documentRoot = fixture.documentRoot
            framing.enableStaticHandler = true
            framing.httpIndexFiles = ["index.html", "missing.html"]
        }
        let clockJumps = options & 16 != 0
        let halfClose = options & 32 != 0

        // The pipeline of Master.adopt for an HTTP listener.
        let channel = EmbeddedChannel(loop: fixture.loop)
        _ = try? channel.setOption(ChannelOptions.allowRemoteHalfClosure, value: true).wait()
        let socketSide = SocketSide(realRoot: fixture.realRoot)
        let client: ClientConnection
        let session: HTTPSession
        fixture.nextSequence &+= 1
        do {
            let pipeline = channel.pipeline.syncOperations
            try pipeline.addHandler(socketSide)
            client = try ChannelTransport.install(on: channel, id: fixture.nextSequence, sequence: fixture.nextSequence,
                                                  listener: 0, framing: framing, reactor: fixture.reactor, serverPort: 80)
            guard let installed = client.http else { fuzzFail("no HTTP session in the pipeline") }
            session = installed
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 40000)).wait()
        } catch {
            fuzzFail("could not build the pipeline: \(error)")
        }
        let id = client.id
        fuzzCheck(fixture.reactor.connections[id] != nil, "the reactor did not take the connection")

        var worker = WorkerSide(connection: id, framing: framing)
        for chunk in chunking.split(stream) {
            guard channel.isActive else { break }
            do {
                try channel.writeInbound(ByteBuffer(bytes: chunk))
            } catch {
                // Errors end at the connection's transport, which closes; none should reach the tail.
                fuzzFail("an error reached the end of the pipeline: \(error)")
            }
            worker.serve(fixture: fixture, session: session, channel: channel, answers: &answers, clockJumps: clockJumps)
            if clockJumps && answers.next() % 4 == 0 {
                channel.embeddedEventLoop.advanceTime(by: .seconds(Int64(answers.next() % 70)))
                worker.serve(fixture: fixture, session: session, channel: channel, answers: &answers, clockJumps: clockJumps)
            }
            _ = drainOutbound(channel)
        }
        if halfClose && channel.isActive {
            channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
            worker.serve(fixture: fixture, session: session, channel: channel, answers: &answers, clockJumps: false)
        }
        // Let every timer run out: header, body and response timeouts, the lingering close.
        for _ in 0..<3 {
            channel.embeddedEventLoop.advanceTime(by: .seconds(61))
            worker.serve(fixture: fixture, session: session, channel: channel, answers: &answers, clockJumps: false)
        }
        _ = drainOutbound(channel)
        _ = try? channel.finish(acceptAlreadyClosed: true)
        worker.collect(fixture: fixture)
        fuzzCheck(fixture.reactor.connections[id] == nil, "the reactor still holds connection \(id) after it closed")
        fuzzCheck(worker.closed, "the worker was not told that connection \(id) closed")
        fixture.endpoint.finished(worker.requests)
    }

    private static func drainOutbound(_ channel: EmbeddedChannel) -> Int {
        var count = 0
        while let part = try? channel.readOutbound(as: IOData.self) {
            count += part.readableBytes
        }
        return count
    }

    /// The worker's end: reads the frames the reactor sent and answers the requests.
    private struct WorkerSide {
        let connection: UInt64
        let framing: ProtocolSettings
        var requests: [UInt64] = []
        var closed = false
        var pending: [(sequence: UInt32, method: String)] = []

        init(connection: UInt64, framing: ProtocolSettings) {
            self.connection = connection
            self.framing = framing
        }

        /// Takes in the frames written so far.
        mutating func collect(fixture: Fixture) {
            fixture.loop.run()
            while let frame = try? fixture.workerLink.readOutbound(as: ByteBuffer.self) {
                // The frames of a loop turn come in one write.
                var frame = frame
                while frame.readableBytes > 0 {
                    let message: IPCMessage?
                    do {
                        message = try IPCCodec.decode(&frame, maxFrameLength: Int(UInt32.max))
                    } catch {
                        fuzzFail("the reactor wrote an undecodable IPC frame: \(error)")
                    }
                    guard let message else { fuzzFail("the reactor wrote part of an IPC frame") }
                    IPCFuzz.checkRoundTrip(message)
                    switch message {
                    case .connect(let id, _, _):
                        fuzzCheck(id == connection, "connect for another connection")
                    case .close(let id, _, _):
                        fuzzCheck(id == connection, "close for another connection")
                        closed = true
                    case let .httpRequest(id, _, sequence, head, body):
                        fuzzCheck(id == connection, "a request for another connection")
                        fuzzCheck(!closed, "a request after the close")
                        fuzzCheck(body.readableBytes <= framing.packageMaxLength,
                                  "a body of \(body.readableBytes) bytes passed packageMaxLength \(framing.packageMaxLength)")
                        let headBytes = head.headers.reduce(head.target.utf8.count) {
                            $0 + $1.name.utf8.count + $1.value.utf8.count + 4
                        }
                        fuzzCheck(headBytes <= HTTPRequestParser.maxHeadBytes, "a head of \(headBytes) bytes was passed on")
                        parse(head, body: body)
                        requests.append(id)
                        pending.append((sequence, head.method))
                    default:
                        fuzzFail("the reactor sent \(message) to a worker for an HTTP client")
                    }
                }
            }
        }

        /// What a worker makes of the request: the same parsing `onRequest` sees.
        private func parse(_ head: HTTPWireHead, body: ByteBuffer) {
            let request = Request(wire: head, body: body, connection: ConnectionID(connection), reactorId: 0)
            fuzzCheck(request.uri == head.target, "the request's uri differs from the target")
            fuzzCheck(head.target.hasPrefix(request.path), "the path is not the front of the target")
            fuzzCheck(request.body.readableBytes == body.readableBytes, "the body changed")
            for (key, value) in request.query {
                fuzzCheck(!key.isEmpty, "an empty query key (value \(value))")
            }
            _ = request.cookies.count + request.form.count + request.version.utf8.count
            _ = request.headers.count
        }

        /// Collects frames and answers requests until nothing more happens.
        mutating func serve(fixture: Fixture, session: HTTPSession, channel: EmbeddedChannel,
                            answers: inout SplitMix64, clockJumps: Bool) {
            for _ in 0..<64 {
                collect(fixture: fixture)
                guard !pending.isEmpty else { return }
                let (sequence, method) = pending.removeFirst()
                answer(fixture: fixture, sequence: sequence, method: method, session: session, channel: channel, answers: &answers,
                       clockJumps: clockJumps)
            }
            fuzzFail("more than 64 rounds of requests and answers from one read")
        }

        private func answer(fixture: Fixture, sequence: UInt32, method: String, session: HTTPSession, channel: EmbeddedChannel,
                            answers: inout SplitMix64, clockJumps: Bool) {
            let body = ByteBuffer(string: String(repeating: "hello world ", count: Int(answers.next() % 8)))
            let text = [HTTPWirePair(name: "Content-Type", value: "text/plain")]
            switch answers.next() % 11 {
            case 0:
                session.response(sequence: sequence, status: 200, headers: text, body: body, end: true)
            case 10:
                // Server.send on the HTTP connection (raw bytes past the HTTP encoding), then the response.
                fixture.reactor.apply(batch: [.send(connection: connection, data: body)])
                session.response(sequence: sequence, status: 200, headers: text, body: body, end: true)
            case 1:
                session.response(sequence: sequence, status: 200, headers: text, body: body, end: false)
                session.responseBody(sequence: sequence, data: body, end: false)
                session.responseBody(sequence: sequence, data: ByteBuffer(), end: true)
            case 2:
                let status = answers.next() % 2 == 0 ? 204 : 304
                session.response(sequence: sequence, status: status, headers: [HTTPWirePair(name: "Content-Length", value: "5")],
                                 body: body, end: true)
            case 3:
                // An interim or impossible status from a handler: the master answers 500.
                let status = [100, 101, 0, 1000, 65535][Int(answers.next() % 5)]
                session.response(sequence: sequence, status: status, headers: [HTTPWirePair](), body: body, end: true)
            case 4 where clockJumps:
                // No answer in time: the master's 504; the late answer is dropped.
                channel.embeddedEventLoop.advanceTime(by: .seconds(61))
                session.response(sequence: sequence, status: 200, headers: text, body: body, end: true)
            case 5:
                // An answer to an earlier request arrives late, then the real one.
                session.response(sequence: sequence &- 1, status: 200, headers: [HTTPWirePair](), body: body, end: true)
                session.responseBody(sequence: sequence &+ 1, data: body, end: true)
                session.response(sequence: sequence, status: 404, headers: text, body: body, end: true)
            case 6:
                session.response(sequence: sequence, status: 200,
                                 headers: [HTTPWirePair(name: "Connection", value: "close")], body: body, end: true)
            case 7:
                // HEAD answered with a length and no body; a stream with a length.
                let length = [HTTPWirePair(name: "Content-Length", value: String(body.readableBytes))]
                if method == "HEAD" {
                    session.response(sequence: sequence, status: 200, headers: length, body: ByteBuffer(), end: true)
                } else {
                    session.response(sequence: sequence, status: 200, headers: length, body: ByteBuffer(), end: false)
                    session.responseBody(sequence: sequence, data: body, end: true)
                }
            case 8:
                // Header fields HTTP does not allow (Response cleans them; a worker that
                // bypassed it): the master answers 500, on either path.
                let bad = [[HTTPWirePair(name: "X-Split", value: "a\r\nInjected: yes")],
                           [HTTPWirePair(name: "Bad Name", value: "v")],
                           [HTTPWirePair(name: "", value: "v")]][Int(answers.next() % 3)]
                session.response(sequence: sequence, status: 200, headers: bad, body: body, end: answers.next() % 2 == 0)
            default:
                session.response(sequence: sequence, status: 201,
                                 headers: [HTTPWirePair(name: "Transfer-Encoding", value: "chunked"),
                                           HTTPWirePair(name: "Content-Type", value: "application/json")],
                                 body: ByteBuffer(string: "{\"ok\":true}"), end: true)
            }
        }
    }
}

/// The worker's IPC link as an `EmbeddedChannel`: the frames a reactor writes for the worker
/// are read back from the channel's outbound side.
private final class EmbeddedLink: FrameOutput, @unchecked Sendable {
    let channel: EmbeddedChannel
    init(_ channel: EmbeddedChannel) { self.channel = channel }
    var loop: EventLoop { channel.eventLoop }
    var isOpen: Bool { channel.isActive }
    func write(_ frames: ByteBuffer) { channel.writeAndFlush(frames, promise: nil) }
}
