import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Tests 11-13: graceful stop (SIGTERM, SIGINT) and reloads (SIGUSR1, SIGUSR2).
class SignalTests: SwoopTestCase {
    // MARK: Graceful stop

    func testSIGTERMStopsEverythingGracefully() throws {
        try checkGracefulStop(signal: SIGTERM)
    }

    func testSIGINTStopsEverythingGracefully() throws {
        try checkGracefulStop(signal: SIGINT)
    }

    /// Stop with `sig`: the master exits with status 0 within 10 s, no process of the
    /// tree is left, open connections are closed, and the log shows onWorkerStop for each
    /// worker and task worker, then onManagerStop, then onShutdown as the last lifecycle event.
    private func checkGracefulStop(signal sig: Int32, file: StaticString = #filePath, line: UInt = #line) throws {
        let server = try startServer(["--worker-num", "2", "--task-worker-num", "1"])
        let client = try connect(server)
        XCTAssertEqual(try client.request("ping"), "pong", file: file, line: line)
        let workers = server.workerPids()
        XCTAssertEqual(workers.keys.sorted(), [0, 1, 2], file: file, line: line)
        let tree = server.processTree()
        XCTAssertEqual(tree.count, 5, "tree:\n\(describe(tree))", file: file, line: line)

        let status = try server.stop(signal: sig, timeout: 10)
        XCTAssertEqual(status, .exited(0), "master exit after signal \(sig)", file: file, line: line)

        try eventually("no process of the tree left", timeout: 3) { server.survivors().isEmpty }
        for p in tree {
            XCTAssertFalse(ProcFS.isAlive(p.pid, startTime: p.info.startTime), "\(p) survived", file: file, line: line)
        }
        XCTAssertTrue(client.isClosedByPeer(timeout: 2), "open connection must be closed", file: file, line: line)

        let events = server.logEvents()
        let log = events.map(\.line).joined(separator: "\n")
        let managerStop = events.lastIndex { $0.name == "onManagerStop" }
        let shutdown = events.lastIndex { $0.name == "onShutdown" }
        XCTAssertNotNil(managerStop, "no onManagerStop in log:\n\(log)", file: file, line: line)
        XCTAssertNotNil(shutdown, "no onShutdown in log:\n\(log)", file: file, line: line)
        for id in 0..<3 {
            let pid = try XCTUnwrap(workers[id], file: file, line: line)
            let stop = events.firstIndex { $0.name == "onWorkerStop" && $0.int("id") == id && $0.int("pid") == Int(pid) }
            XCTAssertNotNil(stop, "no onWorkerStop id=\(id) pid=\(pid) in log:\n\(log)", file: file, line: line)
            if let stop, let managerStop {
                XCTAssertLessThan(stop, managerStop, "onWorkerStop of \(id) must precede onManagerStop:\n\(log)", file: file, line: line)
            }
        }
        if let managerStop, let shutdown {
            XCTAssertLessThan(managerStop, shutdown, "onManagerStop must precede onShutdown:\n\(log)", file: file, line: line)
        }
        XCTAssertEqual(events.last?.name, "onShutdown", "onShutdown must be the last lifecycle event:\n\(log)", file: file, line: line)
    }

    // MARK: Reloads

    /// Test 12: SIGUSR1 replaces every worker and task worker (same ids, new pids) while
    /// master and manager stay, and an open connection keeps working through it.
    func testSIGUSR1ReloadsAllWorkersKeepingConnections() throws {
        try XCTSkipIf(serverMode == "base", "base mode: a reload closes the connections (HTTPBaseModeTests)")
        let server = try startServer(["--worker-num", "2", "--task-worker-num", "1"])
        let client = try connect(server)
        XCTAssertEqual(try client.request("ping"), "pong")
        let meBefore = try whoami(client)
        let before = server.workerPids()
        XCTAssertEqual(before.keys.sorted(), [0, 1, 2])
        let oldPids = Set(before.values)

        try server.signal(SIGUSR1)
        try eventually("all 3 workers replaced by new pids", timeout: 15) {
            let now = server.workerProcesses()
            return now.map { $0.workerId! } == [0, 1, 2] && now.allSatisfy { !oldPids.contains($0.pid) }
        }
        assertMasterAndManagerUnchanged(server)
        assertWorkerSet(server, workers: 2, taskWorkers: 1)
        for pid in oldPids {
            XCTAssertFalse(ProcFS.isAlive(pid), "old worker \(pid) still alive")
        }

        // The same connection survived the reload and is served by the new generation.
        XCTAssertEqual(try client.request("ping"), "pong")
        let meAfter = try whoami(client)
        XCTAssertEqual(meAfter.conn, meBefore.conn, "same connection, same connection id")
        XCTAssertEqual(server.workerPids()[meAfter.worker], meAfter.pid)
        XCTAssertFalse(oldPids.contains(meAfter.pid), "served by an old worker after the reload")

        for id in 0..<3 {
            _ = try waitForLogEvent(server, "onWorkerStop", ["id": id, "pid": Int(before[id]!)], timeout: 5)
        }
        for (id, pid) in server.workerPids() {
            _ = try waitForLogEvent(server, "onWorkerStart", ["id": id, "pid": Int(pid)], timeout: 5)
        }
    }

    /// Test 13: SIGUSR2 replaces only the task workers; worker pids do not change.
    func testSIGUSR2ReloadsOnlyTaskWorkers() throws {
        let server = try startServer(["--worker-num", "2", "--task-worker-num", "2"])
        let client = try connect(server)
        XCTAssertEqual(try client.request("ping"), "pong")
        let before = server.workerPids()
        XCTAssertEqual(before.keys.sorted(), [0, 1, 2, 3])

        try server.signal(SIGUSR2)
        try eventually("task workers 2 and 3 replaced by new pids", timeout: 15) {
            let now = server.workerProcesses()
            let tasks = now.filter { if case .taskWorker = $0.role { return true } else { return false } }
            return tasks.map { $0.workerId! } == [2, 3] && tasks.allSatisfy { $0.pid != before[$0.workerId!] }
        }
        // Nothing observable announces "the reload is over"; watch the workers for a
        // second to make sure they are not replaced after the task workers.
        let workersStay = holds(for: 1.0) {
            let now = server.workerPids()
            return now[0] == before[0] && now[1] == before[1]
        }
        XCTAssertTrue(workersStay, "SIGUSR2 must not replace workers: before \(before), now \(server.workerPids())")
        assertMasterAndManagerUnchanged(server)
        assertWorkerSet(server, workers: 2, taskWorkers: 2)
        XCTAssertEqual(try client.request("ping"), "pong")
        for id in 2..<4 {
            _ = try waitForLogEvent(server, "onWorkerStop", ["id": id, "pid": Int(before[id]!)], timeout: 5)
        }
        for id in 0..<2 {
            XCTAssertNil(logEvent(server, "onWorkerStop", ["id": id]), "worker \(id) must not have stopped")
        }
    }
}
