#if canImport(Glibc)
import Glibc
#endif

/// The master's pid file: written atomically (a temporary file renamed over it) and removed
/// only while it still holds our pid, so a newer server's file is never deleted.
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
}

extension String {
    func trimmingWhitespace() -> String {
        var text = Substring(self)
        while let c = text.first, c.isWhitespace { text.removeFirst() }
        while let c = text.last, c.isWhitespace { text.removeLast() }
        return String(text)
    }
}
