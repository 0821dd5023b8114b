#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOCore
import XCTest
@testable import Swoop

/// `HTTPSession` takes one request at a time: the socket goes on being read while one
/// request waits for its worker, and reading pauses once a pipelined request has been read.
/// A reactor on Swoop's loop serves a real socket pair, and hands the requests to a worker
/// link that is a socket too; the test reads both sockets' other ends.
final class HTTPSessionTests: XCTestCase {
    /// The worker's end of the IPC link: what the reactor writes for the worker arrives at
    /// the test's end of a socket pair.
    private final class SocketLink: FrameOutput, @unchecked Sendable {
        let fd: CInt
        let epollLoop: EpollLoop
        init(fd: CInt, loop: EpollLoop) {
            self.fd = fd
            epollLoop = loop
        }
        var loop: EventLoop { epollLoop }
        var isOpen: Bool { true }
        func write(_ frames: ByteBuffer) {
            XCTAssertNoThrow(try frames.withUnsafeReadableBytes { try Syscall.writeAll(fd, $0) })
        }
    }

    private var loop: EpollLoop!
    private var reactor: Reactor!
    /// The test's ends: of the worker link, of the client connection; and the server's end of
    /// the client connection (to see what it has not read).
    private var worker: CInt = -1
    private var client: CInt = -1
    private var server: CInt = -1
    private var linkEnd: CInt = -1

    override func setUpWithError() throws {
        loop = try EpollLoop.start(name: "session-test")
        var settings = ServerSettings()
        settings.reactorNum = 1
        settings.workerNum = 1
        settings.protocol.openHTTPProtocol = true
        let host = ReactorHost(settings: settings, listeners: [ListenerConfig(host: "/tmp/unused", port: 0, type: .unixStream)],
                               logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
        reactor = Reactor(id: 0, loop: loop, core: host)
        (linkEnd, worker) = try socketPair()
        let endpoint = WorkerEndpoint(role: .worker, workerId: 0, generation: 1, pid: 1,
                                      link: SocketLink(fd: linkEnd, loop: loop))
        let reactor = self.reactor!
        try loop.submit { reactor.publish([endpoint]) }.wait()
        (server, client) = try socketPair()
        reactor.adopt(server, id: 1, sequence: 1, listener: 0, serverPort: 80) {}
        try settle()
    }

    override func tearDownWithError() throws {
        let reactor = self.reactor!
        try loop.submit { reactor.closeAll() }.wait()
        try loop.syncShutdownGracefully()
        for fd in [worker, client, linkEnd] { Syscall.close(fd) }
    }

    private func socketPair() throws -> (CInt, CInt) {
        var pair: [CInt] = [0, 0]
        guard socketpair(AF_UNIX, CInt(SOCK_STREAM.rawValue), 0, &pair) == 0 else {
            throw SystemError(call: "socketpair", errno: errno)
        }
        return (pair[0], pair[1])
    }

    /// Returns once the loop has handled what was written to its sockets before the call.
    /// Three round trips: the first task may run in the turn that was under way when the
    /// bytes arrived; the turn after it reads them, and queues the frames for the worker in
    /// a task, which runs before the third.
    private func settle() throws {
        for _ in 0..<3 { try loop.submit {}.wait() }
    }

    private func deliver(_ text: String) throws {
        try Array(text.utf8).withUnsafeBytes { try Syscall.writeAll(client, $0) }
        try settle()
    }

    /// Everything waiting at the test's end of a socket, without blocking.
    private func drain(_ fd: CInt) -> ByteBuffer {
        var all = ByteBuffer()
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = recv(fd, &chunk, chunk.count, CInt(MSG_DONTWAIT))
            guard n > 0 else { break }
            all.writeBytes(chunk.prefix(n))
        }
        return all
    }

    /// The targets of the requests the worker was handed since the last call, in order.
    private func requestsAtTheWorker() -> [String] {
        var frames = drain(worker)
        var targets: [String] = []
        while frames.readableBytes > 0, let message = try? IPCCodec.decode(&frames, maxFrameLength: 1 << 20) {
            if case .httpRequest(_, _, _, let head, _) = message { targets.append(head.target) }
        }
        return targets
    }

    /// Bytes the client sent that the server has not read.
    private func unread() -> Int {
        var count: CInt = 0
        _ = ioctl(server, UInt(FIONREAD), &count)
        return Int(count)
    }

    private func answer(_ sequence: UInt32, _ text: String) throws {
        let reactor = self.reactor!
        try loop.submit {
            reactor.connections[1]?.http?.response(sequence: sequence, status: 200, headers: [HTTPWirePair](),
                                                   body: ByteBuffer(string: text), end: true)
        }.wait()
        try settle()
    }

    private func bodies() -> [String] {
        String(buffer: drain(client)).components(separatedBy: "\r\n\r\n").dropFirst().map { String($0.prefix(1)) }
    }

    private func request(_ target: String) -> String { "GET \(target) HTTP/1.1\r\nHost: x\r\n\r\n" }

    func testTheSocketStaysReadableWhileOneRequestIsWithAWorker() throws {
        try deliver(request("/a"))
        XCTAssertEqual(requestsAtTheWorker(), ["/a"])
        try deliver(request("/b"))
        XCTAssertEqual(unread(), 0, "the next request is read although the first one's answer is pending")
        XCTAssertEqual(requestsAtTheWorker(), [], "/b waits until /a is answered")
        try answer(1, "A")
        XCTAssertEqual(requestsAtTheWorker(), ["/b"])
        try answer(2, "B")
        XCTAssertEqual(bodies(), ["A", "B"])
    }

    func testPipelinedRequestsWaitTheirTurnAndPauseReading() throws {
        try deliver(request("/a"))
        try deliver(request("/b") + request("/c"))
        XCTAssertEqual(requestsAtTheWorker(), ["/a"], "/b and /c wait until /a is answered")
        let d = request("/d")
        try deliver(d)
        XCTAssertEqual(unread(), d.utf8.count, "requests are held: nothing more is read")
        try answer(1, "A")
        XCTAssertEqual(requestsAtTheWorker(), ["/b"])
        XCTAssertEqual(unread(), d.utf8.count, "/c is still held")
        try answer(2, "B")
        XCTAssertEqual(requestsAtTheWorker(), ["/c"])
        XCTAssertEqual(unread(), 0, "nothing held any more: reading resumes")
        try answer(3, "C")
        XCTAssertEqual(requestsAtTheWorker(), ["/d"])
        try answer(4, "D")
        XCTAssertEqual(bodies(), ["A", "B", "C", "D"])
    }

    func testAnAnswerForAnEarlierRequestIsDropped() throws {
        try deliver(request("/a"))
        try answer(7, "late")
        XCTAssertEqual(drain(client).readableBytes, 0)
        try answer(1, "A")
        XCTAssertEqual(bodies(), ["A"])
    }
}
