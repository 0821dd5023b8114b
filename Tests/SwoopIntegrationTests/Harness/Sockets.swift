import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Why a socket operation of the harness failed.
struct SocketError: Error, CustomStringConvertible {
    enum Kind: Sendable, Equatable {
        /// The deadline passed.
        case timeout
        /// The peer closed the connection (EOF) or reset it.
        case closed
        /// Any other system call failure.
        case failed
    }

    let kind: Kind
    let message: String
    var description: String { "\(kind): \(message)" }
}

/// An IPv4 loopback address for `port`.
private func loopbackAddress(_ host: String, _ port: UInt16) throws -> sockaddr_in {
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = port.bigEndian
    guard inet_pton(AF_INET, host, &addr.sin_addr) == 1 else {
        throw SocketError(kind: .failed, message: "bad IPv4 address \(host)")
    }
    return addr
}

/// Sets SO_RCVTIMEO and SO_SNDTIMEO: a safety net so that no blocking call can hang
/// forever even if a code path forgets its poll() deadline.
private func setSocketTimeouts(_ fd: Int32, _ seconds: TimeInterval) {
    var tv = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - seconds.rounded(.down)) * 1_000_000))
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
}

/// Waits until `fd` is readable/writable (or has an error/hangup); false on timeout.
private func waitFor(_ fd: Int32, events: Int32, deadline: Deadline) -> Bool {
    var pfd = pollfd(fd: fd, events: Int16(events), revents: 0)
    while true {
        let rc = poll(&pfd, 1, deadline.remainingMillis)
        if rc > 0 { return true }
        if rc == 0 { return false }
        if errno != EINTR { return true } // let the following call report the error
    }
}

/// A blocking TCP client speaking the demo's line protocol ("\n"-terminated lines).
///
/// Every operation takes a timeout (poll-based), so a hung server makes the operation
/// throw `SocketError(kind: .timeout)` instead of blocking the suite.
final class LineClient {
    /// The server port this client connected to.
    let port: UInt16
    /// The socket, -1 once closed.
    private(set) var fd: Int32
    /// Default timeout for operations that are not given one.
    var defaultTimeout: TimeInterval
    private var buffer: [UInt8] = []
    /// How many leading bytes of `buffer` are known to contain no "\n".
    private var scanned = 0
    private var peerClosed = false

    /// Connects to `host:port`, failing after `timeout` seconds.
    init(port: UInt16, host: String = "127.0.0.1", timeout: TimeInterval = 5) throws {
        self.port = port
        self.defaultTimeout = timeout
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else {
            throw SocketError(kind: .failed, message: "socket(): \(errnoDescription(errno))")
        }
        do {
            try connectWithTimeout(host: host, timeout: timeout)
        } catch {
            Glibc.close(fd)
            fd = -1
            throw error
        }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        setSocketTimeouts(fd, 10)
    }

    deinit {
        close()
    }

    private func connectWithTimeout(host: String, timeout: TimeInterval) throws {
        var addr = try loopbackAddress(host, port)
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        if rc != 0 {
            guard errno == EINPROGRESS else {
                throw SocketError(kind: .failed, message: "connect(\(host):\(port)): \(errnoDescription(errno))")
            }
            guard waitFor(fd, events: Int32(POLLOUT), deadline: Deadline(timeout)) else {
                throw SocketError(kind: .timeout, message: "connect(\(host):\(port)) timed out after \(timeout) s")
            }
            var error: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
            guard error == 0 else {
                throw SocketError(kind: .failed, message: "connect(\(host):\(port)): \(errnoDescription(error))")
            }
        }
        _ = fcntl(fd, F_SETFL, flags) // back to blocking; poll() enforces the deadlines
    }

    /// Sends `line` followed by "\n".
    func send(_ line: String, timeout: TimeInterval? = nil) throws {
        try sendRaw(Array((line + "\n").utf8), timeout: timeout)
    }

    /// Sends raw bytes (no newline added), all of them, within `timeout`.
    /// - Throws: `.closed` if the peer closed/reset the connection, `.timeout` if the peer
    ///   stopped reading for longer than `timeout`.
    func sendRaw(_ bytes: [UInt8], timeout: TimeInterval? = nil) throws {
        guard fd >= 0 else { throw SocketError(kind: .failed, message: "send on a closed client") }
        let deadline = Deadline(timeout ?? defaultTimeout)
        var offset = 0
        while offset < bytes.count {
            guard waitFor(fd, events: Int32(POLLOUT), deadline: deadline) else {
                throw SocketError(kind: .timeout, message: "send stalled after \(offset) of \(bytes.count) bytes")
            }
            let n = bytes.withUnsafeBytes {
                Glibc.send(fd, $0.baseAddress! + offset, min($0.count - offset, 1 << 20),
                           Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT))
            }
            if n > 0 {
                offset += n
            } else if n < 0 && (errno == EAGAIN || errno == EINTR) {
                continue
            } else if n < 0 && (errno == EPIPE || errno == ECONNRESET) {
                throw SocketError(kind: .closed, message: "peer closed after \(offset) of \(bytes.count) bytes sent")
            } else {
                throw SocketError(kind: .failed, message: "send: \(errnoDescription(errno))")
            }
        }
    }

    /// Reads into the buffer once (waiting until `deadline`). Returns false on timeout.
    private func fill(deadline: Deadline) throws -> Bool {
        if peerClosed { throw SocketError(kind: .closed, message: "connection closed by peer") }
        guard waitFor(fd, events: Int32(POLLIN), deadline: deadline) else { return false }
        var chunk = [UInt8](repeating: 0, count: 65_536)
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        if n > 0 {
            buffer.append(contentsOf: chunk[0..<n])
            return true
        }
        if n == 0 {
            peerClosed = true
            throw SocketError(kind: .closed, message: "connection closed by peer (EOF)")
        }
        if errno == EAGAIN || errno == EINTR { return true }
        if errno == ECONNRESET || errno == EPIPE {
            peerClosed = true
            throw SocketError(kind: .closed, message: "connection reset by peer")
        }
        throw SocketError(kind: .failed, message: "recv: \(errnoDescription(errno))")
    }

    private func takeLine() -> String? {
        guard let newline = buffer[scanned...].firstIndex(of: UInt8(ascii: "\n")) else {
            scanned = buffer.count
            return nil
        }
        var lineBytes = buffer[..<newline]
        if lineBytes.last == UInt8(ascii: "\r") { lineBytes = lineBytes.dropLast() } // tolerate CRLF
        let line = String(decoding: lineBytes, as: UTF8.self)
        buffer.removeSubrange(...newline)
        scanned = 0
        return line
    }

    /// Reads one reply line (without its "\n").
    /// - Throws: `.timeout` if no complete line arrives in time, `.closed` on EOF/reset.
    func readLine(timeout: TimeInterval? = nil) throws -> String {
        let limit = timeout ?? defaultTimeout
        let deadline = Deadline(limit)
        while true {
            if let line = takeLine() { return line }
            guard try fill(deadline: deadline) else {
                throw SocketError(kind: .timeout, message: "no reply line within \(limit) s (\(buffer.count) bytes buffered)")
            }
        }
    }

    /// Reads exactly `count` bytes (for length-framed protocols).
    func readBytes(_ count: Int, timeout: TimeInterval? = nil) throws -> [UInt8] {
        let limit = timeout ?? defaultTimeout
        let deadline = Deadline(limit)
        while buffer.count < count {
            guard try fill(deadline: deadline) else {
                throw SocketError(kind: .timeout, message: "\(buffer.count) of \(count) bytes within \(limit) s")
            }
        }
        let bytes = Array(buffer[..<count])
        buffer.removeSubrange(..<count)
        scanned = 0
        return bytes
    }

    /// Sends `line` and reads the reply line.
    func request(_ line: String, timeout: TimeInterval? = nil) throws -> String {
        let deadline = Deadline(timeout ?? defaultTimeout)
        try send(line, timeout: deadline.remaining)
        return try readLine(timeout: deadline.remaining)
    }

    /// Bytes received and not read yet.
    var bufferedByteCount: Int { buffer.count }

    /// Whether input (a reply or EOF) is waiting, or arrives within `timeout` seconds.
    /// Nothing is consumed; with the default timeout of 0 it never blocks.
    func hasInput(within timeout: TimeInterval = 0) -> Bool {
        if !buffer.isEmpty || peerClosed { return true }
        return waitFor(fd, events: Int32(POLLIN), deadline: Deadline(timeout))
    }

    /// Reads whatever has arrived (never blocks) and returns the complete lines buffered;
    /// for event loops that poll many clients at once (see `fd`).
    /// - Throws: `.closed` on EOF/reset.
    func readAvailableLines() throws -> [String] {
        _ = try fill(deadline: Deadline(0))
        var lines: [String] = []
        while let line = takeLine() { lines.append(line) }
        return lines
    }

    /// Waits up to `timeout` seconds for the peer to close (EOF or reset) the connection.
    /// Data that arrives meanwhile is kept for `readLine`.
    /// - Returns: true if the connection was closed by the peer within the timeout.
    func isClosedByPeer(timeout: TimeInterval) -> Bool {
        let deadline = Deadline(timeout)
        while true {
            do {
                guard try fill(deadline: deadline) else { return false }
            } catch let error as SocketError where error.kind == .closed {
                return true
            } catch {
                return false
            }
        }
    }

    /// Waits up to `timeout` seconds for the peer to reset the connection, without reading
    /// anything (for a client that does not read: reading would drain what it was sent).
    func isResetByPeer(timeout: TimeInterval) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            var error: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            if getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) == 0, error != 0 { return true }
            usleep(50_000)
        }
        return false
    }

    /// Closes the socket normally (FIN). Idempotent.
    func close() {
        if fd >= 0 {
            Glibc.close(fd)
            fd = -1
        }
    }

    /// Closes with SO_LINGER {on, 0}, so the kernel sends a RST instead of a FIN:
    /// an abruptly vanishing client.
    func resetAndClose() {
        guard fd >= 0 else { return }
        var option = linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &option, socklen_t(MemoryLayout<linger>.size))
        close()
    }
}

/// A connected UDP client for the demo's datagram protocol.
final class UDPClient {
    let port: UInt16
    private(set) var fd: Int32

    /// Creates a socket connected to `host:port` (so only the server's replies are received).
    init(port: UInt16, host: String = "127.0.0.1") throws {
        self.port = port
        fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else {
            throw SocketError(kind: .failed, message: "socket(): \(errnoDescription(errno))")
        }
        var addr = try loopbackAddress(host, port)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard rc == 0 else {
            Glibc.close(fd)
            fd = -1
            throw SocketError(kind: .failed, message: "connect(udp \(host):\(port)): \(errnoDescription(errno))")
        }
        setSocketTimeouts(fd, 10)
    }

    deinit {
        if fd >= 0 { Glibc.close(fd) }
    }

    /// Sends one datagram.
    func send(_ datagram: String) throws {
        let bytes = Array(datagram.utf8)
        let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        guard n == bytes.count else {
            throw SocketError(kind: .failed, message: "udp send: \(errnoDescription(errno))")
        }
    }

    /// Receives one datagram, with one trailing "\n" (or "\r\n") removed.
    func receive(timeout: TimeInterval) throws -> String {
        let deadline = Deadline(timeout)
        while true {
            guard waitFor(fd, events: Int32(POLLIN), deadline: deadline) else {
                throw SocketError(kind: .timeout, message: "no datagram within \(timeout) s")
            }
            var chunk = [UInt8](repeating: 0, count: 65_536)
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n >= 0 {
                var bytes = chunk[0..<n]
                if bytes.last == UInt8(ascii: "\n") { bytes = bytes.dropLast() }
                if bytes.last == UInt8(ascii: "\r") { bytes = bytes.dropLast() }
                return String(decoding: bytes, as: UTF8.self)
            }
            if errno == EAGAIN || errno == EINTR { continue }
            throw SocketError(kind: .failed, message: "udp recv: \(errnoDescription(errno))")
        }
    }

    /// Sends `datagram` and returns the reply. UDP may drop datagrams, so the request is
    /// re-sent up to `attempts` times, each waiting `timeout` seconds.
    func request(_ datagram: String, timeout: TimeInterval = 2, attempts: Int = 3) throws -> String {
        var lastError: Error = SocketError(kind: .timeout, message: "no attempt made")
        for _ in 0..<max(1, attempts) {
            try send(datagram)
            do {
                return try receive(timeout: timeout)
            } catch let error as SocketError where error.kind == .timeout {
                lastError = error
            }
        }
        throw lastError
    }
}
