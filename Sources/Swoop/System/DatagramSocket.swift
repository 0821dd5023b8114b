#if canImport(Glibc)
import Glibc
#endif
import CSwoop
import NIOCore

/// A bound UDP socket on Swoop's own loop (``EpollLoop``): each datagram received goes to
/// `received` with its sender's address, and datagrams sent wait in order while the
/// socket's buffer is full. Touched on its loop only, except `send`, which hops to it.
final class DatagramSocket: EpollWatcher, @unchecked Sendable {
    typealias Receiver = (_ data: ByteBuffer, _ ip: String, _ port: Int) -> Void

    let fd: CInt
    let loop: EpollLoop
    private let received: Receiver
    private let failed: (Error) -> Void
    /// One datagram's room, reused: a datagram is copied out of it as it is handed over.
    private var buffer = ByteBufferAllocator().buffer(capacity: 65_536)
    /// Datagrams the socket had no room for yet.
    private var unsent = CircularBuffer<(data: ByteBuffer, to: sockaddr_storage)>()
    private var unsentBytes = 0
    /// What may wait for room; a datagram beyond it is dropped (UDP promises no delivery),
    /// so that a peer that floods the replies cannot grow the process.
    let maxUnsentBytes: Int
    private var dropped = 0
    /// EPOLLOUT is asked for: a datagram waits for room.
    private var waitingForSpace = false
    private var isClosed = false

    /// `received` and `failed` run on `loop`.
    init(fd: CInt, loop: EpollLoop, maxUnsentBytes: Int = 4 << 20, received: @escaping Receiver,
         failed: @escaping (Error) -> Void) {
        self.fd = fd
        self.loop = loop
        self.maxUnsentBytes = maxUnsentBytes
        self.received = received
        self.failed = failed
    }

    /// Starts receiving (non-blocking from here on); on its loop.
    func start() throws {
        loop.assertInEventLoop()
        try Syscall.setNonBlocking(fd)
        try loop.watch(fd, events: EPOLLIN.rawValue, self)
    }

    func ready(_ events: UInt32) {
        if events & EpollLoop.writable != 0 { drain() }
        if events & ~EpollLoop.writable != 0 { receiveAll() }
    }

    /// Receives until the socket is empty. A failure (an ICMP error reported on the socket,
    /// say) is logged and the next datagram read: one bad peer does not stop the listener.
    private func receiveAll() {
        var sender = sockaddr_storage()
        while !isClosed {
            buffer.clear()
            var wouldBlock = false
            do {
                _ = try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: 65_536) { space in
                    guard let n = try Syscall.receive(fd, into: space, from: &sender) else {
                        wouldBlock = true
                        return 0
                    }
                    return n
                }
            } catch {
                failed(error)
                // An ICMP error of an earlier send is reported once; anything else would
                // repeat, so the next readiness is waited for.
                if let error = error as? SystemError, [ECONNREFUSED, EHOSTUNREACH, ENETUNREACH].contains(error.errno) {
                    continue
                }
                return
            }
            if wouldBlock { return }
            guard let (ip, port) = Syscall.text(of: sender) else { continue }
            received(buffer, ip, port)
        }
    }

    /// Sends `data` to `ip`:`port`, from any thread.
    func send(_ data: ByteBuffer, toIP ip: String, port: Int) throws {
        guard let address = Syscall.address(ip: ip, port: port) else {
            throw SystemError(call: "sendto", errno: EINVAL, context: "\(ip):\(port) is not a numeric IP address")
        }
        if loop.inEventLoop {
            enqueue(data, to: address)
        } else {
            loop.execute { self.enqueue(data, to: address) }
        }
    }

    private func enqueue(_ data: ByteBuffer, to address: sockaddr_storage) {
        guard !isClosed else { return }
        guard unsentBytes + data.readableBytes <= maxUnsentBytes else {
            dropped += 1
            if dropped == 1 || dropped % 1000 == 0 {
                failed(SystemError(call: "sendto", errno: ENOBUFS, context: "\(dropped) datagram(s) dropped: \(unsentBytes) bytes wait for the socket"))
            }
            return
        }
        let wasEmpty = unsent.isEmpty
        unsent.append((data, address))
        unsentBytes += data.readableBytes
        if wasEmpty { drain() }
    }

    /// Sends what waits until the socket takes no more; EPOLLOUT brings the loop back.
    private func drain() {
        while !isClosed, let (data, address) = unsent.first {
            do {
                let sent = try data.withUnsafeReadableBytes { try Syscall.send(fd, $0, to: address) }
                if sent == nil {
                    if !waitingForSpace {
                        waitingForSpace = true
                        loop.rewatch(fd, events: EPOLLIN.rawValue | EpollLoop.writable)
                    }
                    return
                }
            } catch {
                // This datagram cannot go (no route, too large…); the next may.
                failed(error)
            }
            unsent.removeFirst()
            unsentBytes -= data.readableBytes
        }
        if waitingForSpace && !isClosed {
            waitingForSpace = false
            loop.rewatch(fd, events: EPOLLIN.rawValue)
        }
    }

    /// Stops receiving and closes the socket, dropping what waits; on its loop.
    func close() {
        guard !isClosed else { return }
        isClosed = true
        loop.unwatch(fd)
        Syscall.close(fd)
        unsent.removeAll()
        unsentBytes = 0
    }
}
