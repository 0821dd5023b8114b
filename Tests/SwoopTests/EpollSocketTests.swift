#if canImport(Glibc)
import Glibc
#endif
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import XCTest

@testable import Swoop

/// A socket on Swoop's own loop (the worker's IPC link, a base-mode client), over a real
/// socket pair.
final class EpollSocketTests: XCTestCase {
    private final class Recorder: EpollSocketDelegate, @unchecked Sendable {
        let received = NIOLockedValueBox(ByteBuffer())
        let reads = NIOLockedValueBox(0)
        let closed: EventLoopPromise<String>
        init(closed: EventLoopPromise<String>) { self.closed = closed }
        /// Signalled after each read handed over.
        let arrived = DispatchSemaphore(value: 0)
        /// Signalled when the peer's half-close is reported.
        let inputClosed = DispatchSemaphore(value: 0)
        func socketReceived(_ bytes: ByteBuffer) {
            var bytes = bytes
            _ = received.withLockedValue { $0.writeBuffer(&bytes) }
            arrived.signal()
        }
        func socketReadDone() { reads.withLockedValue { $0 += 1 } }
        func socketClosed(_ error: Error?) { closed.succeed(error.map { "\($0)" } ?? "eof") }
        func socketInputClosed() { inputClosed.signal() }
    }

    private var loop: EpollLoop!

    override func setUpWithError() throws { loop = try EpollLoop.start(name: "link-test") }
    override func tearDownWithError() throws { try loop.syncShutdownGracefully() }

    private func socketPair() throws -> (CInt, CInt) {
        var pair: [CInt] = [0, 0]
        guard socketpair(AF_UNIX, CInt(SOCK_STREAM.rawValue), 0, &pair) == 0 else { throw SystemError(call: "socketpair", errno: errno) }
        // A small send buffer, so that the link's writes stop part-way.
        var size: CInt = 4096
        setsockopt(pair[0], SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<CInt>.size))
        // The test's blocking reads give up rather than hang if the link stops writing.
        var limit = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(pair[1], SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        return (pair[0], pair[1])
    }

    func testWhatTheSocketCannotTakeYetIsSentInOrderOnceItCan() throws {
        let (ours, theirs) = try socketPair()
        let loop = self.loop!
        let recorder = Recorder(closed: loop.makePromise())
        let link = try loop.submit {
            let link = EpollSocket(fd: ours, loop: loop, delegate: recorder)
            try link.start()
            return link
        }.wait()
        // 4 MiB in 64 batches while nobody reads: most of it must wait in the link.
        let batches = (0..<64).map { batch in [UInt8]((0..<65536).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ batch) }) }
        let expected = batches.flatMap { $0 }
        let sent = NIOLockedValueBox(false)
        let waitedBeforeSent = try loop.submit { () -> Bool in
            for bytes in batches { link.send(ByteBuffer(bytes: bytes)) }
            link.whenSent { sent.withLockedValue { $0 = true } }
            return !sent.withLockedValue { $0 }
        }.wait()
        XCTAssertTrue(waitedBeforeSent, "4 MiB fit the socket at once: the test does not test holding")
        var got: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while got.count < expected.count {
            let n = chunk.withUnsafeMutableBytes { read(theirs, $0.baseAddress, $0.count) }
            XCTAssertGreaterThan(n, 0)
            if n <= 0 { break }
            got += chunk[0..<n]
        }
        XCTAssertEqual(got.count, expected.count)
        XCTAssertTrue(got == expected, "the bytes came out of order or changed")
        try loop.submit {}.wait()   // the turn that wrote the last bytes has ended
        XCTAssertTrue(sent.withLockedValue { $0 }, "whenSent did not run once everything was written")
        close(theirs)
        XCTAssertEqual(try recorder.closed.futureResult.wait(), "eof")
    }

    /// Reads what the peer gets until it has `count` bytes or the socket ends.
    private func readAll(_ fd: CInt, count: Int) -> [UInt8] {
        var got: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while got.count < count {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            got += chunk[0..<n]
        }
        return got
    }

    private func start(_ fd: CInt, _ recorder: Recorder, allowsHalfClosure: Bool = false) throws -> EpollSocket {
        let loop = self.loop!
        return try loop.submit {
            let link = EpollSocket(fd: fd, loop: loop, delegate: recorder, allowsHalfClosure: allowsHalfClosure)
            try link.start()
            return link
        }.wait()
    }

    /// A file of `count` bytes of a known pattern, open for reading.
    private func file(_ count: Int) throws -> (fd: CInt, bytes: [UInt8], path: String) {
        let path = NSTemporaryDirectory() + "swoop-sendfile-\(getpid())-\(count).bin"
        let bytes = (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 5) }
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(bytes)))
        return (try Syscall.open(path, O_RDONLY), bytes, path)
    }

    func testAFileRangeGoesOutBetweenBytesInOrder() throws {
        let (ours, theirs) = try socketPair()
        let recorder = Recorder(closed: loop.makePromise())
        let link = try start(ours, recorder)
        let (fd, bytes, path) = try file(3 << 20)
        defer { unlink(path) }
        try loop.submit {
            link.enqueue(ByteBuffer(string: "head"))
            link.enqueue(file: fd, offset: 1000, end: bytes.count - 1000)
            link.enqueue(ByteBuffer(string: "tail"))
            link.flush()
        }.wait()
        let expected = Array("head".utf8) + bytes[1000..<(bytes.count - 1000)] + Array("tail".utf8)
        let got = readAll(theirs, count: expected.count)
        XCTAssertEqual(got.count, expected.count)
        XCTAssertTrue(got == expected, "the file's bytes came out of order or changed")
        XCTAssertEqual(try loop.submit { link.unsentBytes }.wait(), 0, "a file's bytes are not counted as held in memory")
        close(theirs)
        XCTAssertEqual(try recorder.closed.futureResult.wait(), "eof")
    }

    func testAFileCutShortClosesTheSocket() throws {
        let (ours, theirs) = try socketPair()
        defer { close(theirs) }
        let recorder = Recorder(closed: loop.makePromise())
        let link = try start(ours, recorder)
        let (fd, bytes, path) = try file(100_000)
        defer { unlink(path) }
        // The range promised runs past the end of the file, as when it was truncated after
        // the length was sent.
        try loop.submit {
            link.enqueue(file: fd, offset: 0, end: 200_000)
            link.flush()
        }.wait()
        let got = readAll(theirs, count: 200_000)
        XCTAssertEqual(got.count, bytes.count, "what the file had, then the end")
        XCTAssertEqual(try recorder.closed.futureResult.wait(), "\(FileTruncatedError())")
    }

    func testThePeersHalfCloseIsReportedAndWritingGoesOn() throws {
        let (ours, theirs) = try socketPair()
        defer { close(theirs) }
        let recorder = Recorder(closed: loop.makePromise())
        let link = try start(ours, recorder, allowsHalfClosure: true)
        _ = "last request".withCString { write(theirs, $0, 12) }
        shutdown(theirs, CInt(SHUT_WR))
        XCTAssertEqual(recorder.inputClosed.wait(timeout: .now() + 10), .success, "the half-close is reported")
        XCTAssertEqual(String(buffer: recorder.received.withLockedValue { $0 }), "last request", "what came before the FIN")
        try loop.submit {
            link.send(ByteBuffer(string: "answer"))
            link.shutdownOutput()
        }.wait()
        XCTAssertEqual(readAll(theirs, count: 100), Array("answer".utf8), "the answer, then the end")
        try loop.submit { link.close(reset: false) }.wait()
        XCTAssertEqual(try recorder.closed.futureResult.wait(), "eof")
    }

    func testReadingPausesAndResumesWithWhatArrivedMeanwhile() throws {
        let (ours, theirs) = try socketPair()
        defer { close(theirs) }
        let recorder = Recorder(closed: loop.makePromise())
        let link = try start(ours, recorder)
        // A second socket on the same loop, written after the paused one: once its bytes are
        // read, the loop has had the paused socket's readiness too (it came first).
        let (markerOurs, markerTheirs) = try socketPair()
        defer { close(markerTheirs) }
        let marker = Recorder(closed: loop.makePromise())
        let markerLink = try start(markerOurs, marker)
        try loop.submit { link.stopReading() }.wait()
        _ = "held".withCString { write(theirs, $0, 4) }
        _ = "m".withCString { write(markerTheirs, $0, 1) }
        XCTAssertEqual(marker.arrived.wait(timeout: .now() + 10), .success)
        try loop.submit {}.wait()
        XCTAssertEqual(recorder.received.withLockedValue { $0.readableBytes }, 0, "nothing is read while paused")
        try loop.submit { link.resumeReading() }.wait()
        XCTAssertEqual(recorder.arrived.wait(timeout: .now() + 10), .success, "what arrived meanwhile is read")
        XCTAssertEqual(String(buffer: recorder.received.withLockedValue { $0 }), "held")
        try loop.submit {
            link.close(reset: false)
            markerLink.close(reset: false)
        }.wait()
        _ = try recorder.closed.futureResult.wait()
    }

    func testReadsAreHandedOverAndTheMastersCloseIsReported() throws {
        let (ours, theirs) = try socketPair()
        let loop = self.loop!
        let recorder = Recorder(closed: loop.makePromise())
        _ = try loop.submit {
            let link = EpollSocket(fd: ours, loop: loop, delegate: recorder)
            try link.start()
            return link
        }.wait()
        let message = [UInt8](repeating: 0x5A, count: 300_000)   // more than one read
        var offset = 0
        while offset < message.count {
            let n = message.withUnsafeBytes { write(theirs, $0.baseAddress! + offset, message.count - offset) }
            XCTAssertGreaterThan(n, 0)
            if n <= 0 { break }
            offset += n
        }
        close(theirs)
        XCTAssertEqual(try recorder.closed.futureResult.wait(), "eof")
        XCTAssertEqual(recorder.received.withLockedValue { $0.readableBytesView.elementsEqual(message) }, true)
        XCTAssertGreaterThan(recorder.reads.withLockedValue { $0 }, 0)
    }

    /// The loop's sockets read into one shared buffer: a read that something kept (a partial
    /// packet waits so) must not be overwritten by the next read, of this socket or another.
    func testAReadThatWasKeptIsNotOverwrittenByTheNextOne() throws {
        final class Keeper: EpollSocketDelegate, @unchecked Sendable {
            let kept = NIOLockedValueBox<[ByteBuffer]>([])
            let arrived = DispatchSemaphore(value: 0)
            let closed: EventLoopPromise<Void>
            init(closed: EventLoopPromise<Void>) { self.closed = closed }
            func socketReceived(_ bytes: ByteBuffer) {
                kept.withLockedValue { $0.append(bytes) }
                arrived.signal()
            }
            func socketReadDone() {}
            func socketClosed(_ error: Error?) { closed.succeed() }
        }
        let loop = self.loop!
        let pairs = try (0..<2).map { _ in try socketPair() }
        let keepers = pairs.map { _ in Keeper(closed: loop.makePromise()) }
        try loop.submit {
            for (pair, keeper) in zip(pairs, keepers) { try EpollSocket(fd: pair.0, loop: loop, delegate: keeper).start() }
        }.wait()
        // Alternating sockets and letters; each write waits until the one before was read.
        let letters: [UInt8] = Array("ABCDEF".utf8)
        for (index, letter) in letters.enumerated() {
            let chunk = [UInt8](repeating: letter, count: 1000)
            XCTAssertEqual(chunk.withUnsafeBytes { write(pairs[index % 2].1, $0.baseAddress, 1000) }, 1000)
            XCTAssertEqual(keepers[index % 2].arrived.wait(timeout: .now() + 10), .success, "read \(index)")
        }
        for pair in pairs { close(pair.1) }
        for keeper in keepers { try keeper.closed.futureResult.wait() }
        // What each socket's delegate kept, read by read, as it is now.
        let seen = keepers.map { keeper in
            keeper.kept.withLockedValue { $0.map { String(decoding: $0.readableBytesView, as: UTF8.self) }.joined() }
        }
        XCTAssertEqual(seen[0], ["A", "C", "E"].map { String(repeating: $0, count: 1000) }.joined())
        XCTAssertEqual(seen[1], ["B", "D", "F"].map { String(repeating: $0, count: 1000) }.joined())
    }

    /// A base-mode connection's `clientInfo` address comes from the socket itself: the
    /// peer's IP address and port, for IPv4 and IPv6 alike ("unix" for a Unix socket).
    func testPeerAddressOfLoopbackConnections() throws {
        for host in ["127.0.0.1", "::1"] {
            let bound = Result { try Syscall.bindInet(host: host, port: 0, udp: false, backlog: 4, reusePort: false) }
            // A machine without IPv6 has no ::1 to test on.
            if host == "::1", case .failure = bound { continue }
            let listener = try bound.get()
            defer { close(listener.fd) }
            var hints = addrinfo()
            hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV
            hints.ai_socktype = CInt(SOCK_STREAM.rawValue)
            var found: UnsafeMutablePointer<addrinfo>?
            XCTAssertEqual(getaddrinfo(host, String(listener.port), &hints, &found), 0)
            defer { freeaddrinfo(found) }
            let target = try XCTUnwrap(found).pointee
            let client = socket(target.ai_family, target.ai_socktype, 0)
            defer { close(client) }
            let connected = connect(client, target.ai_addr, target.ai_addrlen)
            XCTAssertEqual(connected, 0, "connect to \(host)")
            let accepted = accept(listener.fd, nil, nil)
            XCTAssertGreaterThanOrEqual(accepted, 0)
            defer { close(accepted) }
            // The client's own port, as the server's peer.
            var local = sockaddr_storage()
            var localLength = socklen_t(MemoryLayout<sockaddr_storage>.size)
            _ = withUnsafeMutablePointer(to: &local) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(client, $0, &localLength) }
            }
            let clientPort = withUnsafeBytes(of: local) { bytes in
                Int(UInt16(bigEndian: bytes.load(fromByteOffset: 2, as: UInt16.self)))
            }
            let peer = Syscall.peerAddress(accepted)
            XCTAssertEqual(peer.ip, host)
            XCTAssertEqual(peer.port, clientPort)
        }
        let (ours, theirs) = try socketPair()
        defer { close(ours); close(theirs) }
        XCTAssertEqual(Syscall.peerAddress(ours).ip, "unix")
    }
}
