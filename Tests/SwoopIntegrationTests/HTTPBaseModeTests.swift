import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Every HTTP test again in base mode (the inherited tests run with `--mode base`: each
/// worker accepts and serves its own connections), and what differs there: a connection
/// lives and dies with its worker.
final class HTTPBaseModeTests: HTTPTests {
    override var serverMode: String { "base" }

    func testWorkersAcceptAndTheMasterHasNoReactorThreads() throws {
        let server = try startHTTP(["--worker-num", "2"])
        let client = try raw(server)
        let served = try XCTUnwrap(WhoAmI.parseTCP(try client.get("/whoami").text))
        XCTAssertEqual(served.reactor, served.worker, "base mode reports the worker id as the reactor id")
        XCTAssertTrue(server.workerPids().values.contains(served.pid))
        XCTAssertFalse(threadNames(server.masterPid).contains("swoop-acceptor"),
                       "the master accepts nothing: \(threadNames(server.masterPid))")
        for pid in server.workerPids().values {
            XCTAssertTrue(threadNames(pid).contains("swoop-acceptor"), "worker \(pid) accepts: \(threadNames(pid))")
        }
    }

    func testACrashClosesThatWorkersConnectionsAndANewConnectionIsServed() throws {
        let server = try startHTTP(["--worker-num", "1"])
        let bystander = try raw(server)
        let before = try XCTUnwrap(WhoAmI.parseTCP(try bystander.get("/whoami").text))
        let client = try raw(server)
        try client.send(RawHTTPClient.request("GET", "/crash"))
        XCTAssertTrue(client.isClosedByPeer(timeout: 10), "the crashing request's connection closes with its worker")
        XCTAssertTrue(bystander.isClosedByPeer(timeout: 10), "so do the other connections of that worker")
        try waitForANewWorker(server, other: before.pid)
        assertMasterAndManagerUnchanged(server)
    }

    func testAReloadFinishesTheRequestInFlightThenClosesTheConnection() throws {
        let server = try startHTTP(["--worker-num", "1"])
        let client = try raw(server)
        let before = try XCTUnwrap(WhoAmI.parseTCP(try client.get("/whoami").text))
        try client.send(RawHTTPClient.request("GET", "/sleep?ms=800"))
        let line = try connect(server)
        try eventually("the sleep is in the worker's hands") {
            (try stats(line).int("request_count") ?? 0) >= 3
        }
        try server.signal(SIGUSR1)
        let reply = try client.readResponse(timeout: 10)
        XCTAssertEqual(reply.status, 200)
        XCTAssertEqual(reply.text, "slept 800", "the request in flight is answered before its connection closes")
        XCTAssertTrue(client.isClosedByPeer(timeout: 10), "then the old worker closes its connections")
        try waitForANewWorker(server, other: before.pid)
        assertMasterAndManagerUnchanged(server)
    }

    /// Waits until a new connection is served by a worker other than `pid` (its replacement).
    private func waitForANewWorker(_ server: DemoServer, other pid: Int32) throws {
        try eventually("a new connection is served by a new worker", timeout: 15) {
            let fresh = try RawHTTPClient(port: server.httpPort)
            defer { fresh.close() }
            return try XCTUnwrap(WhoAmI.parseTCP(try fresh.get("/whoami").text)).pid != pid
        }
    }

    private func threadNames(_ pid: pid_t) -> [String] {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        return tasks.compactMap { task in
            ProcFS.readFile("/proc/\(pid)/task/\(task)/comm").map {
                String(decoding: $0, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            }
        }
    }
}
