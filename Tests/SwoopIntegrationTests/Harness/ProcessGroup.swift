import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// How a process ended, decoded from a `waitpid(2)` status.
enum ExitStatus: Sendable, Equatable, CustomStringConvertible {
    /// Normal exit with this exit code.
    case exited(Int32)
    /// Killed by this signal.
    case signaled(Int32)

    init(waitStatus status: Int32) {
        // WIFEXITED / WEXITSTATUS / WTERMSIG are C macros that Swift does not import.
        if status & 0x7f == 0 {
            self = .exited((status >> 8) & 0xff)
        } else {
            self = .signaled(status & 0x7f)
        }
    }

    var description: String {
        switch self {
        case .exited(let code): return "exited with code \(code)"
        case .signaled(let sig): return "killed by signal \(sig)"
        }
    }
}

/// Collects a child's stdout on a background thread.
///
/// Draining continuously (instead of reading only the ready line) means a server that
/// prints more than expected can never block on a full pipe. The thread polls with a short
/// timeout so that `stop()` ends it even while some orphaned process still holds the
/// pipe's write end.
final class OutputCollector: @unchecked Sendable {
    private let lock = NSLock()
    private var bytes: [UInt8] = []
    private var finished = false
    private var stopRequested = false
    private let fd: Int32

    /// Starts draining `fd` (which the collector owns and closes).
    init(fd: Int32) {
        self.fd = fd
        let thread = Thread { [self] in self.run() }
        thread.name = "swoop-demo stdout"
        thread.start()
    }

    private func run() {
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            if lock.withLock({ stopRequested }) { break }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&pfd, 1, 100)
            if ready < 0 && errno != EINTR { break }
            if ready <= 0 { continue }
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n > 0 {
                lock.withLock { bytes.append(contentsOf: chunk[0..<n]) }
            } else if n == 0 || errno != EINTR {
                break // EOF: every process holding the write end has exited.
            }
        }
        close(fd)
        lock.withLock { finished = true }
    }

    /// Everything read so far, decoded as UTF-8.
    var text: String { lock.withLock { String(decoding: bytes, as: UTF8.self) } }

    /// The complete ("\n"-terminated) lines read so far.
    var completeLines: [String] {
        let all = text
        guard let lastNewline = all.lastIndex(of: "\n") else { return [] }
        return all[..<lastNewline].split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    }

    /// Asks the thread to finish; it closes the pipe within ~100 ms.
    func stop() {
        lock.withLock { stopRequested = true }
    }
}

/// Owns a spawned process group: reaps its leader, remembers every process that ever
/// belonged to the tree, and kills all of it.
///
/// Remembering descendants matters because a process that left the group (or whose
/// parent died, so that it was reparented) is not reached by `kill(-pgid)`.
final class ProcessGroupGuard: @unchecked Sendable {
    /// The spawned process; also the process group id (it was spawned with pgroup 0).
    let leader: pid_t

    private let lock = NSLock()
    private var status: ExitStatus?
    private var known: [pid_t: UInt64] = [:]
    private var killed = false

    init(leader: pid_t) {
        self.leader = leader
        if let info = ProcFS.info(leader, withTitle: false) { known[leader] = info.startTime }
    }

    /// Remembers these processes so that `killAll()` can reach them later.
    func record(_ processes: [ProcInfo]) {
        lock.withLock {
            for p in processes where !p.isZombie && known[p.pid] == nil { known[p.pid] = p.startTime }
        }
    }

    /// Every process ever recorded (pid and start time).
    var recorded: [(pid: pid_t, startTime: UInt64)] {
        lock.withLock { known.map { (pid: $0.key, startTime: $0.value) }.sorted { $0.pid < $1.pid } }
    }

    /// The leader's exit status if it has been reaped. Once reaped its pid may be recycled
    /// by the system, so nothing may be sent to that pid any more.
    var exitStatus: ExitStatus? { lock.withLock { status } }

    /// Reaps the leader if it has exited (never blocks).
    @discardableResult
    func reapIfExited() -> ExitStatus? {
        lock.withLock {
            if let status { return status }
            var raw: Int32 = 0
            let rc = waitpid(leader, &raw, WNOHANG)
            if rc == leader { status = ExitStatus(waitStatus: raw) }
            return status
        }
    }

    /// Waits up to `timeout` seconds for the leader to exit and reaps it.
    func waitForExit(timeout: TimeInterval) -> ExitStatus? {
        var result: ExitStatus?
        waitUntil(timeout: timeout, poll: 0.02) {
            result = reapIfExited()
            return result != nil
        }
        return result
    }

    /// Sends `sig` to the leader, unless it has already been reaped (its pid could then
    /// belong to an unrelated process).
    func signalLeader(_ sig: Int32) throws {
        guard exitStatus == nil else {
            throw HarnessError("cannot send signal \(sig): the master (pid \(leader)) has already exited")
        }
        guard kill(leader, sig) == 0 else {
            throw HarnessError("kill(\(leader), \(sig)) failed: \(errnoDescription(errno))")
        }
    }

    /// Whether the process group id `leader` is still certainly ours: true while the leader
    /// is unreaped or a recorded process still lives in the group (a process group id
    /// cannot be recycled while it has a member). Otherwise pgrp-based actions are skipped.
    private func groupIsOurs() -> Bool {
        if exitStatus == nil { return true }
        return recorded.contains { entry in
            guard let info = ProcFS.info(entry.pid, withTitle: false) else { return false }
            return !info.isZombie && info.startTime == entry.startTime && info.pgrp == leader
        }
    }

    /// Live (non-zombie) processes of the tree: recorded ones that are still the same
    /// process, plus anything still in the process group.
    func survivors() -> [ProcInfo] {
        var result: [pid_t: ProcInfo] = [:]
        for entry in recorded where !(entry.pid == leader && exitStatus != nil) {
            if let info = ProcFS.info(entry.pid), !info.isZombie, info.startTime == entry.startTime {
                result[info.pid] = info
            }
        }
        if groupIsOurs() {
            for info in ProcFS.snapshot() where info.pgrp == leader && !info.isZombie {
                result[info.pid] = ProcFS.info(info.pid) ?? info
            }
        }
        return result.values.sorted { $0.pid < $1.pid }
    }

    /// SIGKILLs the whole group and every recorded process still alive, then reaps the
    /// leader. Idempotent; safe to call from teardown and deinit.
    func killAll() {
        let first = lock.withLock { () -> Bool in
            defer { killed = true }
            return !killed
        }
        guard first else { return }
        if exitStatus == nil { record(ProcFS.tree(root: leader)) }
        // Two rounds: a manager that is being killed might still fork a replacement.
        for _ in 0..<2 {
            let ours = groupIsOurs()
            if ours { kill(-leader, SIGKILL) }
            for entry in recorded where !(entry.pid == leader && exitStatus != nil) {
                if ProcFS.isAlive(entry.pid, startTime: entry.startTime) { kill(entry.pid, SIGKILL) }
            }
            if ours {
                for info in ProcFS.snapshot() where info.pgrp == leader && !info.isZombie {
                    kill(info.pid, SIGKILL)
                }
            }
            if waitForExit(timeout: 5) != nil && survivors().isEmpty { break }
        }
    }
}

extension NSLock {
    /// Runs `body` with the lock held.
    func withLock<T>(_ body: () throws -> T) rethrows -> T {
        lock()
        defer { unlock() }
        return try body()
    }
}
