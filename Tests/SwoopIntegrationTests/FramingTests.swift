import Foundation
import XCTest

/// Test 6: line framing and hostile input. Every abuse affects only the abusing
/// connection; the server keeps serving everybody else.
class FramingTests: SwoopTestCase {
    /// A 16 MiB line without a newline exceeds packageMaxLength (2 MiB): that connection
    /// is closed, a client connected before and one connected after are still served.
    func testOversizedLineClosesOnlyThatConnection() throws {
        let server = try startServer(["--worker-num", "2"])
        let before = try connect(server)
        XCTAssertEqual(try before.request("ping"), "pong")

        let abuser = try connect(server)
        let payload = Array("echo ".utf8) + [UInt8](repeating: UInt8(ascii: "a"), count: 16 << 20)
        do {
            try abuser.sendRaw(payload, timeout: 15)
        } catch let error as SocketError where error.kind == .closed {
            // Expected: the server may close while we are still sending.
        } catch let error as SocketError where error.kind == .timeout {
            XCTFail("the server stopped reading the oversized line without closing the connection: \(error)")
        }
        XCTAssertTrue(abuser.isClosedByPeer(timeout: 5), "the connection with a 16 MiB line must be closed")

        XCTAssertEqual(try before.request("ping"), "pong")
        XCTAssertEqual(try before.request("echo still here"), "still here")
        XCTAssertEqual(try connect(server).request("ping"), "pong")
    }

    /// A line below the limit (1 MiB) is an ordinary request.
    func testLargeLineBelowLimitIsServed() throws {
        let server = try startServer(["--worker-num", "1"])
        let client = try connect(server)
        let text = String(repeating: "b", count: 1 << 20)
        try client.send("echo " + text, timeout: 10)
        let reply = try client.readLine(timeout: 10)
        XCTAssertEqual(reply.count, text.count)
        XCTAssertTrue(reply == text, "the 1 MiB echo came back altered")
        XCTAssertEqual(try client.request("ping"), "pong")
    }

    /// Binary garbage (NULs, invalid UTF-8, control bytes) then "\n" is just an unknown
    /// command; the connection stays usable.
    func testGarbageBytesAreAnUnknownCommand() throws {
        let server = try startServer(["--worker-num", "1"])
        let client = try connect(server)
        try client.sendRaw([0x00, 0x01, 0x02, 0xFF, 0xFE, 0x00, 0x7F, 0x1B, 0x78, 0x00, 0xC3, 0x28, 0x0A])
        XCTAssertEqual(try client.readLine(), "error unknown command")
        XCTAssertEqual(try client.request("ping"), "pong")
    }

    /// Several lines in one write get one reply each, in order; a line trickling in byte
    /// by byte gets exactly one reply.
    func testPipelinedAndFragmentedLines() throws {
        let server = try startServer(["--worker-num", "2"])
        let client = try connect(server)
        try client.sendRaw(Array("ping\necho two\nbogus\necho four\n".utf8))
        XCTAssertEqual(try client.readLine(), "pong")
        XCTAssertEqual(try client.readLine(), "two")
        XCTAssertEqual(try client.readLine(), "error unknown command")
        XCTAssertEqual(try client.readLine(), "four")

        for byte in Array("echo fragmented\n".utf8) {
            try client.sendRaw([byte])
            // Pace the bytes so they travel in separate segments (TCP_NODELAY is on);
            // there is nothing to wait for, the server must simply keep buffering.
            pause(0.003)
        }
        XCTAssertEqual(try client.readLine(), "fragmented")
        XCTAssertFalse(client.hasInput(within: 0.2), "exactly one reply expected for one line")
    }

    /// A client sending half a line and then resetting the connection (SO_LINGER 0)
    /// disturbs nobody, and its connection is accounted as closed.
    func testHalfLineThenResetDoesNotDisturbOthers() throws {
        let server = try startServer(["--worker-num", "2"])
        let other = try connect(server)
        XCTAssertEqual(try other.request("ping"), "pong")
        let baseline = try connectionCount(other)

        let rude = try connect(server)
        try rude.sendRaw(Array("echo hal".utf8))
        rude.resetAndClose()

        XCTAssertEqual(try other.request("ping"), "pong")
        XCTAssertEqual(try other.request("echo fine"), "fine")
        XCTAssertEqual(try connect(server).request("ping"), "pong")
        try eventually("connection_num back to \(baseline)") { try connectionCount(other) == baseline }
    }

    /// 1000 clients that connect and reset at once: afterwards connection_num returns to
    /// its baseline (no leaked connection) and a normal client is served.
    func testThousandConnectAndResetClients() throws {
        let server = try startServer(["--worker-num", "2", "--reactor-num", "2"])
        let monitor = try connect(server)
        let baseline = try connectionCount(monitor)

        // Batches of 50 open sockets: concurrent enough to race accept() against the
        // resets, small enough to stay far below any accept backlog.
        for _ in 0..<20 {
            let batch = try (0..<50).map { _ in try connect(server) }
            for client in batch { client.resetAndClose() }
        }

        try eventually("connection_num back to baseline \(baseline)", timeout: 10) {
            try connectionCount(monitor) == baseline
        }
        XCTAssertEqual(try monitor.request("ping"), "pong")
        let fresh = try connect(server)
        XCTAssertEqual(try fresh.request("echo alive"), "alive")
        XCTAssertGreaterThanOrEqual(try stats(monitor).int("accept_count") ?? -1, 1)
    }
}
