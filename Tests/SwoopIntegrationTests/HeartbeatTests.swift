import Foundation
import XCTest

/// Test 7: heartbeat. With a check every 1 s and an idle limit of 2 s, a silent
/// connection is closed after ~2-3 s while one that pings every 0.5 s stays open.
class HeartbeatTests: SwoopTestCase {
    func testIdleConnectionIsClosedActiveOneSurvives() throws {
        let server = try startServer([
            "--worker-num", "2", "--heartbeat-check-interval", "1", "--heartbeat-idle-time", "2",
        ])
        let silent = try connect(server)
        let active = try connect(server)
        let start = monotonicNow()
        var silentClosedAfter: TimeInterval?

        // Ping every 0.5 s for 4.5 s; the wait between pings is spent waiting for the
        // silent connection's close, so its closing time is measured precisely.
        var tick = 0
        while monotonicNow() - start < 4.5 {
            XCTAssertEqual(try active.request("ping", timeout: 2), "pong", "active connection at \(monotonicNow() - start) s")
            tick += 1
            let nextTick = start + Double(tick) * 0.5
            if silentClosedAfter == nil {
                if silent.isClosedByPeer(timeout: max(0, nextTick - monotonicNow())) {
                    silentClosedAfter = monotonicNow() - start
                }
            }
            pause(max(0, nextTick - monotonicNow()))
        }

        let closedAfter = try XCTUnwrap(silentClosedAfter, "the silent connection was not closed within 4.5 s")
        XCTAssertGreaterThanOrEqual(closedAfter, 1.5, "closed too early: idle time is 2 s")
        XCTAssertLessThanOrEqual(closedAfter, 4.0, "closed too late: expected ~2-3 s")
        XCTAssertFalse(active.isClosedByPeer(timeout: 0), "the active connection must stay open")
        XCTAssertEqual(try active.request("ping"), "pong")
    }
}
