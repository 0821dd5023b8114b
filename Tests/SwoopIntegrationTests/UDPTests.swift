import Foundation
import XCTest

/// Test 8: the UDP listener answers `ping` and `whoami` with datagrams.
class UDPTests: SwoopTestCase {
    func testUDPPingAndWhoami() throws {
        let server = try startServer(["--worker-num", "2", "--udp-port", "0"])
        XCTAssertNotEqual(server.udpPort, 0, "ready line must announce the UDP port: \(server.readyLine)")
        let udp = try UDPClient(port: server.udpPort)

        XCTAssertEqual(try udp.request("ping"), "pong")
        let workers = server.workerPids()
        for _ in 0..<4 {
            let reply = try udp.request("whoami")
            let me = try XCTUnwrap(WhoAmI.parseUDP(reply), "malformed UDP whoami reply: \"\(reply)\" (want worker=<id> pid=<pid>)")
            XCTAssertTrue((0..<2).contains(me.worker), reply)
            XCTAssertEqual(workers[me.worker], me.pid, "UDP whoami pid must be the tree's worker \(me.worker)")
        }
        // TCP keeps working next to UDP.
        XCTAssertEqual(try connect(server).request("ping"), "pong")
    }
}
