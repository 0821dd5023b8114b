#if canImport(Glibc)
import Glibc
#endif
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import XCTest

@testable import Swoop

/// The master's UDP socket on Swoop's own loop, over real loopback sockets.
final class DatagramSocketTests: XCTestCase {
    private var loop: EpollLoop!

    override func setUpWithError() throws { loop = try EpollLoop.start(name: "udp-test") }
    override func tearDownWithError() throws { try loop.syncShutdownGracefully() }

    /// A UDP socket on the loop, bound to `host` on a free port, that records what it receives.
    private func listener(_ host: String) throws -> (DatagramSocket, port: Int,
                                                      received: NIOLockedValueBox<[(String, String, Int)]>,
                                                      arrived: DispatchSemaphore) {
        let (fd, port) = try Syscall.bindInet(host: host, port: 0, udp: true, backlog: 0, reusePort: false)
        let received = NIOLockedValueBox<[(String, String, Int)]>([])
        let arrived = DispatchSemaphore(value: 0)
        let socket = DatagramSocket(fd: fd, loop: loop) { data, ip, port in
            received.withLockedValue { $0.append((String(buffer: data), ip, port)) }
            arrived.signal()
        } failed: { error in
            XCTFail("\(error)")
        }
        let loop = self.loop!
        try loop.submit { try socket.start() }.wait()
        return (socket, port, received, arrived)
    }

    /// A plain blocking UDP socket for the test's side, bound to `host`, with a receive timeout.
    private func client(_ host: String) throws -> (fd: CInt, port: Int) {
        let (fd, port) = try Syscall.bindInet(host: host, port: 0, udp: true, backlog: 0, reusePort: false)
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags & ~O_NONBLOCK)
        var limit = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        return (fd, port)
    }

    private func send(_ text: String, from fd: CInt, to ip: String, port: Int) throws {
        let address = try XCTUnwrap(Syscall.address(ip: ip, port: port))
        let sent = try Array(text.utf8).withUnsafeBytes { try Syscall.send(fd, $0, to: address) }
        XCTAssertEqual(sent, text.utf8.count)
    }

    private func receive(_ fd: CInt) -> String? {
        var bytes = [UInt8](repeating: 0, count: 65_536)
        let n = recv(fd, &bytes, bytes.count, 0)
        return n < 0 ? nil : String(decoding: bytes.prefix(n), as: UTF8.self)
    }

    func testADatagramArrivesWithItsSenderAndTheRepliesGoBackInOrder() throws {
        try exchange(on: "127.0.0.1")
    }

    func testIPv6() throws {
        guard let probe = try? Syscall.bindInet(host: "::1", port: 0, udp: true, backlog: 0, reusePort: false) else {
            throw XCTSkip("no IPv6 loopback on this machine")
        }
        Syscall.close(probe.fd)
        try exchange(on: "::1")
    }

    private func exchange(on host: String) throws {
        let (socket, port, received, arrived) = try listener(host)
        let (fd, clientPort) = try client(host)
        defer {
            Syscall.close(fd)
            let loop = self.loop!
            try? loop.submit { socket.close() }.wait()
        }
        try send("ping", from: fd, to: host, port: port)
        XCTAssertEqual(arrived.wait(timeout: .now() + 10), .success)
        let first = try XCTUnwrap(received.withLockedValue { $0.first })
        XCTAssertEqual(first.0, "ping")
        XCTAssertEqual(first.1, host, "the sender's address as text")
        XCTAssertEqual(first.2, clientPort)
        // Replies sent from another thread go out in the order they were given.
        for index in 0..<200 {
            try socket.send(ByteBuffer(string: "reply \(index)"), toIP: first.1, port: first.2)
        }
        for index in 0..<200 {
            XCTAssertEqual(receive(fd), "reply \(index)")
        }
    }

    func testAddressesConvertBothWays() throws {
        for (ip, port) in [("127.0.0.1", 9501), ("10.1.2.3", 1), ("::1", 65535), ("fe80::1:2", 53)] {
            let address = try XCTUnwrap(Syscall.address(ip: ip, port: port), ip)
            let back = try XCTUnwrap(Syscall.text(of: address), ip)
            XCTAssertEqual(back.ip, ip)
            XCTAssertEqual(back.port, port)
        }
        XCTAssertNil(Syscall.address(ip: "localhost", port: 1), "only numeric addresses")
        XCTAssertNil(Syscall.address(ip: "1.2.3", port: 1))
    }

    func testSendingToAName() throws {
        let (socket, _, _, _) = try listener("127.0.0.1")
        defer {
            let loop = self.loop!
            try? loop.submit { socket.close() }.wait()
        }
        XCTAssertThrowsError(try socket.send(ByteBuffer(string: "x"), toIP: "example.com", port: 53)) { error in
            XCTAssertEqual((error as? SystemError)?.errno, EINVAL)
        }
    }
}
