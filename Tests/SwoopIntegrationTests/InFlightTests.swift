import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// A worker that dies holding requests: the master closes exactly those clients at once,
/// instead of leaving them waiting, and keeps every other connection open.
final class InFlightTests: SwoopTestCase {
    func testCrashClosesOnlyTheConnectionWhoseRequestWasInFlight() throws {
        let server = try startServer(["--worker-num", "1"])
        let bystander = try connect(server)
        XCTAssertEqual(try bystander.request("ping"), "pong")
        let victim = try connect(server)
        try victim.send("crash")
        XCTAssertTrue(victim.isClosedByPeer(timeout: 3), "the crashing request's client is closed at once")
        XCTAssertEqual(try bystander.request("ping", timeout: 10), "pong", "the other connection is kept and served")
    }

    func testKilledWorkerClosesTheClientsItHeld() throws {
        let server = try startServer(["--worker-num", "2", "--dispatch-mode", "2"])
        var byWorker: [Int: [LineClient]] = [:]
        for _ in 0..<6 {
            let client = try connect(server)
            byWorker[try whoami(client).worker, default: []].append(client)
        }
        let holders = byWorker[0] ?? []
        let others = byWorker[1] ?? []
        XCTAssertFalse(holders.isEmpty)
        XCTAssertFalse(others.isEmpty)
        let idle = holders.dropFirst()
        let busy = holders.first!
        try busy.send("sleep 5000")
        let probe = try connect(server)
        try eventually("the sleep is in flight") { try self.stats(probe).int("request_count") ?? 0 >= 7 }
        let killedAt = Date()
        try server.signalProcess(server.workerPids()[0]!, SIGKILL)
        XCTAssertTrue(busy.isClosedByPeer(timeout: 3), "the client whose request was in flight is closed")
        XCTAssertLessThan(Date().timeIntervalSince(killedAt), 3)
        for client in Array(idle) + others {
            XCTAssertEqual(try client.request("ping", timeout: 10), "pong", "connections without a request in flight stay open")
        }
    }
}
