import Foundation
import XCTest

/// Test 9: pipe messages between workers via `relay W TEXT`.
class PipeMessageTests: SwoopTestCase {
    /// `relay W hello` for every W (including the serving worker itself) comes back as
    /// `relayed from=<serving worker> by=W hello`.
    func testRelayReachesEveryWorker() throws {
        let server = try startServer(["--worker-num", "3"])
        let client = try connect(server)
        let serving = try whoami(client).worker
        for target in 0..<3 {
            XCTAssertEqual(try client.request("relay \(target) hello", timeout: 5),
                           "relayed from=\(serving) by=\(target) hello")
        }
        // The connection keeps working normally afterwards.
        XCTAssertEqual(try client.request("ping"), "pong")
    }
}
