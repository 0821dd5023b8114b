import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Nothing leaked: the master's descriptors return to their baseline after many
/// connections, crashes and reloads, and no zombie is left in the tree.
class LeakTests: SwoopTestCase {
    /// What each descriptor of `pid` is ("3 socket:[123]"), for a failure to show.
    private func descriptors(_ pid: pid_t) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? []
        return names.compactMap(Int.init).sorted().map { fd in
            "\(fd) " + ((try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(fd)")) ?? "?")
        }
    }

    private func descriptorCount(_ pid: pid_t) -> Int { descriptors(pid).count }

    func testDescriptorsAndProcessesReturnToTheirBaseline() throws {
        let server = try startServer(["--worker-num", "2", "--task-worker-num", "1"])
        let probe = try connect(server)
        XCTAssertEqual(try probe.request("ping"), "pong")
        let masterBaseline = descriptorCount(server.masterPid)
        let managerBaseline = descriptorCount(server.managerPid)
        XCTAssertGreaterThan(masterBaseline, 0)

        for round in 0..<3 {
            // Connections of every kind of ending: normal close, reset, closed by the server.
            for i in 0..<300 {
                let client = try connect(server)
                switch i % 3 {
                case 0: XCTAssertEqual(try client.request("echo \(i)"), "\(i)"); client.close()
                case 1: try client.send("echo half"); client.resetAndClose()
                default: try client.send("close"); _ = client.isClosedByPeer(timeout: 5)
                }
            }
            // A crash and a reload, which replace worker links.
            let victim = try connect(server)
            try victim.send("crash")
            _ = victim.isClosedByPeer(timeout: 5)
            try server.signal(SIGUSR1)
            try eventually("round \(round): the reload completed") {
                server.readLog().filter { $0.contains("reload complete") }.count == round + 1
            }
        }
        try eventually("connections closed") { try self.stats(probe).int("connection_num") == 1 }
        try eventually("the master's descriptors are back to their baseline (\(masterBaseline)): \(self.descriptorCount(server.masterPid))") {
            self.descriptorCount(server.masterPid) <= masterBaseline
        }
        XCTAssertLessThanOrEqual(descriptorCount(server.managerPid), managerBaseline)
        XCTAssertTrue(server.processTree().allSatisfy { !$0.isZombie }, "no zombie: \(server.processTree())")
        XCTAssertEqual(try probe.request("ping"), "pong")
    }

    /// Sleeping handlers open no descriptor per sleep. (The first sleep in a process opens
    /// libdispatch's own: an epoll, an eventfd and a timerfd per clock, kept for the life
    /// of the process; the chaos soak holds those to a ceiling per process.)
    func testSleepingHandlersOpenNoDescriptorsPerSleep() throws {
        let server = try startServer(["--worker-num", "1", "--task-worker-num", "1"])
        let client = try connect(server)
        func sleepInBoth() throws {
            XCTAssertEqual(try client.request("sleep 2"), "slept 2")
            XCTAssertTrue(try client.request("taskwait sleep 2").hasPrefix("taskwait-done by=1"))
        }
        try sleepInBoth()
        let pids = server.workerPids()
        guard let worker = pids[0], let taskWorker = pids[1] else {
            return XCTFail("worker 0 and task worker 1 expected: \(pids)")
        }
        let before = (descriptors(worker), descriptors(taskWorker))
        for _ in 0..<20 { try sleepInBoth() }
        XCTAssertEqual(descriptors(worker), before.0, "the worker's descriptors after 20 more sleeps")
        XCTAssertEqual(descriptors(taskWorker), before.1, "the task worker's descriptors after 20 more sleeps")
    }
}
