#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CSwoop
import NIOCore

/// The one place where Swoop calls the kernel: EINTR is retried, would-block is a value,
/// and every other failure is thrown as a ``SystemError`` that carries errno.
enum Syscall {
    /// Runs `body` until it stops failing with EINTR; errno is read right after the call.
    @inline(__always)
    static func retrying<T: FixedWidthInteger>(_ call: String, _ context: @autoclosure () -> String = "",
                                               _ body: () -> T) throws -> T {
        while true {
            let result = body()
            if result >= 0 { return result }
            let code = errno
            if code == EINTR { continue }
            throw SystemError(call: call, errno: code, context: context())
        }
    }

    /// Closes a descriptor. EINTR is not retried: on Linux the descriptor is released
    /// even then, and a retry could close one that another thread just opened
    /// (https://lwn.net/Articles/576478/).
    static func close(_ fd: CInt) {
        _ = Glibc.close(fd)
    }

    /// Marks a descriptor close-on-exec, so that only children it is passed to explicitly
    /// get it.
    static func setCloseOnExec(_ fd: CInt) {
        let flags = fcntl(fd, F_GETFD)
        if flags >= 0 { _ = fcntl(fd, F_SETFD, flags | FD_CLOEXEC) }
    }

    /// Reads what is there; `nil` means it would block, 0 means end of file.
    static func read(_ fd: CInt, into buffer: UnsafeMutableRawBufferPointer) throws -> Int? {
        try nonBlocking("read", fd) { Glibc.read(fd, buffer.baseAddress, buffer.count) }
    }

    /// Receives what a stream socket holds; `nil` means it would block, 0 means end of stream.
    /// recv(2) rather than read(2): the kernel goes to the socket without the file layer's
    /// checks (position lock, access checks), which were a few per cent of a base-mode
    /// worker's CPU per request.
    static func receive(_ fd: CInt, into buffer: UnsafeMutableRawBufferPointer) throws -> Int? {
        try nonBlocking("recv", fd) { recv(fd, buffer.baseAddress, buffer.count, 0) }
    }

    /// Sends what a stream socket takes of `bytes`; `nil` means it would block. A peer that
    /// closed its end is an EPIPE thrown, not a SIGPIPE.
    static func send(_ fd: CInt, _ bytes: UnsafeRawBufferPointer) throws -> Int? {
        try nonBlocking("send", fd) { Glibc.send(fd, bytes.baseAddress, bytes.count, CInt(MSG_NOSIGNAL)) }
    }

    /// Sends up to `count` bytes of a file from `offset` (which it advances) to a socket,
    /// in the kernel; `nil` means it would block, 0 that the file ends before `offset`.
    static func sendfile(_ socket: CInt, _ file: CInt, offset: inout Int, count: Int) throws -> Int? {
        var position = off_t(offset)
        defer { offset = Int(position) }
        return try nonBlocking("sendfile", socket) { Glibc.sendfile(socket, file, &position, count) }
    }

    /// Shuts down the sending side of a socket (a FIN goes after what was written).
    static func shutdownOutput(_ fd: CInt) throws {
        _ = try retrying("shutdown", "fd \(fd)") { Glibc.shutdown(fd, CInt(SHUT_WR)) }
    }

    /// Accepts a connection, non-blocking and close-on-exec; `nil` means none is waiting.
    /// A connection that failed before it was taken (reset by its peer: ECONNABORTED,
    /// EPROTO) is skipped for the next one; what is thrown concerns the listener (out of
    /// descriptors, say).
    static func accept(_ listener: CInt) throws -> CInt? {
        while true {
            do {
                return try nonBlocking("accept4", listener) { Int(cswoop_accept(listener)) }.map { CInt($0) }
            } catch let error as SystemError where error.errno == ECONNABORTED || error.errno == EPROTO {
                continue
            }
        }
    }

    /// Receives one datagram into `buffer` and says who sent it; `nil` means none is waiting.
    static func receive(_ fd: CInt, into buffer: UnsafeMutableRawBufferPointer,
                        from sender: inout sockaddr_storage) throws -> Int? {
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        return try withUnsafeMutablePointer(to: &sender) { storage in
            try storage.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
                try nonBlocking("recvfrom", fd) { recvfrom(fd, buffer.baseAddress, buffer.count, 0, address, &length) }
            }
        }
    }

    /// Sends one datagram to `address`; `nil` means the socket's buffer is full.
    static func send(_ fd: CInt, _ bytes: UnsafeRawBufferPointer, to address: sockaddr_storage) throws -> Int? {
        var address = address
        let length = socklen_t(address.ss_family == sa_family_t(AF_INET6)
            ? MemoryLayout<sockaddr_in6>.size : MemoryLayout<sockaddr_in>.size)
        return try withUnsafePointer(to: &address) { storage in
            try storage.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
                try nonBlocking("sendto", fd) { sendto(fd, bytes.baseAddress, bytes.count, 0, address, length) }
            }
        }
    }

    /// An IPv4 or IPv6 address as text and port, as clients see them; nil for another family.
    static func text(of address: sockaddr_storage) -> (ip: String, port: Int)? {
        var address = address
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        return withUnsafePointer(to: &address) { storage -> (String, Int)? in
            switch Int32(storage.pointee.ss_family) {
            case AF_INET:
                return storage.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { v4 in
                    var bytes = v4.pointee.sin_addr
                    guard inet_ntop(AF_INET, &bytes, &text, socklen_t(text.count)) != nil else { return nil }
                    return (cText(text), Int(UInt16(bigEndian: v4.pointee.sin_port)))
                }
            case AF_INET6:
                return storage.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { v6 in
                    var bytes = v6.pointee.sin6_addr
                    guard inet_ntop(AF_INET6, &bytes, &text, socklen_t(text.count)) != nil else { return nil }
                    return (cText(text), Int(UInt16(bigEndian: v6.pointee.sin6_port)))
                }
            default:
                return nil
            }
        }
    }

    /// The socket address of a numeric IPv4 or IPv6 address and a port; nil if `ip` is neither.
    static func address(ip: String, port: Int) -> sockaddr_storage? {
        var storage = sockaddr_storage()
        let found = withUnsafeMutablePointer(to: &storage) { storage -> Bool in
            if storage.withMemoryRebound(to: sockaddr_in.self, capacity: 1, { v4 in
                v4.pointee.sin_family = sa_family_t(AF_INET)
                v4.pointee.sin_port = UInt16(truncatingIfNeeded: port).bigEndian
                return inet_pton(AF_INET, ip, &v4.pointee.sin_addr) == 1
            }) { return true }
            storage.pointee = sockaddr_storage()
            return storage.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { v6 in
                v6.pointee.sin6_family = sa_family_t(AF_INET6)
                v6.pointee.sin6_port = UInt16(truncatingIfNeeded: port).bigEndian
                return inet_pton(AF_INET6, ip, &v6.pointee.sin6_addr) == 1
            }
        }
        return found ? storage : nil
    }

    /// Runs `body` until it stops failing with EINTR; would-block is `nil`.
    private static func nonBlocking(_ call: String, _ fd: CInt, _ body: () -> Int) throws -> Int? {
        while true {
            let n = body()
            if n >= 0 { return n }
            let code = errno
            if code == EINTR { continue }
            if code == EAGAIN || code == EWOULDBLOCK { return nil }
            throw SystemError(call: call, errno: code, context: "fd \(fd)")
        }
    }

    /// Writes all of `bytes` to a blocking descriptor.
    static func writeAll(_ fd: CInt, _ bytes: UnsafeRawBufferPointer) throws {
        var offset = 0
        while offset < bytes.count {
            let n = try retrying("write", "fd \(fd)") {
                Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            }
            offset += n
        }
    }

    /// Sends a signal; `false` when the process no longer exists.
    @discardableResult
    static func kill(_ pid: pid_t, _ signal: CInt) -> Bool {
        Glibc.kill(pid, signal) == 0
    }

    /// A child that changed state, decoded with the real wait-status macros.
    struct ChildExit: Sendable, Equatable {
        var pid: pid_t
        /// The exit code, when the child exited.
        var exitCode: Int32
        /// The signal that ended it, or 0.
        var signal: Int32
        var isClean: Bool { exitCode == 0 && signal == 0 }
    }

    /// Reaps one exited child without blocking; `nil` when none is waiting.
    static func reapChild() -> ChildExit? {
        var status: CInt = 0
        while true {
            let pid = waitpid(-1, &status, WNOHANG)
            if pid > 0 {
                if cswoop_wifsignaled(status) != 0 {
                    return ChildExit(pid: pid, exitCode: 0, signal: cswoop_wtermsig(status))
                }
                return ChildExit(pid: pid, exitCode: cswoop_wexitstatus(status), signal: 0)
            }
            if pid < 0 && errno == EINTR { continue }
            return nil
        }
    }

    /// Reaps children until none is left, waiting up to `limit` for those still running.
    static func reapAllChildren(within limit: Duration) {
        let clock = ContinuousClock()
        let deadline = clock.now + limit
        var status: CInt = 0
        while true {
            let pid = waitpid(-1, &status, WNOHANG)
            if pid > 0 { continue }
            if pid < 0 && errno == EINTR { continue }
            if pid < 0 { return }  // ECHILD: none left
            if clock.now >= deadline { return }
            usleep(10_000)
        }
    }

    /// The monotonic clock (NIODeadline's) as of the kernel's last tick: a few milliseconds
    /// behind at most, and cheaper to read (no TSC read and conversion in the vDSO), for the
    /// per-request stamps whose timeouts are seconds (the last read of a connection, an
    /// HTTP timeout's start).
    static func coarseNow() -> NIODeadline {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC_COARSE, &now)
        return .uptimeNanoseconds(UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec))
    }

    /// Waits for readability of `fds` up to `timeoutMs` (-1: forever); returns the readable ones.
    static func poll(_ fds: [CInt], timeoutMs: Int32) throws -> [CInt] {
        var pollfds = fds.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
        let n = Glibc.poll(&pollfds, nfds_t(pollfds.count), timeoutMs)
        if n < 0 {
            if errno == EINTR { return [] }
            throw SystemError(call: "poll", errno: errno)
        }
        return pollfds.filter { $0.revents != 0 }.map(\.fd)
    }

    /// Binds a TCP listener or a UDP socket and reports the port it got.
    static func bindInet(host: String, port: Int, udp: Bool, backlog: Int, reusePort: Bool) throws -> (fd: CInt, port: Int) {
        var bound: CInt = 0
        let fd = cswoop_bind_inet(host, CInt(port), udp ? 1 : 0, CInt(backlog), reusePort ? 1 : 0, &bound)
        if fd < 0 {
            throw SystemError(call: "bind", errno: errno, context: "\(udp ? "udp" : "tcp") \(host):\(port)")
        }
        return (fd, Int(bound))
    }

    static func listenAbstract(_ name: String, backlog: Int) throws -> CInt {
        try retrying("bind", "@\(name)") { cswoop_listen_abstract(name, CInt(backlog)) }
    }

    static func connectAbstract(_ name: String) throws -> CInt {
        try retrying("connect", "@\(name)") { cswoop_connect_abstract(name) }
    }

    /// Opens a file close-on-exec (`flags` without O_CLOEXEC).
    static func open(_ path: String, _ flags: CInt, mode: mode_t = 0o644) throws -> CInt {
        try retrying("open", path) { Glibc.open(path, flags | O_CLOEXEC, mode) }
    }

    /// Points `target` at the file `source` refers to, atomically: a thread writing to
    /// `target` meanwhile writes to the old file or the new one, never to a closed number.
    static func replace(_ target: CInt, with source: CInt, closeOnExec: Bool) throws {
        _ = try retrying("dup3", "fd \(source) onto \(target)") { cswoop_dup3(source, target, closeOnExec ? 1 : 0) }
    }

    /// The device and inode a descriptor refers to, or nil when it is not open.
    static func fileIdentity(_ fd: CInt) -> (device: UInt64, inode: UInt64)? {
        var info = stat()
        guard fstat(fd, &info) == 0 else { return nil }
        return (UInt64(info.st_dev), UInt64(info.st_ino))
    }

    /// A descriptor that becomes readable when `pid` exits; nil when the kernel has no
    /// pidfd (before Linux 5.3) or the process is already gone.
    static func pidfd(_ pid: pid_t) -> CInt? {
        let fd = cswoop_pidfd_open(pid)
        return fd >= 0 ? fd : nil
    }

    /// Whether `pid` exists (EPERM counts: it exists, under another user).
    static func processExists(_ pid: pid_t) -> Bool {
        Glibc.kill(pid, 0) == 0 || errno == EPERM
    }

    /// The address a connected socket's peer has: its IP address as text ("unix" for a Unix
    /// socket) and port.
    static func peerAddress(_ fd: CInt) -> (ip: String, port: Int) {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let found = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &length) == 0 }
        }
        return found ? text(of: storage) ?? ("unix", 0) : ("unix", 0)
    }

    /// The text of a NUL-terminated C string filled in by a call.
    private static func cText(_ bytes: [CChar]) -> String {
        String(decoding: bytes.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Sets a socket option (`value` is the option's C type: `CInt`, `linger`, …).
    static func setSocketOption<Value: BitwiseCopyable>(_ fd: CInt, _ level: CInt, _ name: CInt, _ value: Value) throws {
        _ = try withUnsafeBytes(of: value) { bytes in
            try retrying("setsockopt", "fd \(fd)") {
                setsockopt(fd, level, name, bytes.baseAddress, socklen_t(bytes.count))
            }
        }
    }

    static func setNonBlocking(_ fd: CInt) throws {
        let flags = try retrying("fcntl", "fd \(fd)") { fcntl(fd, F_GETFL) }
        _ = try retrying("fcntl", "fd \(fd)") { fcntl(fd, F_SETFL, flags | O_NONBLOCK) }
    }
}
