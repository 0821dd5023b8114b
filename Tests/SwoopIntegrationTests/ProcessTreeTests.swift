import Foundation
import XCTest

/// Contract: 2 + n + m processes, master → manager → workers/task workers, exact titles,
/// and the ready line / start-up lifecycle log.
class ProcessTreeTests: SwoopTestCase {
    /// Test 1: --worker-num 3 --task-worker-num 2 gives exactly master → 1 manager → 5
    /// children with the contract's titles; worker ids 0,1,2 and task worker ids 3,4.
    func testProcessTreeAndTitles() throws {
        let server = try startServer(["--worker-num", "3", "--task-worker-num", "2"])
        let expectedTitles: Set<String> = [
            "swoop-demo: worker 0", "swoop-demo: worker 1", "swoop-demo: worker 2",
            "swoop-demo: task worker 3", "swoop-demo: task worker 4",
        ]

        // The ready line is printed once all workers are up, but a title may be set a
        // moment after fork; give the tree a short while to settle, then assert exactly.
        var tree: [ServerProcess] = []
        waitUntil(timeout: 3) {
            tree = server.processTree()
            let workerTitles = Set(tree.filter { $0.ppid == server.managerPid }.map(\.title))
            return tree.count == 7 && workerTitles == expectedTitles
        }

        XCTAssertEqual(tree.count, 7, "2 + n + m processes expected; tree:\n\(describe(tree))")
        let master = try XCTUnwrap(tree.first { $0.pid == server.masterPid }, "master not found")
        XCTAssertEqual(master.title, "swoop-demo: master")
        XCTAssertEqual(master.role, .master)

        let masterChildren = tree.filter { $0.ppid == server.masterPid }
        XCTAssertEqual(masterChildren.count, 1, "the master must have exactly one child; tree:\n\(describe(tree))")
        XCTAssertEqual(masterChildren.first?.pid, server.managerPid, "the master's child is the announced manager")
        XCTAssertEqual(masterChildren.first?.title, "swoop-demo: manager")

        let managerChildren = tree.filter { $0.ppid == server.managerPid }
        XCTAssertEqual(managerChildren.count, 5, "tree:\n\(describe(tree))")
        XCTAssertEqual(Set(managerChildren.map(\.title)), expectedTitles)
        XCTAssertEqual(Set(managerChildren.map(\.pid)).count, 5, "distinct pids")

        let workerIds = managerChildren.compactMap { p -> Int? in
            if case .worker(let id) = p.role { return id } else { return nil }
        }
        let taskIds = managerChildren.compactMap { p -> Int? in
            if case .taskWorker(let id) = p.role { return id } else { return nil }
        }
        XCTAssertEqual(workerIds.sorted(), [0, 1, 2])
        XCTAssertEqual(taskIds.sorted(), [3, 4])
        XCTAssertFalse(tree.contains { $0.isZombie }, "zombies; tree:\n\(describe(tree))")
        XCTAssertEqual(server.workerPids().count, 5)
    }

    /// The ready line's fields: master is the launched pid, manager is its child, a real
    /// TCP port, and `udp-port=0` / `http-port=0` when those listeners were not asked for.
    func testReadyLine() throws {
        let server = try startServer(["--worker-num", "1"])
        XCTAssertTrue(server.readyLine.hasPrefix("swoop-demo ready master=\(server.masterPid) manager=\(server.managerPid) port=\(server.port) "),
                      server.readyLine)
        XCTAssertNotEqual(server.port, 0)
        XCTAssertEqual(server.udpPort, 0, "no --udp-port given")
        XCTAssertEqual(server.httpPort, 0)
        XCTAssertEqual(ProcFS.info(server.managerPid)?.ppid, server.masterPid, "the manager is a child of the master")
        // Exactly one ready line.
        XCTAssertEqual(server.stdoutText().split(separator: "\n").filter { $0.hasPrefix("swoop-demo ready") }.count, 1)
    }

    /// The log records onStart (master pid), onManagerStart (manager pid) and one
    /// onWorkerStart per worker and task worker with the pid seen in the tree.
    func testStartupLifecycleLog() throws {
        let server = try startServer(["--worker-num", "2", "--task-worker-num", "1"])
        _ = try waitForLogEvent(server, "onStart", ["master": Int(server.masterPid)])
        _ = try waitForLogEvent(server, "onManagerStart", ["manager": Int(server.managerPid)])
        let workers = server.workerPids()
        XCTAssertEqual(workers.keys.sorted(), [0, 1, 2])
        for (id, pid) in workers {
            _ = try waitForLogEvent(server, "onWorkerStart", ["id": id, "pid": Int(pid)])
        }
    }
}
