import Foundation
import XCTest

/// Test 10: a handler waiting asynchronously (`sleep`) does not block its worker.
class AsyncHandlerTests: SwoopTestCase {
    /// With ONE worker, client A's `sleep 1500` is pending while client B's pings are
    /// each answered within 500 ms; then A gets `slept 1500`, no earlier than ~1.5 s.
    func testSleepDoesNotBlockTheWorker() throws {
        let server = try startServer(["--worker-num", "1"])
        let a = try connect(server)
        let b = try connect(server)
        XCTAssertEqual(try b.request("ping"), "pong")

        let start = monotonicNow()
        try a.send("sleep 1500")
        var pings = 0
        while monotonicNow() - start < 1.2 {
            let t0 = monotonicNow()
            XCTAssertEqual(try b.request("ping", timeout: 2), "pong")
            let elapsed = monotonicNow() - t0
            XCTAssertLessThan(elapsed, 0.5, "ping took \(elapsed) s while another request slept")
            pings += 1
            // Pace the pings; the pause is spent watching A, whose early reply would be a bug.
            if monotonicNow() - start < 1.2 {
                XCTAssertFalse(a.hasInput(within: 0.1), "A was answered after \(monotonicNow() - start) s, before its sleep ended")
            }
        }
        XCTAssertGreaterThanOrEqual(pings, 3)

        XCTAssertEqual(try a.readLine(timeout: 5), "slept 1500")
        XCTAssertGreaterThanOrEqual(monotonicNow() - start, 1.45, "A's reply came before 1500 ms")
        XCTAssertEqual(try a.request("ping"), "pong")
    }

    /// The events of one loop turn run one after another in one task until a handler
    /// suspends; the events behind a suspended one go on at once. A's `sleep` and B's `ping`
    /// are written together, so that the worker reads them in one turn as often as not:
    /// B is answered while A sleeps, in both modes.
    func testEventsBehindASuspendedHandlerGoOnAtOnce() throws {
        for mode in ["process", "base"] {
            let server = try startServer(["--worker-num", "1", "--mode", mode])
            for round in 0..<5 {
                let a = try connect(server)
                let b = try connect(server)
                XCTAssertEqual(try b.request("ping"), "pong")
                let start = monotonicNow()
                try a.send("sleep 1000")
                try b.send("ping")
                XCTAssertEqual(try b.readLine(timeout: 5), "pong")
                let elapsed = monotonicNow() - start
                XCTAssertLessThan(elapsed, 0.5, "\(mode) mode, round \(round): B waited \(elapsed) s behind A's sleep")
                XCTAssertEqual(try a.readLine(timeout: 5), "slept 1000")
            }
        }
    }
}
