#if canImport(Glibc)
import Glibc
#endif

/// The master's pid file: written atomically (a temporary file renamed over it) and removed
/// only while it still holds our pid, so a newer server's file is never deleted. A start
/// refuses a pid file held by a live master and replaces a stale one.
struct PidFile {
    let path: String

    func write(_ pid: Int32) throws {
        let temporary = "\(path).\(pid).tmp"
        let fd = try Syscall.retrying("open", temporary) { open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644) }
        defer { Syscall.close(fd) }
        let text = "\(pid)\n"
        try text.utf8CString.withUnsafeBytes { try Syscall.writeAll(fd, UnsafeRawBufferPointer(rebasing: $0.dropLast())) }
        _ = try Syscall.retrying("rename", path) { rename(temporary, path) }
    }

    /// The pid the file holds, if it is readable.
    func read() -> Int32? {
        guard let fd = try? Syscall.retrying("open", path, { open(path, O_RDONLY | O_CLOEXEC) }) else { return nil }
        defer { Syscall.close(fd) }
        var bytes = [UInt8](repeating: 0, count: 32)
        guard let n = bytes.withUnsafeMutableBytes({ (try? Syscall.read(fd, into: $0)) ?? nil }), n > 0 else { return nil }
        return Int32(String(decoding: bytes[0..<n], as: UTF8.self).trimmingWhitespace())
    }

    func remove(ifHolding pid: Int32) {
        if read() == pid { unlink(path) }
    }

    /// Who holds the pid file.
    enum Holder: Equatable {
        /// No file, or an empty one.
        case nobody
        /// A live Swoop master.
        case master(Int32)
        /// A file left behind: its pid is dead, or names a process that is not a Swoop
        /// master (the pid was recycled), or the text is not a pid.
        case stale(Int32?, reason: String)
    }

    /// Looks at the pid file the way a second start or `status` must: a pid alone proves
    /// nothing after a crash and a reboot, so the process must also carry a master's title.
    func holder() -> Holder {
        guard let bytes = ProcFS.read(path) else { return .nobody }
        let text = String(decoding: bytes, as: UTF8.self).trimmingWhitespace()
        if text.isEmpty { return .nobody }
        guard let pid = Int32(text), pid > 0 else { return .stale(nil, reason: "it does not hold a pid") }
        if pid == getpid() { return .stale(pid, reason: "it holds this very process's pid") }
        guard Syscall.processExists(pid), let title = ProcFS.title(pid) else {
            return .stale(pid, reason: "process \(pid) is not running")
        }
        guard PidFile.isMasterTitle(title) else {
            return .stale(pid, reason: "process \(pid) is not a Swoop master (\"\(title)\")")
        }
        return .master(pid)
    }

    /// Whether a process title is a Swoop master's: `<program>: master`.
    static func isMasterTitle(_ title: String) -> Bool {
        title.hasSuffix(": master") && !title.hasPrefix(":")
    }
}

extension String {
    func trimmingWhitespace() -> String {
        var text = Substring(self)
        while let c = text.first, c.isWhitespace { text.removeFirst() }
        while let c = text.last, c.isWhitespace { text.removeLast() }
        return String(text)
    }
}
