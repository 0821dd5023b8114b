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
}
