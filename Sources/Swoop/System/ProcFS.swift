#if canImport(Glibc)
import Glibc
#endif

/// What Linux's /proc says about processes: enough to recognise a Swoop master behind a pid
/// file and to list the processes of its tree.
enum ProcFS {
    /// One process, from `/proc/<pid>/stat` and `/proc/<pid>/cmdline`.
    struct Entry: Sendable, Equatable {
        var pid: pid_t
        var parent: pid_t
        var session: pid_t
        /// Field 22 of stat, in clock ticks since boot: with the pid, it names a process for
        /// good, since a recycled pid has a later start time.
        var startTime: UInt64
        /// "Z" or "X" once it has exited and waits to be reaped.
        var state: Character
        /// The command line with NULs as spaces: the process title (`swoop-demo: worker 2`).
        var title: String

        var isZombie: Bool { state == "Z" || state == "X" }
    }

    /// A small file read whole (a /proc file reports size 0, so it is read until EOF).
    static func read(_ path: String) -> [UInt8]? {
        guard let fd = try? Syscall.open(path, O_RDONLY) else { return nil }
        defer { Syscall.close(fd) }
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            guard let n = chunk.withUnsafeMutableBytes({ try? Syscall.read(fd, into: $0) }) ?? nil, n > 0 else {
                return result
            }
            result.append(contentsOf: chunk[0..<n])
        }
    }

    /// The process title of `pid`, or nil when it does not exist.
    static func title(_ pid: pid_t) -> String? {
        guard let bytes = read("/proc/\(pid)/cmdline") else { return nil }
        return parseTitle(bytes)
    }

    static func parseTitle(_ bytes: [UInt8]) -> String {
        var text = String(decoding: bytes.map { $0 == 0 ? UInt8(ascii: " ") : $0 }, as: UTF8.self)
        while text.last == " " { text.removeLast() }
        return text
    }

    static func entry(_ pid: pid_t) -> Entry? {
        guard let stat = read("/proc/\(pid)/stat"), var entry = parseStat(stat) else { return nil }
        entry.title = title(pid) ?? ""
        return entry
    }

    /// Parses a stat line. The command name (field 2) is in parentheses and may hold spaces
    /// or parentheses itself, so the fixed fields are counted from the last ')'.
    static func parseStat(_ bytes: [UInt8]) -> Entry? {
        guard let close = bytes.lastIndex(of: UInt8(ascii: ")")),
              let pid = pid_t(String(decoding: bytes.prefix(while: { $0 != UInt8(ascii: " ") }), as: UTF8.self))
        else { return nil }
        let fields = bytes[(close + 1)...].split(separator: UInt8(ascii: " ")).map { String(decoding: $0, as: UTF8.self) }
        // fields[0] is field 3 (state), so field N is fields[N - 3].
        guard fields.count >= 20, let state = fields[0].first, let parent = pid_t(fields[1]),
              let session = pid_t(fields[3]), let start = UInt64(fields[19]) else { return nil }
        return Entry(pid: pid, parent: parent, session: session, startTime: start, state: state, title: "")
    }

    /// `root` and all of its descendants, parents before children.
    static func tree(root: pid_t) -> [Entry] {
        let pids = allPids()
        var children: [pid_t: [Entry]] = [:]
        var rootEntry: Entry?
        for pid in pids {
            guard let stat = read("/proc/\(pid)/stat"), let entry = parseStat(stat) else { continue }
            if pid == root { rootEntry = entry }
            children[entry.parent, default: []].append(entry)
        }
        guard let rootEntry else { return [] }
        var result: [Entry] = []
        var queue = [rootEntry]
        while !queue.isEmpty {
            var entry = queue.removeFirst()
            entry.title = title(entry.pid) ?? ""
            result.append(entry)
            queue.append(contentsOf: (children[entry.pid] ?? []).sorted { $0.pid < $1.pid })
        }
        return result
    }

    static func allPids() -> [pid_t] {
        guard let dir = opendir("/proc") else { return [] }
        defer { closedir(dir) }
        var pids: [pid_t] = []
        while let item = readdir(dir) {
            let name = withUnsafeBytes(of: item.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if let pid = pid_t(name) { pids.append(pid) }
        }
        return pids
    }
}
