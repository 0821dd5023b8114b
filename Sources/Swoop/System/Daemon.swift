#if canImport(Glibc)
import Glibc
#endif
import CSwoop
import Foundation

/// Running in the background (`settings.daemonize`), without a bare fork.
///
/// The classic daemon forks and goes on in the child; a Swift process has threads (the
/// runtime's, Dispatch's), and a forked copy of a multi-threaded process may hold locks no
/// thread will release. So the launching process spawns its own executable again, with the
/// same arguments, in a new session (no controlling terminal), standard input from
/// /dev/null and standard output and error appended to the log file (or /dev/null), and
/// descriptor 3 the write end of a pipe named in `SWOOP_DAEMON_READY_FD`. That process
/// becomes the master and, once ready — pid file written, `onStart` run — writes
/// `ready <pid>` on the pipe; when its start fails it writes `failed <error as JSON>`. The
/// launcher waits for that word and exits 0, or throws the daemon's own error, so
/// `app -d && next-step` works as a shell user expects.
///
/// Unlike Swoole, the daemon keeps the working directory it was started in: every Swoop
/// process runs the program's code from the top, and relative paths in it (a config file,
/// `--log-file logs/app.log`) must mean the same thing in the daemon as in the shell.
enum Daemon {
    static let readyKey = "SWOOP_DAEMON_READY_FD"

    /// The launcher's side: starts the daemon and waits until it is ready. Returns its pid;
    /// throws the error its start failed with, or ``ServerError/daemonFailed(reason:)``.
    static func launch(settings: ServerSettings, executable: String, arguments: [String]) throws -> pid_t {
        let output: CInt
        if let logFile = settings.logFile {
            let file = settings.logRotation.path(base: logFile, at: time(nil))
            do {
                output = try Syscall.open(file, O_WRONLY | O_CREAT | O_APPEND, mode: 0o640)
            } catch let error as SystemError {
                throw ServerError.logFileUnwritable(path: file, reason: String(cString: strerror(error.errno)))
            }
        } else {
            output = try Syscall.open("/dev/null", O_WRONLY)
        }
        defer { Syscall.close(output) }
        let input = try Syscall.open("/dev/null", O_RDONLY)
        defer { Syscall.close(input) }
        var fds: [CInt] = [0, 0]
        _ = try Syscall.retrying("pipe2") { cswoop_pipe(&fds) }
        let (readEnd, writeEnd) = (fds[0], fds[1])
        defer { Syscall.close(readEnd) }

        var environment = ProcessContext.currentEnvironment()
        environment[readyKey] = "3"
        let pid: pid_t
        do {
            pid = try Spawner.spawn(Spawner.Command(
                path: executable, arguments: arguments, environment: environment,
                descriptors: [(input, 0), (output, 1), (output, 2), (writeEnd, 3)],
                // The daemon must outlive its launcher.
                parentDeathSignal: 0, flags: CSWOOP_SPAWN_SETSID | CSWOOP_SPAWN_CLOSE_OTHERS))
        } catch {
            Syscall.close(writeEnd)
            throw error
        }
        // Only the daemon holds the write end now: end of file means it is gone.
        Syscall.close(writeEnd)

        let limit = settings.workerStartTimeout + 5
        let deadline = ContinuousClock.now + .milliseconds(Int64(limit * 1000))
        var received: [UInt8] = []
        while true {
            if let newline = received.firstIndex(of: UInt8(ascii: "\n")) {
                return try outcome(of: String(decoding: received[..<newline], as: UTF8.self), daemon: pid)
            }
            let left = deadline - ContinuousClock.now
            if left <= .zero {
                Syscall.kill(pid, SIGTERM)
                throw ServerError.daemonFailed(reason: "it was not ready within \(limit) s, so it was stopped (pid \(pid))\(logHint(settings))")
            }
            let ms = Int32(clamping: left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000 + 1)
            guard try !Syscall.poll([readEnd], timeoutMs: ms).isEmpty else { continue }
            var chunk = [UInt8](repeating: 0, count: 4096)
            guard let n = chunk.withUnsafeMutableBytes({ try? Syscall.read(readEnd, into: $0) }) else { continue }
            guard n > 0 else {
                throw ServerError.daemonFailed(reason: "it \(exitDescription(waitFor: pid)) before it was ready\(logHint(settings))")
            }
            received.append(contentsOf: chunk[0..<n])
        }
    }

    private static func outcome(of line: String, daemon pid: pid_t) throws -> pid_t {
        if line.hasPrefix("ready "), let ready = pid_t(line.dropFirst("ready ".count)) {
            return ready
        }
        if line.hasPrefix("failed ") {
            let json = Data(line.dropFirst("failed ".count).utf8)
            // Wait for it, so that nothing of it is left once the launcher has reported.
            _ = exitDescription(waitFor: pid)
            throw (try? JSONDecoder().decode(ServerError.self, from: json))
                ?? ServerError.daemonFailed(reason: String(decoding: json, as: UTF8.self))
        }
        throw ServerError.daemonFailed(reason: "unexpected word from the daemon: \(line)")
    }

    private static func logHint(_ settings: ServerSettings) -> String {
        settings.logFile.map { "; see \(settings.logRotation.path(base: $0, at: time(nil)))" } ?? ""
    }

    /// Reaps the daemon (the launcher's child) once it has exited, within a few seconds.
    private static func exitDescription(waitFor pid: pid_t) -> String {
        var status: CInt = 0
        for _ in 0..<500 {
            let reaped = waitpid(pid, &status, WNOHANG)
            if reaped == pid {
                if cswoop_wifsignaled(status) != 0 { return "was killed by signal \(cswoop_wtermsig(status))" }
                return "exited with code \(cswoop_wexitstatus(status))"
            }
            if reaped < 0 && errno != EINTR { return "exited" }
            // It closed the pipe on its way out; only its exit remains to be seen.
            usleep(10_000)
        }
        return "closed its pipe"
    }

    /// The daemon's side: the pipe to its launcher, in a master started by ``launch``.
    final class Handshake: @unchecked Sendable {
        private var fd: CInt

        /// The handshake of this process, if it is a daemon's master that has not yet
        /// reported. Reading it removes the variable, so the manager and workers never see it.
        static let current: Handshake? = {
            guard let text = getenv(Daemon.readyKey).map({ String(cString: $0) }), let fd = CInt(text) else { return nil }
            unsetenv(Daemon.readyKey)
            // Inherited without close-on-exec; no process is being spawned yet, so setting it
            // now cannot race with a spawn.
            _ = try? Syscall.retrying("fcntl", "fd \(fd)") { fcntl(fd, F_SETFD, FD_CLOEXEC) }
            return Handshake(fd: fd)
        }()

        private init(fd: CInt) { self.fd = fd }

        var isPending: Bool { fd >= 0 }

        func ready(pid: pid_t) { say("ready \(pid)\n") }

        func failed(_ error: Error) {
            let serverError = error as? ServerError ?? .daemonFailed(reason: "\(error)")
            let json = (try? JSONEncoder().encode(serverError)).map { String(decoding: $0, as: UTF8.self) } ?? "\"\(error)\""
            say("failed \(json)\n")
        }

        private func say(_ line: String) {
            guard fd >= 0 else { return }
            var line = line
            line.withUTF8 { _ = try? Syscall.writeAll(fd, UnsafeRawBufferPointer($0)) }
            Syscall.close(fd)
            fd = -1
        }
    }
}
