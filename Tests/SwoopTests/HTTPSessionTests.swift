import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import XCTest
@testable import Swoop

/// `HTTPSession` takes one request at a time: the socket goes on being read while one
/// request waits for its worker, and pauses once a pipelined request has been read.
final class HTTPSessionTests: XCTestCase {
    /// Counts the reads that reach the channel, i.e. that keep its socket registered for reading.
    private final class ReadCounter: ChannelOutboundHandler {
        typealias OutboundIn = Any
        var reads = 0
        func read(context: ChannelHandlerContext) {
            reads += 1
            context.read()
        }
    }

    private var loop: EmbeddedEventLoop!
    private var reactor: Reactor!
    private var workerLink: EmbeddedChannel!

    override func setUp() {
        loop = EmbeddedEventLoop()
        var settings = ServerSettings()
        settings.reactorNum = 1
        settings.workerNum = 1
        let host = ReactorHost(settings: settings, listeners: [ListenerConfig(host: "127.0.0.1", port: 0, type: .tcp)],
                               logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
        reactor = Reactor(id: 0, loop: loop, core: host)
        workerLink = EmbeddedChannel(loop: loop)
        reactor.publish([WorkerEndpoint(role: .worker, workerId: 0, generation: 1, pid: 1, link: EmbeddedLink(workerLink))])
    }

    override func tearDown() {
        _ = try? workerLink.finish(acceptAlreadyClosed: true)
    }

    /// A client connection with the master's HTTP pipeline.
    private func connection() throws -> (EmbeddedChannel, HTTPSession, ReadCounter) {
        let channel = EmbeddedChannel(loop: loop)
        let counter = ReadCounter()
        let pipeline = channel.pipeline.syncOperations
        try pipeline.addHandler(counter)
        var framing = ProtocolSettings()
        framing.openHTTPProtocol = true
        let client = try ChannelTransport.install(on: channel, id: 1, sequence: 1, listener: 0, framing: framing,
                                                  reactor: reactor, serverPort: 80)
        let session = try XCTUnwrap(client.http)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 40000)).wait()
        return (channel, session, counter)
    }

    /// One read as NIO's channel performs it: the bytes, then its request for the next read.
    private func deliver(_ text: String, to channel: EmbeddedChannel) throws {
        try channel.writeInbound(ByteBuffer(string: text))
        loop.run()
        channel.read()
    }

    /// The targets of the requests the worker was handed, in order.
    private func requestsAtTheWorker() -> [String] {
        loop.run()
        var targets: [String] = []
        while var frames = try? workerLink.readOutbound(as: ByteBuffer.self) {
            while frames.readableBytes > 0, let message = try? IPCCodec.decode(&frames, maxFrameLength: 1 << 20) {
                if case .httpRequest(_, _, _, let head, _) = message { targets.append(head.target) }
            }
        }
        return targets
    }

    private func responses(from channel: EmbeddedChannel) -> String {
        var text = ""
        while let part = try? channel.readOutbound(as: IOData.self) {
            if case .byteBuffer(let buffer) = part { text += String(buffer: buffer) }
        }
        return text
    }

    private func answer(_ session: HTTPSession, sequence: UInt32, _ text: String) {
        session.response(sequence: sequence, status: 200, headers: [], body: ByteBuffer(string: text), end: true)
    }

    func testTheSocketStaysReadableWhileOneRequestIsWithAWorker() throws {
        let (channel, session, counter) = try connection()
        defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
        try deliver("GET /a HTTP/1.1\r\nHost: x\r\n\r\n", to: channel)
        XCTAssertEqual(requestsAtTheWorker(), ["/a"])
        XCTAssertEqual(counter.reads, 1, "the read after the request reaches the channel although its answer is pending")
        answer(session, sequence: 1, "A")
        try deliver("GET /b HTTP/1.1\r\nHost: x\r\n\r\n", to: channel)
        XCTAssertEqual(requestsAtTheWorker(), ["/b"])
        XCTAssertEqual(counter.reads, 2)
        answer(session, sequence: 2, "B")
        let text = responses(from: channel)
        XCTAssertTrue(text.hasPrefix("HTTP/1.1 200 OK\r\n"), text)
        XCTAssertTrue(text.contains("\r\n\r\nA") && text.hasSuffix("\r\n\r\nB"), text)
    }

    func testPipelinedRequestsWaitTheirTurnAndPauseReading() throws {
        let (channel, session, counter) = try connection()
        defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
        try deliver("GET /a HTTP/1.1\r\nHost: x\r\n\r\n", to: channel)
        XCTAssertEqual(counter.reads, 1)
        try deliver("GET /b HTTP/1.1\r\nHost: x\r\n\r\nGET /c HTTP/1.1\r\nHost: x\r\n\r\n", to: channel)
        XCTAssertEqual(requestsAtTheWorker(), ["/a"], "/b and /c wait until /a is answered")
        XCTAssertEqual(counter.reads, 1, "requests are held: nothing more is read")
        answer(session, sequence: 1, "A")
        XCTAssertEqual(requestsAtTheWorker(), ["/b"])
        XCTAssertEqual(counter.reads, 1, "/c is still held")
        answer(session, sequence: 2, "B")
        XCTAssertEqual(requestsAtTheWorker(), ["/c"])
        XCTAssertEqual(counter.reads, 2, "nothing held any more: reading resumes")
        answer(session, sequence: 3, "C")
        let bodies = responses(from: channel).components(separatedBy: "\r\n\r\n").dropFirst().map { $0.prefix(1) }
        XCTAssertEqual(bodies, ["A", "B", "C"])
    }

    func testAnAnswerForAnEarlierRequestIsDropped() throws {
        let (channel, session, _) = try connection()
        defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
        try deliver("GET /a HTTP/1.1\r\nHost: x\r\n\r\n", to: channel)
        answer(session, sequence: 7, "late")
        XCTAssertEqual(responses(from: channel), "")
        answer(session, sequence: 1, "A")
        XCTAssertTrue(responses(from: channel).hasSuffix("\r\n\r\nA"))
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
