import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// One process of a running server tree, with its role decoded from its title.
struct ServerProcess: Sendable, Equatable, CustomStringConvertible {
    /// What a process of the tree is, per the contract's titles.
    enum Role: Sendable, Equatable {
        case master
        case manager
        case worker(id: Int)
        case taskWorker(id: Int)
        /// A title the contract does not define (or none: zombies have an empty cmdline).
        case unknown
    }

    let info: ProcInfo
    var pid: pid_t { info.pid }
    var ppid: pid_t { info.ppid }
    var title: String { info.title }
    var isZombie: Bool { info.isZombie }

    /// The role per the title: `swoop-demo: master`, `swoop-demo: manager`,
    /// `swoop-demo: worker <id>`, `swoop-demo: task worker <id>`.
    var role: Role {
        let title = info.title
        if title == "swoop-demo: master" { return .master }
        if title == "swoop-demo: manager" { return .manager }
        if title.hasPrefix("swoop-demo: task worker "),
           let id = Int(title.dropFirst("swoop-demo: task worker ".count)) {
            return .taskWorker(id: id)
        }
        if title.hasPrefix("swoop-demo: worker "), let id = Int(title.dropFirst("swoop-demo: worker ".count)) {
            return .worker(id: id)
        }
        return .unknown
    }

    /// The worker id for workers and task workers, nil otherwise.
    var workerId: Int? {
        switch role {
        case .worker(let id), .taskWorker(let id): return id
        default: return nil
        }
    }

    var description: String { info.description }
}

/// A running `swoop-demo` process tree, started on a free port for one test.
///
/// Usage: `let server = try startServer(["--worker-num", "2"])` in a `SwoopTestCase`
/// (which registers the teardown that kills the tree), or `DemoServer.start(args:)`
/// directly if you arrange for `kill()` yourself.
final class DemoServer: @unchecked Sendable {
    /// The pid that was spawned; the contract says it is the master.
    let masterPid: pid_t
    /// The manager pid announced in the ready line.
    let managerPid: pid_t
    /// The TCP port the server listens on (from the ready line).
    let port: UInt16
    /// The UDP port (0 when no UDP listener was requested).
    let udpPort: UInt16
    /// The HTTP port from the ready line (always 0 for now).
    let httpPort: UInt16
    /// The ready line as printed.
    let readyLine: String
    /// The lifecycle log (`--log-file`), by default a file in `directory`.
    let logPath: String
    /// Where the server's stderr goes.
    let stderrPath: String
    /// A private temporary directory of this server.
    let directory: String
    /// The executable that was launched.
    let binary: String
    /// The full argument list passed (without argv[0]).
    let arguments: [String]

    private let group: ProcessGroupGuard
    private let stdout: OutputCollector
    private let lock = NSLock()
    private var keepFiles = false

    private init(
        group: ProcessGroupGuard, stdout: OutputCollector, readyLine: String, fields: [String: String],
        logPath: String, stderrPath: String, directory: String, binary: String, arguments: [String]
    ) throws {
        self.group = group
        self.stdout = stdout
        self.masterPid = group.leader
        self.readyLine = readyLine
        self.logPath = logPath
        self.stderrPath = stderrPath
        self.directory = directory
        self.binary = binary
        self.arguments = arguments
        func number<T: FixedWidthInteger>(_ key: String, _: T.Type) throws -> T {
            guard let text = fields[key], let value = T(text) else {
                throw HarnessError("ready line lacks a numeric \(key)=: \(readyLine)")
            }
            return value
        }
        let master = try number("master", pid_t.self)
        self.managerPid = try number("manager", pid_t.self)
        self.port = try number("port", UInt16.self)
        self.udpPort = try number("udp-port", UInt16.self)
        self.httpPort = try number("http-port", UInt16.self)
        guard master == group.leader else {
            throw HarnessError("ready line says master=\(master) but the launched pid is \(group.leader): \(readyLine)")
        }
        guard port != 0 else { throw HarnessError("ready line announces port 0: \(readyLine)") }
    }

    deinit {
        kill()
    }

    // MARK: Starting

    /// Launches `swoop-demo` and waits for its ready line.
    ///
    /// `--host 127.0.0.1`, `--port 0` and `--log-file <temp>` are added unless `args`
    /// already has them. The process is spawned in a new process group (so that the
    /// whole tree can be killed at once), with stdin from /dev/null, stdout on a pipe
    /// (drained in the background) and stderr in a temporary file.
    ///
    /// - Throws: if the binary is missing, the process exits before it is ready (the error
    ///   carries its stderr), or `timeout` seconds pass without a ready line. In every
    ///   error case the spawned tree has been killed.
    static func start(args: [String] = [], timeout: TimeInterval = 20, program: String = "swoop-demo",
                      binary explicitBinary: String? = nil) throws -> DemoServer {
        let binary = try explicitBinary ?? DemoBinary.path(program)
        let directory = try makeTemporaryDirectory()
        let stderrPath = directory + "/stderr.txt"
        var arguments = args
        if !args.contains("--host") { arguments += ["--host", "127.0.0.1"] }
        if !args.contains("--port") { arguments += ["--port", "0"] }
        let logPath: String
        if let i = args.firstIndex(of: "--log-file"), i + 1 < args.count {
            logPath = args[i + 1]
        } else {
            logPath = directory + "/server.log"
            arguments += ["--log-file", logPath]
        }

        var fds: [Int32] = [-1, -1]
        // Glibc's pipe2 is not imported into Swift; set close-on-exec by hand so that later
        // servers do not inherit this pipe (only the dup2'ed fd 1 of the child keeps it).
        guard pipe(&fds) == 0 else {
            throw HarnessError("pipe failed: \(errnoDescription(errno))")
        }
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        let pid: pid_t
        do {
            pid = try spawn(binary: binary, arguments: arguments, stdout: fds[1], stderrPath: stderrPath)
        } catch {
            close(fds[0]); close(fds[1])
            throw error
        }
        close(fds[1]) // only the child (and its descendants) may hold the write end
        let group = ProcessGroupGuard(leader: pid)
        let stdout = OutputCollector(fd: fds[0])

        func fail(_ message: String) -> HarnessError {
            group.killAll()
            stdout.stop()
            let stderrText = String(decoding: ProcFS.readFile(stderrPath) ?? [], as: UTF8.self)
            return HarnessError("""
                \(message)
                command: \(binary) \(arguments.joined(separator: " "))
                --- stdout ---
                \(stdout.text)
                --- stderr (\(stderrPath)) ---
                \(stderrText)
                """)
        }

        let deadline = Deadline(timeout)
        var readyLine: String?
        while readyLine == nil {
            readyLine = stdout.completeLines.first { $0.hasPrefix("\(program) ready ") }
            if readyLine != nil { break }
            if let status = group.reapIfExited() {
                throw fail("\(program) \(status) before printing its ready line")
            }
            if deadline.hasPassed {
                throw fail("\(program) printed no ready line within \(timeout) s")
            }
            pause(0.02)
        }
        let line = readyLine!
        var fields: [String: String] = [:]
        for token in line.dropFirst("\(program) ready ".count).split(separator: " ") {
            let parts = token.split(separator: "=", maxSplits: 1)
            if parts.count == 2 { fields[String(parts[0])] = String(parts[1]) }
        }
        do {
            let server = try DemoServer(
                group: group, stdout: stdout, readyLine: line, fields: fields, logPath: logPath,
                stderrPath: stderrPath, directory: directory, binary: binary, arguments: arguments
            )
            _ = server.processTree() // record the initial tree for kill()
            return server
        } catch {
            throw fail("\(error)")
        }
    }

    private static func makeTemporaryDirectory() throws -> String {
        var base = NSTemporaryDirectory()
        while base.hasSuffix("/") && base.count > 1 { base.removeLast() }
        var template = Array("\(base)/swoop-itest-XXXXXX".utf8CString)
        guard let result = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw HarnessError("mkdtemp failed: \(errnoDescription(errno))")
        }
        return String(cString: result)
    }

    private static func spawn(binary: String, arguments: [String], stdout: Int32, stderrPath: String) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, stdout, 1)
        posix_spawn_file_actions_addopen(&actions, 2, stderrPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // New process group: kill(-pgid) then reaches every descendant that stays in it.
        posix_spawnattr_setpgroup(&attributes, 0)
        // Ignored signals and the signal mask survive exec. Reset them so the server sees
        // SIGTERM/SIGINT/SIGUSR1/... exactly as from a shell, whatever the test runner set.
        var mask = sigset_t()
        sigemptyset(&mask)
        posix_spawnattr_setsigmask(&attributes, &mask)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for sig in [SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGPIPE, SIGCHLD, SIGUSR1, SIGUSR2, SIGALRM] {
            sigaddset(&defaults, sig)
        }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(
            &attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)
        )

        let argv: [UnsafeMutablePointer<CChar>?] = ([binary] + arguments).map { strdup($0) } + [nil]
        defer { for arg in argv { free(arg) } }
        var pid = pid_t()
        let rc = posix_spawn(&pid, binary, &actions, &attributes, argv, environ)
        guard rc == 0 else {
            throw HarnessError("posix_spawn(\(binary)) failed: \(errnoDescription(rc))")
        }
        return pid
    }

    // MARK: Processes

    /// The master and all its live descendants (zombies included, so that tests can detect
    /// them), read from /proc. Every process seen is remembered for `kill()`.
    /// Empty once the master has exited and been reaped.
    func processTree() -> [ServerProcess] {
        guard group.exitStatus == nil else { return [] }
        let tree = ProcFS.tree(root: masterPid)
        group.record(tree)
        return tree.map(ServerProcess.init(info:))
    }

    /// The live (non-zombie) workers and task workers of the tree, sorted by id.
    func workerProcesses() -> [ServerProcess] {
        processTree()
            .filter { !$0.isZombie && $0.workerId != nil }
            .sorted { ($0.workerId!, $0.info.startTime) < ($1.workerId!, $1.info.startTime) }
    }

    /// Live workers and task workers keyed by worker id. While a process is being replaced
    /// two may briefly claim one id; the one started last wins.
    func workerPids() -> [Int: pid_t] {
        var result: [Int: pid_t] = [:]
        for p in workerProcesses() { result[p.workerId!] = p.pid } // sorted by start time within an id
        return result
    }

    /// Processes of the tree (or formerly of it) that are still alive: recorded pids that
    /// are still the same process, and anything left in the process group.
    func survivors() -> [ProcInfo] {
        _ = processTree()
        return group.survivors()
    }

    /// Every pid ever seen in this tree (master included).
    var recordedPids: [pid_t] { group.recorded.map(\.pid) }

    // MARK: Signals and lifetime

    /// Sends `sig` to the master. Throws if the master has already exited.
    func signal(_ sig: Int32) throws {
        try group.signalLeader(sig)
    }

    /// Sends `sig` to `pid`, which must currently be a (non-zombie) process of this tree:
    /// the harness never signals a process it cannot prove belongs to the test.
    func signalProcess(_ pid: pid_t, _ sig: Int32) throws {
        guard processTree().contains(where: { $0.pid == pid && !$0.isZombie }) else {
            throw HarnessError("pid \(pid) is not a live process of this server tree")
        }
        guard Glibc.kill(pid, sig) == 0 else {
            throw HarnessError("kill(\(pid), \(sig)) failed: \(errnoDescription(errno))")
        }
    }

    /// The master's exit status if it has exited (reaps it if needed; never blocks).
    var exitStatus: ExitStatus? { group.reapIfExited() }

    /// Waits up to `timeout` seconds for the master to exit; nil on timeout.
    func waitForExit(timeout: TimeInterval) -> ExitStatus? {
        group.waitForExit(timeout: timeout)
    }

    /// Graceful stop: sends `sig` (SIGTERM by default) to the master and waits for it to exit.
    /// - Throws: if the master is still running after `timeout` seconds (the tree is left
    ///   running so the caller can inspect it; teardown kills it).
    @discardableResult
    func stop(signal sig: Int32 = SIGTERM, timeout: TimeInterval = 10) throws -> ExitStatus {
        _ = processTree() // remember the current workers, to check later that they are gone
        try signal(sig)
        guard let status = waitForExit(timeout: timeout) else {
            throw HarnessError("master \(masterPid) still running \(timeout) s after signal \(sig)")
        }
        return status
    }

    /// Kills everything: SIGKILL to the process group and to every recorded descendant still
    /// alive, then reaps the master. Idempotent; runs from teardown (also when a test
    /// failed) and from deinit. Removes the temporary directory unless `keepFiles()` was
    /// called.
    func kill() {
        group.killAll()
        stdout.stop()
        if !lock.withLock({ keepFiles }) {
            try? FileManager.default.removeItem(atPath: directory)
        }
    }

    /// Keeps the temporary directory (log, stderr) after `kill()`, for post-mortem reading.
    func keepFilesAfterKill() {
        lock.withLock { keepFiles = true }
    }

    // MARK: Output

    /// The lines of the lifecycle log (empty if it does not exist yet).
    func readLog() -> [String] {
        let text = String(decoding: ProcFS.readFile(logPath) ?? [], as: UTF8.self)
        return text.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
    }

    /// The lifecycle events of the log, in file order.
    func logEvents() -> [LogEvent] {
        readLog().enumerated().compactMap { LogEvent(line: $0.element, index: $0.offset) }
    }

    /// Everything the server wrote to stderr so far.
    func stderrText() -> String {
        String(decoding: ProcFS.readFile(stderrPath) ?? [], as: UTF8.self)
    }

    /// Everything the server wrote to stdout so far.
    func stdoutText() -> String { stdout.text }

    /// A report for a failed test: command, ready line, exit status, tree, log and stderr tails.
    func diagnostics(maxLines: Int = 60) -> String {
        func tail(_ text: String) -> String {
            let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
            return lines.suffix(maxLines).joined(separator: "\n")
        }
        let tree = processTree().map { "  \($0)" }.joined(separator: "\n")
        return """
            === swoop-demo diagnostics (\(directory)) ===
            command: \(binary) \(arguments.joined(separator: " "))
            ready: \(readyLine)
            master status: \(exitStatus.map { "\($0)" } ?? "running")
            process tree:
            \(tree.isEmpty ? "  (none)" : tree)
            --- log tail (\(logPath)) ---
            \(tail(readLog().joined(separator: "\n")))
            --- stderr tail ---
            \(tail(stderrText()))
            === end ===
            """
    }
}
