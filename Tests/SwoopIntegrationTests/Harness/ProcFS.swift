import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What `/proc/<pid>/stat` (and `/proc/<pid>/cmdline`) say about one process.
struct ProcInfo: Sendable, Equatable, CustomStringConvertible {
    let pid: pid_t
    let ppid: pid_t
    /// Process group id.
    let pgrp: pid_t
    /// Field 3 of `/proc/<pid>/stat`: "R", "S", "D", "Z" (zombie), "X" (dead), ...
    let state: Character
    /// Field 22 of `/proc/<pid>/stat` (clock ticks since boot). Together with the pid it
    /// identifies a process for good: a recycled pid has a different start time.
    let startTime: UInt64
    /// The process title: `/proc/<pid>/cmdline` with NULs turned into spaces and trailing
    /// spaces trimmed (empty for zombies and kernel threads).
    let title: String

    /// A zombie or dead process: it has exited and only waits to be reaped.
    var isZombie: Bool { state == "Z" || state == "X" }

    var description: String { "pid=\(pid) ppid=\(ppid) pgrp=\(pgrp) state=\(state) title=\"\(title)\"" }
}

/// Read-only helpers over Linux's `/proc`.
enum ProcFS {
    /// The whole content of a (small) file, read with plain `read(2)`: `/proc` files
    /// report a size of 0, so size-based readers must not be used on them.
    static func readFile(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n > 0 {
                result.append(contentsOf: chunk[0..<n])
            } else if n == 0 {
                return result
            } else if errno != EINTR {
                return result.isEmpty ? nil : result
            }
        }
    }

    /// The title of `pid` from `/proc/<pid>/cmdline`, as the contract defines it:
    /// NUL separated arguments joined with spaces, trailing NULs/spaces trimmed.
    /// The value of one line of `/proc/<pid>/status` (`VmRSS:`, `Uid:`…), trimmed.
    static func statusField(_ pid: pid_t, _ key: String) -> String? {
        guard let bytes = readFile("/proc/\(pid)/status") else { return nil }
        let line = String(decoding: bytes, as: UTF8.self).split(separator: "\n").first { $0.hasPrefix(key) }
        return line.map { String($0.dropFirst(key.count)).trimmingCharacters(in: .whitespaces) }
    }

    /// User plus system CPU time of a process in seconds, from `/proc/<pid>/stat`.
    static func cpuSeconds(_ pid: pid_t) -> Double? {
        guard let bytes = readFile("/proc/\(pid)/stat") else { return nil }
        let text = String(decoding: bytes, as: UTF8.self)
        guard let close = text.lastIndex(of: ")") else { return nil }
        // After the command, field 3 (state) comes first: utime is field 14, stime 15.
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    static func title(_ pid: pid_t) -> String? {
        guard let bytes = readFile("/proc/\(pid)/cmdline") else { return nil }
        let spaced = bytes.map { $0 == 0 ? UInt8(ascii: " ") : $0 }
        var text = String(decoding: spaced, as: UTF8.self)
        while let last = text.last, last == " " || last == "\0" { text.removeLast() }
        return text
    }

    /// Parses `/proc/<pid>/stat`; nil if the process does not exist (any more).
    ///
    /// - Parameter withTitle: also read the cmdline (one more file read per process).
    static func info(_ pid: pid_t, withTitle: Bool = true) -> ProcInfo? {
        guard let bytes = readFile("/proc/\(pid)/stat") else { return nil }
        let text = String(decoding: bytes, as: UTF8.self)
        // The command name (field 2) is in parentheses and may itself contain spaces or
        // parentheses, so the fixed fields start after the LAST ')'.
        guard let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ", omittingEmptySubsequences: true)
        // fields[0] is field 3 (state); field N is fields[N - 3].
        guard fields.count >= 20,
              let state = fields[0].first,
              let ppid = pid_t(fields[1]),
              let pgrp = pid_t(fields[2]),
              let start = UInt64(fields[19])
        else { return nil }
        return ProcInfo(
            pid: pid, ppid: ppid, pgrp: pgrp, state: state, startTime: start,
            title: withTitle ? (title(pid) ?? "") : ""
        )
    }

    /// Every pid currently listed in `/proc` (thread-group leaders only, i.e. processes).
    static func allPids() -> [pid_t] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return names.compactMap { pid_t($0) }
    }

    /// A snapshot of all processes (without titles, which are read on demand).
    static func snapshot() -> [ProcInfo] {
        allPids().compactMap { info($0, withTitle: false) }
    }

    /// `root` and all of its descendants, found by scanning `/proc/*/stat` for parent pids
    /// (this also sees children forked from non-main threads, which
    /// `/proc/<pid>/task/<pid>/children` would miss). Titles are filled in.
    /// Returns an empty array if `root` does not exist.
    static func tree(root: pid_t) -> [ProcInfo] {
        let all = snapshot()
        guard all.contains(where: { $0.pid == root }) else { return [] }
        var childrenOf: [pid_t: [pid_t]] = [:]
        for p in all { childrenOf[p.ppid, default: []].append(p.pid) }
        var result: [ProcInfo] = []
        var queue: [pid_t] = [root]
        var seen: Set<pid_t> = []
        while !queue.isEmpty {
            let pid = queue.removeFirst()
            guard seen.insert(pid).inserted, let info = info(pid, withTitle: true) else { continue }
            result.append(info)
            queue.append(contentsOf: childrenOf[pid] ?? [])
        }
        return result
    }

    /// Whether `pid` exists and is not a zombie; if `startTime` is given, also whether it is
    /// still the same process (the pid was not recycled).
    static func isAlive(_ pid: pid_t, startTime: UInt64? = nil) -> Bool {
        guard let info = info(pid, withTitle: false), !info.isZombie else { return false }
        if let startTime, info.startTime != startTime { return false }
        return true
    }
}
