import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Tests 15-16: the tree never outlives its master or manager.
final class ProcessDeathTests: SwoopTestCase {
    /// Test 15: kill -9 of the manager makes the master shut everything down: the master
    /// exits and no process of the tree is left within ~10 s.
    func testManagerDeathShutsDownTheTree() throws {
        let server = try startServer(["--worker-num", "2", "--task-worker-num", "1"])
        let tree = server.processTree()
        XCTAssertEqual(tree.count, 5, "tree:\n\(describe(tree))")

        try server.signalProcess(server.managerPid, SIGKILL)
        let status = server.waitForExit(timeout: 10)
        XCTAssertNotNil(status, "the master did not exit within 10 s after its manager was killed")
        try eventually("no process of the tree left", timeout: 3) { server.survivors().isEmpty }
        for p in tree {
            XCTAssertFalse(ProcFS.isAlive(p.pid, startTime: p.info.startTime), "\(p) survived")
        }
    }

    /// Test 16: kill -9 of the master leaves no process of the tree within 2 s (checked
    /// before teardown, whose group kill would otherwise hide a leak).
    func testMasterDeathLeavesNoProcess() throws {
        let server = try startServer(["--worker-num", "2", "--task-worker-num", "1"])
        let tree = server.processTree()
        XCTAssertEqual(tree.count, 5, "tree:\n\(describe(tree))")

        try server.signal(SIGKILL)
        XCTAssertEqual(server.waitForExit(timeout: 5), .signaled(SIGKILL))
        let gone = waitUntil(timeout: 2) { server.survivors().isEmpty }
        XCTAssertTrue(gone, "processes left 2 s after the master died:\n\(server.survivors().map { "  \($0)" }.joined(separator: "\n"))")
    }
}
