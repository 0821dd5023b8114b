#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// The version of Swoop compiled into a program.
public enum SwoopVersion {
    /// Kept here only; releases change this line.
    public static let current = "0.1.0"
}

/// What a running server says of itself on its control socket.
public struct ServerStatus: Sendable, Codable, Equatable {
    /// The master's pid.
    public var masterPid: Int32
    /// The manager's pid.
    public var managerPid: Int32
    /// When the server started, in seconds since 1970.
    public var startTime: Int
    /// Seconds since it started.
    public var uptime: Double
    /// Whether a reload is under way.
    public var reloading: Bool
    /// The version of Swoop the master runs.
    public var swoopVersion: String
    /// The counters, with each worker's pid and requests.
    public var stats: ServerStats
}

/// One reply line of the control protocol.
struct ControlReply: Codable {
    var ok: Bool
    var error: String?
    var status: ServerStatus?
}

/// Why a control request failed; each says what to do.
public enum ControlError: Error, CustomStringConvertible, Equatable {
    /// No server runs with this pid file (`reason` says what was found).
    case notRunning(pidFile: String, reason: String)
    /// The master runs but its control socket did not answer.
    case unreachable(pid: Int32, reason: String)
    /// The server refused or failed the request.
    case failed(String)
    /// No answer in time.
    case timedOut(String)

    public var description: String {
        switch self {
        case let .notRunning(pidFile, reason): return "not running (pid file \(pidFile): \(reason))"
        case let .unreachable(pid, reason): return "the master (pid \(pid)) does not answer on its control socket: \(reason)"
        case let .failed(reason): return reason
        case let .timedOut(what): return "timed out: \(what)"
        }
    }
}

/// A process of a server's tree, as /proc shows it.
public struct ServerProcessEntry: Sendable, Equatable {
    public var pid: Int32
    public var parentPid: Int32
    /// Its title: `app: master`, `app: manager`, `app: worker 0`, `app: task worker 4`.
    public var title: String
}

/// Controls a running server, found through its pid file: what `stop`, `reload` and
/// `status` of `SwoopControl` do, for programs that want to do it themselves.
///
/// ```swift
/// let control = ServerControl(pidFile: "/run/app.pid")
/// let status = try control.status()
/// print("up \(Int(status.uptime)) s, \(status.stats.connection_num) connections")
/// try control.reload()   // returns once the new workers serve; throws if rolled back
/// try control.stop()     // returns once every process of the server has exited
/// ```
public struct ServerControl: Sendable {
    /// The pid file the server was started with.
    public var pidFile: String

    public init(pidFile: String) {
        self.pidFile = pidFile
    }

    /// The master's pid, if a live Swoop master holds the pid file.
    public func masterPid() throws -> Int32 {
        switch PidFile(path: pidFile).holder() {
        case let .master(pid): return pid
        case .nobody: throw ControlError.notRunning(pidFile: pidFile, reason: "no pid file")
        case let .stale(_, reason): throw ControlError.notRunning(pidFile: pidFile, reason: "stale: \(reason)")
        }
    }

    /// The master's status and counters.
    public func status(timeout: Duration = .seconds(10)) throws -> ServerStatus {
        let pid = try masterPid()
        guard let status = try request("status", master: pid, timeout: timeout).status else {
            throw ControlError.failed("the master sent no status")
        }
        return status
    }

    /// Replaces the workers (or only the task workers) and returns once the reload has
    /// completed; throws ``ControlError/failed(_:)`` when it was rolled back.
    public func reload(taskWorkersOnly: Bool = false, timeout: Duration = .seconds(120)) throws {
        let pid = try masterPid()
        _ = try request(taskWorkersOnly ? "reload task-workers" : "reload", master: pid, timeout: timeout)
    }

    /// Has every process reopen its log file, as SIGWINCH does.
    public func reopenLogs(timeout: Duration = .seconds(10)) throws {
        _ = try request("reopen-logs", master: try masterPid(), timeout: timeout)
    }

    /// Stops the server gracefully and returns once the master, the manager and every
    /// worker have exited.
    public func stop(timeout: Duration = .seconds(60)) throws {
        let pid = try masterPid()
        let deadline = ContinuousClock.now + timeout
        // Every process of the tree is watched from before the request, so that none can
        // exit unseen and have its pid reused by an unrelated process meanwhile.
        var watched = processes(ofMaster: pid).map(\.pid)
        let reply = try request("stop", master: pid, timeout: timeout)
        if let status = reply.status {
            watched += [status.masterPid, status.managerPid] + status.stats.workers.map(\.pid)
        }
        try ProcessWatch.waitForExit(of: Array(Set(watched)), until: deadline)
    }

    /// The master and its descendants, parents first.
    public func processes(ofMaster pid: Int32) -> [ServerProcessEntry] {
        ProcFS.tree(root: pid).filter { !$0.isZombie }.map {
            ServerProcessEntry(pid: $0.pid, parentPid: $0.parent, title: $0.title)
        }
    }

    /// Sends one request line and reads the reply line.
    private func request(_ line: String, master pid: Int32, timeout: Duration) throws -> ControlReply {
        let name = ControlServer.socketName(masterPid: pid)
        let fd: CInt
        do {
            fd = try Syscall.connectAbstract(name)
        } catch {
            throw ControlError.unreachable(pid: pid, reason: "\(error)")
        }
        defer { Syscall.close(fd) }
        let deadline = ContinuousClock.now + timeout
        do {
            try Array((line + "\n").utf8).withUnsafeBytes { try Syscall.writeAll(fd, $0) }
            var received: [UInt8] = []
            while received.last != UInt8(ascii: "\n") {
                let left = deadline - ContinuousClock.now
                guard left > .zero else { throw ControlError.timedOut("no answer to \"\(line)\" within \(timeout)") }
                let ms = Int32(clamping: left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000 + 1)
                guard try !Syscall.poll([fd], timeoutMs: ms).isEmpty else { continue }
                var chunk = [UInt8](repeating: 0, count: 65536)
                guard let n = try chunk.withUnsafeMutableBytes({ try Syscall.read(fd, into: $0) }) else { continue }
                guard n > 0 else {
                    throw ControlError.failed("the master closed the control connection before it answered \"\(line)\" (it may be stopping)")
                }
                received.append(contentsOf: chunk[0..<n])
            }
            let reply = try JSONDecoder().decode(ControlReply.self, from: Data(received))
            guard reply.ok else { throw ControlError.failed(reply.error ?? "the request failed") }
            return reply
        } catch let error as ControlError {
            throw error
        } catch {
            throw ControlError.unreachable(pid: pid, reason: "\(error)")
        }
    }
}

/// Waits for processes that are not our children to exit.
enum ProcessWatch {
    /// Returns once none of `pids` runs; throws on the deadline. A pidfd per process makes
    /// this an event wait; kernels without pidfd are polled every 20 ms.
    static func waitForExit(of pids: [Int32], until deadline: ContinuousClock.Instant) throws {
        var fds: [CInt: Int32] = [:]
        var polled: [Int32] = []
        for pid in pids {
            if let fd = Syscall.pidfd(pid) { fds[fd] = pid } else if Syscall.processExists(pid) { polled.append(pid) }
        }
        defer { fds.keys.forEach(Syscall.close) }
        while true {
            polled = polled.filter(Syscall.processExists)
            if fds.isEmpty && polled.isEmpty { return }
            let left = deadline - ContinuousClock.now
            guard left > .zero else {
                let running = (Array(fds.values) + polled).sorted().map(String.init).joined(separator: ", ")
                throw ControlError.timedOut("processes \(running) are still running")
            }
            var ms = Int32(clamping: left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000 + 1)
            if !polled.isEmpty { ms = min(ms, 20) }
            for fd in try Syscall.poll(Array(fds.keys), timeoutMs: ms) {
                Syscall.close(fd)
                fds[fd] = nil
            }
        }
    }
}
