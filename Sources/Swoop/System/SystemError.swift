#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A failed system call: which call, on what, and the errno it left.
///
/// Every system call of Swoop goes through ``Syscall``, which turns a failure into this
/// error so that a log line always says what failed and why, as nginx's
/// `socketpair() failed while spawning "worker"` does.
public struct SystemError: Error, CustomStringConvertible, Sendable {
    /// The system call that failed, such as `"bind"`.
    public let call: String
    /// The errno value it left.
    public let errno: Int32
    /// What it was doing, such as `"127.0.0.1:9501"`.
    public let context: String

    public init(call: String, errno: Int32, context: String = "") {
        self.call = call
        self.errno = errno
        self.context = context
    }

    public var description: String {
        let reason = String(cString: strerror(errno))
        return context.isEmpty
            ? "\(call)() failed: \(reason) (errno \(errno))"
            : "\(call)() failed for \(context): \(reason) (errno \(errno))"
    }
}
