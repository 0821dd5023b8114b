import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// `user` / `group`: started as root, the master and the manager stay root (the master
/// bound the ports), the workers and task workers run as the unprivileged user and cannot
/// signal the master. Runs only as root.
final class PrivilegeTests: SwoopTestCase {
    func testWorkersRunAsTheUnprivilegedUserAndCannotSignalTheMaster() throws {
        try XCTSkipIf(geteuid() != 0, "needs root")
        let nobody = try XCTUnwrap(getpwnam("nobody")?.pointee, "no user nobody")
        // The log's directory must be reachable by the workers' user.
        let directory = NSTemporaryDirectory() + "swoop-privilege-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o755])
        addTeardownBlock { try? FileManager.default.removeItem(atPath: directory) }
        let log = directory + "/server.log"
        let server = try startServer(["--framing", "length", "--user", "nobody", "--task-worker-num", "1", "--log-file", log],
                                     program: "swoop-fixture")
        let client = try connect(server)
        XCTAssertEqual(try client.askFramed("hello", timeout: 5), "hello", "the workers serve")
        XCTAssertEqual(try client.askFramed("signal-master", timeout: 5), "errno=\(EPERM)",
                       "a worker cannot signal the master")

        XCTAssertEqual(try uids(server.masterPid), [0], "the master stays root")
        XCTAssertEqual(try uids(server.managerPid), [0], "the manager stays root")
        func workerProcesses() -> [ServerProcess] {
            server.processTree().filter { $0.ppid == server.managerPid && !$0.isZombie }
        }
        let workers = workerProcesses()
        XCTAssertEqual(workers.count, 3, "two workers and a task worker")
        for worker in workers {
            XCTAssertEqual(try uids(worker.pid), [nobody.pw_uid], "\(worker) runs as nobody (real, effective, saved)")
            XCTAssertEqual(try gids(worker.pid), [nobody.pw_gid])
            XCTAssertEqual(try supplementaryGroups(worker.pid), [], "no supplementary groups are kept")
        }

        var info = stat()
        XCTAssertEqual(stat(log, &info), 0)
        XCTAssertEqual(info.st_uid, nobody.pw_uid, "the log file belongs to the workers' user, who appends to it")
        XCTAssertEqual(info.st_mode & 0o777, 0o640, "and others cannot read it")
        XCTAssertEqual(try client.askFramed("sleep 1", timeout: 5), "slept 1")
        XCTAssertTrue(server.readLog().contains { $0.contains("sleeping 1 on connection") }, "the workers write their lines")

        // Replacements are dropped too.
        let before = Set(workers.map(\.pid))
        try server.signal(SIGUSR1)
        try eventually("every worker replaced", timeout: 15) {
            let now = workerProcesses()
            return now.count == 3 && before.isDisjoint(with: now.map(\.pid))
        }
        for worker in workerProcesses() {
            XCTAssertEqual(try uids(worker.pid), [nobody.pw_uid])
        }
    }

    func testAnUnknownUserFailsTheStart() throws {
        XCTAssertThrowsError(try startServer(["--user", "no-such-user-swoop"]), "start fails") { error in
            XCTAssertTrue("\(error)".contains("no user named no-such-user-swoop"), "and says why: \(error)")
        }
    }

    /// The distinct real, effective, saved and file-system user ids of a process.
    private func uids(_ pid: pid_t) throws -> Set<uid_t> { try ids(pid, "Uid:") }
    private func gids(_ pid: pid_t) throws -> Set<gid_t> { try ids(pid, "Gid:") }

    private func ids(_ pid: pid_t, _ key: String) throws -> Set<UInt32> {
        Set(try statusLine(pid, key).split(separator: "\t").compactMap { UInt32($0) })
    }

    private func supplementaryGroups(_ pid: pid_t) throws -> [UInt32] {
        try statusLine(pid, "Groups:").split(separator: " ").compactMap { UInt32($0) }
    }

    private func statusLine(_ pid: pid_t, _ key: String) throws -> String {
        try XCTUnwrap(ProcFS.statusField(pid, key), "no \(key) for \(pid)")
    }
}

extension PrivilegeTests {
    func testUnixSocketListenerModeAndGroup() throws {
        let path = NSTemporaryDirectory() + "swoop-mode-\(getpid()).sock"
        defer { unlink(path) }
        _ = try startServer(["--framing", "length", "--unix-path", path], program: "swoop-fixture")
        var info = stat()
        XCTAssertEqual(stat(path, &info), 0)
        XCTAssertEqual(info.st_mode & 0o777, 0o660, "owner and group may connect, others not")

        try XCTSkipIf(geteuid() != 0, "changing the group needs root")
        let other = NSTemporaryDirectory() + "swoop-mode-\(getpid())-2.sock"
        defer { unlink(other) }
        let nogroup = try XCTUnwrap(getgrnam("nogroup")?.pointee, "no group nogroup")
        _ = try startServer(["--framing", "length", "--unix-path", other, "--unix-mode", "600", "--unix-group", "nogroup"],
                            program: "swoop-fixture")
        XCTAssertEqual(stat(other, &info), 0)
        XCTAssertEqual(info.st_mode & 0o777, 0o600)
        XCTAssertEqual(info.st_gid, nogroup.gr_gid)
    }
}
