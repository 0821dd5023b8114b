import Foundation
import XCTest

/// Test 2: the TCP line commands ping, echo, whoami, unknown, close and stats.
final class CommandTests: SwoopTestCase {
    func testPingEchoWhoamiAndUnknownCommand() throws {
        let server = try startServer(["--worker-num", "2", "--reactor-num", "2"])
        let client = try connect(server)

        XCTAssertEqual(try client.request("ping"), "pong")
        XCTAssertEqual(try client.request("echo hello"), "hello")
        XCTAssertEqual(try client.request("echo hello  spaced world"), "hello  spaced world")
        XCTAssertEqual(try client.request("frobnicate"), "error unknown command")
        XCTAssertEqual(try client.request("ping"), "pong", "the connection survives an unknown command")

        let me = try whoami(client)
        XCTAssertTrue((0..<2).contains(me.worker), "worker id \(me.worker) out of 0..<2")
        XCTAssertEqual(server.workerPids()[me.worker], me.pid, "whoami pid must be worker \(me.worker)'s pid in the tree")
        XCTAssertEqual(ProcFS.title(me.pid), "swoop-demo: worker \(me.worker)")
        let reactor = try XCTUnwrap(me.reactor)
        XCTAssertTrue((0..<2).contains(reactor), "reactor id \(reactor) out of 0..<2 (--reactor-num 2)")
        // Same connection → same connection id.
        XCTAssertEqual(try whoami(client).conn, me.conn)
    }

    /// `close` makes the server close the connection (the client reads EOF); other
    /// connections are unaffected.
    func testCloseCommandClosesTheConnection() throws {
        let server = try startServer(["--worker-num", "2"])
        let other = try connect(server)
        XCTAssertEqual(try other.request("ping"), "pong")

        let client = try connect(server)
        XCTAssertEqual(try client.request("ping"), "pong")
        try client.send("close")
        XCTAssertTrue(client.isClosedByPeer(timeout: 5), "server did not close the connection after `close`")
        XCTAssertThrowsError(try client.readLine(timeout: 1)) { error in
            XCTAssertEqual((error as? SocketError)?.kind, .closed)
        }
        XCTAssertEqual(try other.request("ping"), "pong")
        XCTAssertEqual(try connect(server).request("ping"), "pong")
    }

    /// `stats` is one line of JSON with the required keys and plausible counters that
    /// follow connections opening and closing.
    func testStatsIsJSONWithCounters() throws {
        let server = try startServer(["--worker-num", "2", "--task-worker-num", "1"])
        let client = try connect(server)
        XCTAssertEqual(try client.request("ping"), "pong")

        let first = try stats(client)
        for key in Stats.requiredKeys {
            XCTAssertNotNil(first.object[key], "stats lacks \(key): \(first.object)")
        }
        for key in Stats.requiredKeys where key != "start_time" {
            XCTAssertNotNil(first.int(key), "stats \(key) is not a number: \(String(describing: first.object[key]))")
        }
        XCTAssertGreaterThanOrEqual(first.int("accept_count") ?? -1, 1)
        XCTAssertGreaterThanOrEqual(first.int("connection_num") ?? -1, 1)
        XCTAssertGreaterThanOrEqual(first.int("request_count") ?? -1, 1, "a ping was served before")
        XCTAssertEqual(first.int("worker_num"), 2)
        XCTAssertEqual(first.int("task_worker_num"), 1)

        // A second connection shows up in connection_num and accept_count, and its close
        // in close_count.
        let baseline = try XCTUnwrap(first.int("connection_num"))
        let acceptsBefore = try XCTUnwrap(first.int("accept_count"))
        let closesBefore = try XCTUnwrap(first.int("close_count"))
        let second = try connect(server)
        XCTAssertEqual(try second.request("ping"), "pong")
        try eventually("connection_num == \(baseline + 1)") { try connectionCount(client) == baseline + 1 }
        XCTAssertGreaterThanOrEqual(try stats(client).int("accept_count") ?? -1, acceptsBefore + 1)
        second.close()
        try eventually("connection_num back to \(baseline)") { try connectionCount(client) == baseline }
        XCTAssertGreaterThanOrEqual(try stats(client).int("close_count") ?? -1, closesBefore + 1)
    }
}

extension CommandTests {
    func testCRLFLinesAreAnsweredLikeLFLines() throws {
        let server = try startServer(["--worker-num", "1"])
        let client = try connect(server)
        try client.sendRaw(Array("echo a b\r\nping\r\necho\r\n".utf8))
        XCTAssertEqual(try client.readLine(), "a b")
        XCTAssertEqual(try client.readLine(), "pong")
        XCTAssertEqual(try client.readLine(), "")
    }
}
