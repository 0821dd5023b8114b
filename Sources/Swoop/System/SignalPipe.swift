#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CSwoop

/// Signals turned into bytes on a pipe, so that a process's main loop handles them as
/// ordinary events.
///
/// The handler, installed in C, only writes the signal number: no allocation, no lock, no
/// logging. gunicorn once reaped and logged inside its SIGCHLD handler and deadlocked on the
/// logging lock; everything here happens later, in the loop that reads the pipe.
final class SignalPipe {
    let fd: CInt

    init(_ signals: [CInt]) throws {
        _ = cswoop_ignore_signal(SIGPIPE)
        let fd = signals.withUnsafeBufferPointer { cswoop_signal_pipe($0.baseAddress, CInt($0.count)) }
        if fd < 0 { throw SystemError(call: "sigaction", errno: errno) }
        self.fd = fd
    }

    /// The signals that arrived since the last call, in order.
    func drain() -> [CInt] {
        var result: [CInt] = []
        var bytes = [UInt8](repeating: 0, count: 64)
        while true {
            let n = bytes.withUnsafeMutableBytes { (try? Syscall.read(fd, into: $0)) ?? nil } ?? 0
            if n <= 0 { break }
            result.append(contentsOf: bytes[0..<n].map { CInt($0) })
        }
        return result
    }
}
