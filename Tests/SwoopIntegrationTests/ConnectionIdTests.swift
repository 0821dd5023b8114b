import Foundation
import XCTest

/// Test 17: connection ids are never reused during a server's life.
class ConnectionIdTests: SwoopTestCase {
    /// 50 sequential connections, each closed (and its close processed: connection_num
    /// back to the baseline) before the next opens, so a server that recycled ids (e.g.
    /// used file descriptor numbers) would hand out the same id again.
    func testConnectionIdsAreNeverReused() throws {
        let server = try startServer(["--worker-num", "2"])
        let monitor = try connect(server)
        let monitorId = try XCTUnwrap(whoami(monitor).conn)
        let baseline = try connectionCount(monitor)

        var ids: [Int] = []
        for i in 0..<50 {
            let client = try connect(server)
            ids.append(try XCTUnwrap(whoami(client).conn))
            client.close()
            try eventually("connection \(i) closed on the server", timeout: 5, poll: 0.01) {
                try connectionCount(monitor) == baseline
            }
        }
        XCTAssertEqual(Set(ids).count, ids.count, "connection ids were reused: \(ids)")
        XCTAssertFalse(ids.contains(monitorId), "the monitor's id \(monitorId) was handed out again: \(ids)")
    }
}
