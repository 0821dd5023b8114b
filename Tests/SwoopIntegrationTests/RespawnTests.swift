import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Tests 3 and 4: the manager respawns a dead worker or task worker in the same slot,
/// logs onWorkerError, and reaps it (no zombie).
final class RespawnTests: SwoopTestCase {
    /// Waits for slot `id` to be served by a new process (not `oldPid`) and returns its pid;
    /// checks the onWorkerError line of the old process and that no zombie is left.
    /// - Parameter expectedSignal: the exact signal the log must report, or nil to accept
    ///   any non-zero signal or exit code.
    private func assertRespawned(
        _ server: DemoServer, id: Int, oldPid: pid_t, expectedSignal: Int32?,
        workers: Int, taskWorkers: Int,
        file: StaticString = #filePath, line: UInt = #line
    ) throws -> pid_t {
        var newPid: pid_t = 0
        try eventually("slot \(id) respawned with a new pid (old \(oldPid))") {
            guard let pid = server.workerPids()[id], pid != oldPid else { return false }
            newPid = pid
            return true
        }
        XCTAssertFalse(ProcFS.isAlive(oldPid), "old process \(oldPid) still alive", file: file, line: line)

        let error = try waitForLogEvent(server, "onWorkerError", ["id": id, "pid": Int(oldPid)])
        let exitCode = error.int("exit_code")
        let signal = error.int("signal")
        XCTAssertNotNil(exitCode, "onWorkerError lacks exit_code=: \(error.line)", file: file, line: line)
        XCTAssertNotNil(signal, "onWorkerError lacks signal=: \(error.line)", file: file, line: line)
        if let expectedSignal {
            XCTAssertEqual(signal, Int(expectedSignal), "onWorkerError signal: \(error.line)", file: file, line: line)
        } else {
            XCTAssertTrue((signal ?? 0) != 0 || (exitCode ?? 0) != 0,
                          "an abnormal exit must be logged with a non-zero signal or exit code: \(error.line)",
                          file: file, line: line)
        }
        _ = try waitForLogEvent(server, "onWorkerStart", ["id": id, "pid": Int(newPid)])

        // The manager reaps its dead children: a zombie may exist for an instant between
        // death and waitpid, so wait for none to remain.
        try eventually("no zombie under master/manager") { !server.processTree().contains { $0.isZombie } }
        try eventually("full worker set") { server.workerProcesses().count == workers + taskWorkers }
        assertWorkerSet(server, workers: workers, taskWorkers: taskWorkers, file: file, line: line)
        assertMasterAndManagerUnchanged(server, file: file, line: line)
        return newPid
    }

    /// Test 3: `crash` aborts the serving worker; the manager respawns slot W with a new
    /// pid, logs onWorkerError (SIGABRT expected, any abnormal end accepted), new
    /// connections are served, and with dispatch mode 2 a connection lands on the new W.
    func testCrashCommandRespawnsWorkerInSameSlot() throws {
        let server = try startServer(["--worker-num", "2", "--dispatch-mode", "2"])
        let client = try connect(server)
        let before = try whoami(client)
        XCTAssertEqual(server.workerPids()[before.worker], before.pid)

        try client.send("crash")
        let newPid = try assertRespawned(
            server, id: before.worker, oldPid: before.pid, expectedSignal: nil, workers: 2, taskWorkers: 0
        )

        // In process mode the master owns the client sockets, so a worker crash must not
        // take the server down: new connections are served.
        let fresh = try connect(server)
        XCTAssertEqual(try fresh.request("ping"), "pong")

        // Mode 2 spreads connections over the workers: some new connection reaches slot W,
        // and it is served by the new process.
        var servedByNewW = false
        var seen: [String] = []
        for _ in 0..<12 {
            let probe = try connect(server)
            let me = try whoami(probe)
            seen.append(me.description)
            if me.worker == before.worker {
                XCTAssertEqual(me.pid, newPid, "slot \(before.worker) must be served by the respawned process")
                servedByNewW = true
                break
            }
        }
        XCTAssertTrue(servedByNewW, "no new connection was dispatched to worker \(before.worker): \(seen)")
    }

    /// Test 4a: kill -9 of a worker → same slot, new pid, onWorkerError signal=9.
    func testKilledWorkerIsRespawned() throws {
        let server = try startServer(["--worker-num", "2", "--task-worker-num", "1"])
        let oldPid = try XCTUnwrap(server.workerPids()[1])
        try server.signalProcess(oldPid, SIGKILL)
        let newPid = try assertRespawned(server, id: 1, oldPid: oldPid, expectedSignal: SIGKILL, workers: 2, taskWorkers: 1)
        XCTAssertEqual(ProcFS.title(newPid), "swoop-demo: worker 1")
        XCTAssertEqual(try connect(server).request("ping"), "pong")
    }

    /// Test 4b: kill -9 of a task worker → same slot, new pid, onWorkerError signal=9.
    func testKilledTaskWorkerIsRespawned() throws {
        let server = try startServer(["--worker-num", "2", "--task-worker-num", "1"])
        let oldPid = try XCTUnwrap(server.workerPids()[2])
        XCTAssertEqual(ProcFS.title(oldPid), "swoop-demo: task worker 2")
        try server.signalProcess(oldPid, SIGKILL)
        let newPid = try assertRespawned(server, id: 2, oldPid: oldPid, expectedSignal: SIGKILL, workers: 2, taskWorkers: 1)
        XCTAssertEqual(ProcFS.title(newPid), "swoop-demo: task worker 2")
        XCTAssertEqual(try connect(server).request("ping"), "pong")
    }
}
