import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Operations: the daemon and its launcher, the pid file, the log (reopen, swift-log), the
/// control commands (status, reload, stop) and `version`.
final class OperationsTests: SwoopTestCase {
    // MARK: Daemon

    /// `-d`: the launcher returns 0 once the daemon is ready with its pid file written; the
    /// daemon runs in its own session without a controlling terminal, reads /dev/null and
    /// writes its standard output (the ready line) to the log file.
    func testDaemonDetachesAndLauncherReturnsOnceReady() throws {
        let sandbox = try makeSandbox()
        let launch = try sandbox.launch(["--worker-num", "2"])
        XCTAssertEqual(launch.status, 0, "launcher: \(launch)")
        XCTAssertFalse(launch.stdout.contains("ready"), "the ready line goes to the log, not the terminal: \(launch)")

        // The launcher returned, so the daemon is ready: no waiting from here on.
        let master = try XCTUnwrap(sandbox.masterPid(), "the pid file is written before the launcher returns")
        let ready = try XCTUnwrap(sandbox.readyLine(), "the ready line is in the log file:\n\(sandbox.log())")
        XCTAssertTrue(ready.contains("master=\(master)"), ready)

        let stat = try XCTUnwrap(StatLine(pid: master))
        XCTAssertEqual(stat.session, master, "the daemon leads its own session")
        XCTAssertNotEqual(stat.session, getsid(0), "not the test's session")
        XCTAssertEqual(stat.ttyNr, 0, "no controlling terminal")
        XCTAssertEqual(try link("/proc/\(master)/fd/0"), "/dev/null", "standard input is /dev/null")
        XCTAssertEqual(try link("/proc/\(master)/fd/1"), sandbox.logFile, "standard output goes to the log file")
        XCTAssertEqual(try link("/proc/\(master)/fd/2"), sandbox.logFile, "standard error goes to the log file")
        XCTAssertEqual(try link("/proc/\(master)/cwd"), sandbox.directory, "the daemon keeps its working directory")
        let tree = sandbox.processes()
        XCTAssertEqual(tree.count, 4, "master, manager, 2 workers: \(tree)")
        for pid in tree {
            XCTAssertEqual(StatLine(pid: pid)?.session, master, "every process of the tree is in the daemon's session")
        }

        let client = try LineClient(port: try XCTUnwrap(sandbox.port()))
        XCTAssertEqual(try client.request("ping"), "pong")

        let stop = try sandbox.run(["stop", "--pid-file", sandbox.pidFile])
        XCTAssertEqual(stop.status, 0, "stop: \(stop)")
        XCTAssertEqual(sandbox.processes(), [], "stop returns once every process has exited")
        XCTAssertFalse(FileManager.default.fileExists(atPath: sandbox.pidFile), "the pid file is removed on stop")
    }

    /// A port in use: the launcher exits non-zero with the reason, and leaves nothing behind.
    func testLauncherFailsWithTheReasonWhenThePortIsInUse() throws {
        let sandbox = try makeSandbox()
        let (holder, port) = try listeningSocket()
        defer { close(holder) }
        let launch = try sandbox.launch(["--port", String(port)])
        XCTAssertNotEqual(launch.status, 0, "launcher: \(launch)")
        XCTAssertTrue(launch.stderr.contains("cannot listen on 127.0.0.1:\(port)"), "the reason: \(launch)")
        XCTAssertTrue(launch.stderr.contains("Address already in use"), "the reason: \(launch)")
        XCTAssertEqual(sandbox.processes(), [], "the failed daemon is gone when the launcher returns")
        XCTAssertFalse(FileManager.default.fileExists(atPath: sandbox.pidFile))
    }

    /// A log file that cannot be opened: non-zero with the reason, before anything started.
    func testLauncherFailsWithTheReasonWhenTheLogIsUnwritable() throws {
        let sandbox = try makeSandbox()
        let log = sandbox.directory + "/missing-directory/server.log"
        let launch = try sandbox.launch(["--log-file", log])
        XCTAssertNotEqual(launch.status, 0, "launcher: \(launch)")
        XCTAssertTrue(launch.stderr.contains("cannot open the log file \(log)"), "the reason: \(launch)")
        XCTAssertEqual(sandbox.processes(), [])
    }

    // MARK: Pid file

    /// Written (atomically, the master's pid and a newline) once ready; removed on stop.
    func testPidFileLifeCycle() throws {
        let pidFile = try temporaryPath("server.pid")
        let server = try startServer(["--worker-num", "1", "--pid-file", pidFile])
        // onStart printed the ready line, and runs after the pid file is written.
        XCTAssertEqual(String(decoding: ProcFS.readFile(pidFile) ?? [], as: UTF8.self), "\(server.masterPid)\n")
        XCTAssertEqual(try server.stop(), .exited(0))
        XCTAssertFalse(FileManager.default.fileExists(atPath: pidFile), "removed on stop")
    }

    /// While a server holds the pid file, a second start with it fails at once with a clear
    /// error, in the foreground and daemonized, and the first server is untouched.
    func testSecondStartIsRefusedWhileTheFirstRuns() throws {
        let sandbox = try makeSandbox()
        let first = try startServer(["--worker-num", "1", "--pid-file", sandbox.pidFile])
        for extra in [[], ["-d"]] {
            let second = try sandbox.run(["--host", "127.0.0.1", "--port", "0", "--worker-num", "1",
                                          "--pid-file", sandbox.pidFile, "--log-file", sandbox.logFile] + extra)
            XCTAssertNotEqual(second.status, 0, "second start \(extra): \(second)")
            XCTAssertTrue(second.stderr.contains("already running (master pid \(first.masterPid)"), "\(extra): \(second)")
        }
        XCTAssertEqual(sandbox.processes(), [], "the refused starts left no process")
        XCTAssertEqual(sandbox.masterPid(), first.masterPid, "the pid file still names the first server")
        XCTAssertEqual(try connect(first).request("ping"), "pong")
    }

    /// A pid file left by a dead process, or naming a live process that is no Swoop master
    /// (a recycled pid), is replaced.
    func testStalePidFileIsReplaced() throws {
        let dead = try exitedPid()
        for stale in [dead, getpid()] {
            let pidFile = try temporaryPath("stale.pid")
            try "\(stale)\n".write(toFile: pidFile, atomically: true, encoding: .utf8)
            let server = try startServer(["--worker-num", "1", "--pid-file", pidFile])
            XCTAssertEqual(String(decoding: ProcFS.readFile(pidFile) ?? [], as: UTF8.self), "\(server.masterPid)\n")
            XCTAssertTrue(server.readLog().contains { $0.contains("is stale") && $0.contains("\(stale)") },
                          server.readLog().joined(separator: "\n"))
            XCTAssertEqual(try server.stop(), .exited(0))
        }
    }

    // MARK: Logs

    /// logrotate's way: the file is moved away, SIGWINCH to the master, and every process
    /// (master, manager, each worker and task worker) writes to a new file at the old path.
    func testLogReopensAfterTheFileIsMovedAway() throws {
        let server = try startServer(["--worker-num", "2", "--task-worker-num", "1"])
        let pids = server.processTree().map(\.pid)
        XCTAssertEqual(pids.count, 5)
        let rotated = server.logPath + ".1"
        XCTAssertEqual(rename(server.logPath, rotated), 0)
        try server.signal(SIGWINCH)
        try eventually("every process reopened the log") {
            let lines = server.readLog().filter { $0.contains("log file reopened") }
            return Set(pids).isSubset(of: Set(lines.compactMap(Self.pid(ofLogLine:))))
        }
        let client = try connect(server)
        XCTAssertEqual(try client.request("log after-rotation"), "logged")
        let worker = try whoami(client).pid
        XCTAssertTrue(server.readLog().contains { $0.contains("[worker") && $0.contains("pid=\(worker)]") && $0.hasSuffix("swoop-demo: after-rotation") },
                      "a worker's line reaches the new file:\n\(server.readLog().joined(separator: "\n"))")
        let old = String(decoding: ProcFS.readFile(rotated) ?? [], as: UTF8.self)
        XCTAssertTrue(old.contains("onStart"), "the old lines stay in the moved file")
        XCTAssertFalse(old.contains("after-rotation"), "nothing new is written to the moved file")
        XCTAssertEqual(try server.stop(), .exited(0))
        XCTAssertNotNil(logEvent(server, "onShutdown"), "the last lines too reach the new file")
    }

    /// The program's own swift-log `Logger` writes to the server's log with Swoop's stamps.
    func testUserLoggerLandsInTheServerLog() throws {
        let server = try startServer(["--worker-num", "1"])
        let client = try connect(server)
        XCTAssertEqual(try client.request("log hello from the handler"), "logged")
        let me = try whoami(client)
        let line = try XCTUnwrap(server.readLog().first { $0.hasSuffix("swoop-demo: hello from the handler") },
                                 server.readLog().joined(separator: "\n"))
        XCTAssertTrue(line.contains(" INFO [worker \(me.worker) pid=\(me.pid)] "), line)
        XCTAssertNotNil(line.range(of: #"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} "#, options: .regularExpression), line)
    }

    /// `logRotation: .daily` writes to the log file suffixed with today's date.
    func testDailyRotationWritesToTheDatedFile() throws {
        let sandbox = try makeSandbox()
        let launch = try sandbox.launch(["--worker-num", "1", "--log-rotation", "daily"])
        XCTAssertEqual(launch.status, 0, "\(launch)")
        var now = time(nil)
        var parts = tm()
        localtime_r(&now, &parts)
        let dated = sandbox.logFile + String(format: ".%04d%02d%02d", parts.tm_year + 1900, parts.tm_mon + 1, parts.tm_mday)
        let text = String(decoding: ProcFS.readFile(dated) ?? [], as: UTF8.self)
        XCTAssertTrue(text.contains("swoop-demo ready"), "the dated file \(dated) holds the log:\n\(text)")
        XCTAssertFalse(FileManager.default.fileExists(atPath: sandbox.logFile), "no undated file")
        XCTAssertEqual(try sandbox.run(["stop", "--pid-file", sandbox.pidFile]).status, 0)
    }

    // MARK: Control commands

    /// status shows the tree with pids and the counters; reload returns once the workers
    /// are replaced; stop returns once every process has exited; status then says not running.
    func testStatusReloadAndStopCommands() throws {
        let sandbox = try makeSandbox()
        let server = try startServer(["--worker-num", "2", "--task-worker-num", "1", "--pid-file", sandbox.pidFile])
        let client = try connect(server)
        for _ in 0..<3 { XCTAssertEqual(try client.request("ping"), "pong") }

        let status = try sandbox.run(["status", "--pid-file", sandbox.pidFile])
        XCTAssertEqual(status.status, 0, "\(status)")
        XCTAssertTrue(status.stdout.contains("running: master pid \(server.masterPid), up "), status.stdout)
        for process in server.processTree() {
            let role = process.title.replacingOccurrences(of: "swoop-demo: ", with: "")
            XCTAssertTrue(status.stdout.contains("pid \(process.pid)  \(role)"), "\(process) in:\n\(status.stdout)")
        }
        let json = try sandbox.run(["status", "--pid-file", sandbox.pidFile, "--json"])
        let decoded = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(decoded["masterPid"] as? Int, Int(server.masterPid))
        XCTAssertEqual(decoded["managerPid"] as? Int, Int(server.managerPid))
        let stats = try XCTUnwrap(decoded["stats"] as? [String: Any])
        let workers = try XCTUnwrap(stats["workers"] as? [[String: Any]])
        XCTAssertEqual(Set(workers.compactMap { $0["pid"] as? Int }), Set(server.workerPids().values.map(Int.init)))
        XCTAssertEqual(workers.compactMap { $0["worker_id"] as? Int }, [0, 1, 2])

        let before = server.workerPids()
        let reload = try sandbox.run(["reload", "--pid-file", sandbox.pidFile])
        XCTAssertEqual(reload.status, 0, "\(reload)")
        let after = server.workerPids()
        XCTAssertEqual(after.count, 3)
        XCTAssertTrue(Set(after.values).isDisjoint(with: Set(before.values)), "reload returned after every worker was replaced: \(before) → \(after)")
        XCTAssertTrue(server.readLog().contains { $0.contains("reload complete") })

        let tasksOnly = try sandbox.run(["reload", "--pid-file", sandbox.pidFile, "--task-workers"])
        XCTAssertEqual(tasksOnly.status, 0, "\(tasksOnly)")
        let third = server.workerPids()
        XCTAssertEqual(third[0], after[0])
        XCTAssertEqual(third[1], after[1])
        XCTAssertNotEqual(third[2], after[2], "the task worker was replaced")
        XCTAssertEqual(try client.request("ping"), "pong", "the connection survived both reloads")

        let tree = server.processTree()
        let stop = try sandbox.run(["stop", "--pid-file", sandbox.pidFile])
        XCTAssertEqual(stop.status, 0, "\(stop)")
        for process in tree {
            XCTAssertFalse(ProcFS.isAlive(process.pid, startTime: process.info.startTime), "\(process) still runs after stop returned")
        }
        XCTAssertEqual(server.waitForExit(timeout: 5), .exited(0))
        let after_ = try sandbox.run(["status", "--pid-file", sandbox.pidFile])
        XCTAssertEqual(after_.status, 3, "not running: \(after_)")
    }

    /// status of a stale pid file exits 1; stop and reload without a server fail with the reason.
    func testCommandsWithoutARunningServer() throws {
        let sandbox = try makeSandbox()
        let missing = try sandbox.run(["status", "--pid-file", sandbox.pidFile])
        XCTAssertEqual(missing.status, 3, "\(missing)")
        try "\(try exitedPid())\n".write(toFile: sandbox.pidFile, atomically: true, encoding: .utf8)
        let stale = try sandbox.run(["status", "--pid-file", sandbox.pidFile])
        XCTAssertEqual(stale.status, 1, "\(stale)")
        XCTAssertTrue(stale.stderr.contains("stale"), "\(stale)")
        for command in ["stop", "reload"] {
            let result = try sandbox.run([command, "--pid-file", sandbox.pidFile])
            XCTAssertNotEqual(result.status, 0, "\(command): \(result)")
            XCTAssertTrue(result.stderr.contains("not running"), "\(command): \(result)")
        }
    }

    /// A reload whose new workers cannot start (the executable on disk was replaced by one
    /// that exits at once) is rolled back: `reload` exits non-zero and the old workers keep
    /// serving; with the good executable back, `reload` succeeds.
    func testReloadCommandFailsWhenTheReloadIsRolledBack() throws {
        let sandbox = try makeSandbox(copyingBinary: true)
        let launch = try sandbox.launch(["--worker-num", "2"])
        XCTAssertEqual(launch.status, 0, "\(launch)")
        let client = try LineClient(port: try XCTUnwrap(sandbox.port()))
        let before = try whoami(client)

        let good = sandbox.binary + ".good"
        XCTAssertEqual(rename(sandbox.binary, good), 0)
        try "#!/bin/sh\nexit 3\n".write(toFile: sandbox.binary, atomically: true, encoding: .utf8)
        XCTAssertEqual(chmod(sandbox.binary, 0o755), 0)
        let failed = try sandbox.run(["reload", "--pid-file", sandbox.pidFile], binary: good)
        XCTAssertNotEqual(failed.status, 0, "\(failed)")
        XCTAssertTrue(failed.stderr.contains("rolled back"), "\(failed)")
        XCTAssertEqual(try whoami(client).pid, before.pid, "the old worker keeps serving the connection")

        XCTAssertEqual(rename(good, sandbox.binary), 0)
        let reload = try sandbox.run(["reload", "--pid-file", sandbox.pidFile])
        XCTAssertEqual(reload.status, 0, "\(reload)")
        XCTAssertNotEqual(try whoami(client).pid, before.pid, "the connection is served by a new worker")
        XCTAssertEqual(try sandbox.run(["stop", "--pid-file", sandbox.pidFile]).status, 0)
        XCTAssertEqual(sandbox.processes(), [])
    }

    // MARK: Version and stats

    /// `version` answers the version compiled in, the same one `--version` prints.
    func testVersionCommand() throws {
        let server = try startServer(["--worker-num", "1"])
        let reply = try connect(server).request("version")
        XCTAssertNotNil(reply.range(of: #"^swoop-demo \d+\.\d+\.\d+ \(swoop \d+\.\d+\.\d+\)$"#, options: .regularExpression), reply)
        let sandbox = try makeSandbox()
        let printed = try sandbox.run(["--version"])
        XCTAssertEqual(printed.stdout.trimmingCharacters(in: .whitespacesAndNewlines), reply)
    }

    /// stats: idle workers, task workers and each worker's pid and finished requests.
    func testStatsHaveEveryWorkersFigures() throws {
        let server = try startServer(["--worker-num", "2", "--task-worker-num", "1"])
        let client = try connect(server)
        let me = try whoami(client)
        for _ in 0..<4 { XCTAssertEqual(try client.request("ping"), "pong") }
        let stats = try self.stats(client)
        XCTAssertEqual(stats.int("worker_num"), 2)
        XCTAssertEqual(stats.int("task_worker_num"), 1)
        XCTAssertEqual(stats.int("idle_worker_num"), 1, "the other worker is idle; this one handles `stats`")
        XCTAssertEqual(stats.int("task_idle_worker_num"), 1)
        XCTAssertEqual(stats.int("tasking_num"), 0)
        XCTAssertNotNil(stats.int("start_time"))
        let workers = try XCTUnwrap(stats.object["workers"] as? [[String: Any]])
        XCTAssertEqual(workers.compactMap { $0["worker_id"] as? Int }, [0, 1, 2])
        XCTAssertEqual(Set(workers.compactMap { $0["pid"] as? Int }), Set(server.workerPids().values.map(Int.init)))
        let mine = try XCTUnwrap(workers.first { $0["pid"] as? Int == Int(me.pid) })
        XCTAssertEqual(mine["request_count"] as? Int, 5, "whoami and 4 pings finished")
        XCTAssertEqual(mine["in_flight"] as? Int, 1, "the stats request itself")
        XCTAssertEqual(workers.first { $0["worker_id"] as? Int == 2 }?["type"] as? String, "task_worker")
    }

    // MARK: Helpers

    private func makeSandbox(copyingBinary: Bool = false) throws -> DaemonSandbox {
        let sandbox = try DaemonSandbox(copyingBinary: copyingBinary)
        addTeardownBlock {
            if let run = self.testRun, run.totalFailureCount > 0 { print(sandbox.diagnostics()) }
            sandbox.destroy()
        }
        return sandbox
    }

    private func temporaryPath(_ name: String) throws -> String {
        try makeSandbox().directory + "/" + name
    }

    private func link(_ path: String) throws -> String {
        try FileManager.default.destinationOfSymbolicLink(atPath: path)
    }

    /// A TCP socket listening on a free loopback port, and the port.
    private func listeningSocket() throws -> (CInt, Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(fd, pointer, length) == 0 && listen(fd, 1) == 0 && getsockname(fd, pointer, &length) == 0
            }
        }
        guard bound else { throw HarnessError("cannot listen: \(errnoDescription(errno))") }
        return (fd, Int(UInt16(bigEndian: address.sin_port)))
    }

    /// The pid of a process that has exited and been reaped.
    private func exitedPid() throws -> pid_t {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/true")
        try process.run()
        process.waitUntilExit()
        return process.processIdentifier
    }

    static func pid(ofLogLine line: String) -> pid_t? {
        guard let range = line.range(of: " pid=") else { return nil }
        return pid_t(line[range.upperBound...].prefix { $0.isNumber })
    }
}

/// The fields of /proc/<pid>/stat that say whether a process is detached.
struct StatLine {
    var session: pid_t
    /// The controlling terminal (0: none).
    var ttyNr: Int

    init?(pid: pid_t) {
        guard let bytes = ProcFS.readFile("/proc/\(pid)/stat"), let close = bytes.lastIndex(of: UInt8(ascii: ")")) else { return nil }
        let fields = bytes[(close + 1)...].split(separator: UInt8(ascii: " ")).map { String(decoding: $0, as: UTF8.self) }
        // fields[0] is field 3; session is field 6, tty_nr field 7.
        guard fields.count > 4, let session = pid_t(fields[3]), let tty = Int(fields[4]) else { return nil }
        self.session = session
        self.ttyNr = tty
    }
}

/// What a command printed and how it ended.
struct CommandResult: CustomStringConvertible {
    var status: Int32
    var stdout: String
    var stderr: String
    var description: String { "exit \(status)\n--- stdout ---\n\(stdout)\n--- stderr ---\n\(stderr)" }
}

/// A private directory for a daemonized server: its pid file, its log and the working
/// directory of every command the test runs.
///
/// A daemon leaves the test's process group, so the harness's group kill cannot reach it.
/// The daemon keeps its working directory, though, and so does every process it starts:
/// `destroy()` kills exactly the processes whose working directory is this one, by pid.
final class DaemonSandbox: @unchecked Sendable {
    let directory: String
    /// The executable the commands run.
    let binary: String
    var pidFile: String { directory + "/server.pid" }
    var logFile: String { directory + "/server.log" }
    private var counter = 0

    init(copyingBinary: Bool) throws {
        var template = Array("\(NSTemporaryDirectory())/swoop-ops-XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw HarnessError("mkdtemp: \(errnoDescription(errno))")
        }
        directory = URL(fileURLWithPath: String(cString: made)).resolvingSymlinksInPath().path
        let original = try DemoBinary.path()
        if copyingBinary {
            binary = directory + "/swoop-demo"
            try FileManager.default.copyItem(atPath: original, toPath: binary)
        } else {
            binary = original
        }
    }

    /// Runs the demo with `arguments` in the sandbox and waits for it to exit.
    func run(_ arguments: [String], binary: String? = nil, timeout: TimeInterval = 30) throws -> CommandResult {
        counter += 1
        let out = directory + "/command-\(counter).out"
        let err = directory + "/command-\(counter).err"
        _ = FileManager.default.createFile(atPath: out, contents: nil)
        _ = FileManager.default.createFile(atPath: err, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary ?? self.binary)
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        process.standardInput = FileHandle(forReadingAtPath: "/dev/null")
        process.standardOutput = FileHandle(forWritingAtPath: out)
        process.standardError = FileHandle(forWritingAtPath: err)
        let exited = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in exited.signal() }
        try process.run()
        if exited.wait(timeout: .now() + timeout) == .timedOut {
            kill(process.processIdentifier, SIGKILL)
            _ = exited.wait(timeout: .now() + 5)
            throw HarnessError("\(arguments) did not finish within \(timeout) s")
        }
        func text(_ path: String) -> String { String(decoding: ProcFS.readFile(path) ?? [], as: UTF8.self) }
        return CommandResult(status: process.terminationStatus, stdout: text(out), stderr: text(err))
    }

    /// `start -d` with the sandbox's pid file and log, on a free port.
    func launch(_ extra: [String]) throws -> CommandResult {
        var arguments = ["start", "-d"] + extra
        if !extra.contains("--host") { arguments += ["--host", "127.0.0.1"] }
        if !extra.contains("--port") { arguments += ["--port", "0"] }
        if !extra.contains("--log-file") { arguments += ["--log-file", logFile] }
        if !extra.contains("--pid-file") { arguments += ["--pid-file", pidFile] }
        return try run(arguments)
    }

    func masterPid() -> pid_t? {
        pid_t(String(decoding: ProcFS.readFile(pidFile) ?? [], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
    }

    func log() -> String { String(decoding: ProcFS.readFile(logFile) ?? [], as: UTF8.self) }

    func readyLine() -> String? {
        log().split(separator: "\n").last { $0.hasPrefix("swoop-demo ready ") }.map(String.init)
    }

    func port() -> UInt16? {
        guard let line = readyLine(), let range = line.range(of: " port=") else { return nil }
        return UInt16(line[range.upperBound...].prefix { $0.isNumber })
    }

    /// The live processes working in this directory (the daemon's tree), by pid.
    func processes() -> [pid_t] {
        ProcFS.allPids().filter { pid in
            pid != getpid()
                && (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/cwd")) == directory
                && ProcFS.isAlive(pid)
        }.sorted()
    }

    /// Kills what still runs here and removes the directory.
    func destroy() {
        for _ in 0..<2 {
            let left = processes()
            if left.isEmpty { break }
            for pid in left { kill(pid, SIGKILL) }
            waitUntil(timeout: 5) { self.processes().isEmpty }
        }
        try? FileManager.default.removeItem(atPath: directory)
    }

    func diagnostics() -> String {
        "=== sandbox \(directory) ===\nprocesses: \(processes())\n--- log ---\n\(log())\n=== end ==="
    }
}
