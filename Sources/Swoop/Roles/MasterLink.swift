#if canImport(Glibc)
import Glibc
#endif
import NIOCore

/// Where a worker's frames to the master go.
protocol MasterOutput: AnyObject, Sendable {
    /// Sends a batch of encoded frames, in order after the batches sent before.
    func send(_ batch: ByteBuffer)
    /// Runs `body` on the loop once everything sent has reached the socket, or cannot.
    func whenSent(_ body: @escaping () -> Void)
}

/// What the worker's end of the link reports to its runtime, on the loop.
protocol MasterLinkDelegate: AnyObject {
    /// A read from the master: whole frames, and the start of the next.
    func linkReceived(_ bytes: ByteBuffer)
    /// Everything readable has been read (the turn's replies may go out now).
    func linkReadDone()
    /// The master closed the connection, or it failed.
    func linkClosed(_ error: Error?)
}

/// The worker's end of its IPC connection on Swoop's own loop (``EpollLoop``): what NIO's
/// channel did for it (read until the socket is empty, hold what a write leaves over until
/// the socket takes more) without the pipeline around each read and write. Touched on its
/// loop only.
final class MasterLink: EpollWatcher, MasterOutput, @unchecked Sendable {
    private let fd: CInt
    private let loop: EpollLoop
    private unowned let delegate: MasterLinkDelegate
    /// What the socket has not taken yet, in order.
    private var unsent = CircularBuffer<ByteBuffer>()
    private var whenAllSent: [() -> Void] = []
    private var closed = false
    /// EPOLLOUT is asked for: a write left bytes over.
    private var waitingForSpace = false
    /// The size of the next read's buffer: doubled when a read fills it, halved when one
    /// fills under a quarter, within 16–64 KiB (below malloc's mmap threshold; a larger
    /// frame comes in several reads).
    private var readSize = 16 * 1024
    private let allocator = ByteBufferAllocator()

    init(fd: CInt, loop: EpollLoop, delegate: MasterLinkDelegate) {
        self.fd = fd
        self.loop = loop
        self.delegate = delegate
    }

    /// Starts watching the socket (non-blocking from here on).
    func start() throws {
        loop.assertInEventLoop()
        let flags = fcntl(fd, F_GETFL)
        _ = try Syscall.retrying("fcntl", "O_NONBLOCK") { fcntl(fd, F_SETFL, flags | O_NONBLOCK) }
        try loop.watch(fd, events: EpollLoop.readable, self)
    }

    func ready(_ events: UInt32) {
        if events & EpollLoop.writable != 0 { drain() }
        if events & ~EpollLoop.writable != 0 { readAll(toTheEnd: events & EpollLoop.hangUp != 0) }
    }

    /// Reads what the socket holds; `toTheEnd`: the master closed its end, so read until
    /// the end of the stream rather than stop at a read that did not fill its buffer.
    private func readAll(toTheEnd: Bool) {
        var readAny = false
        while !closed {
            var buffer = allocator.buffer(capacity: readSize)
            var wouldBlock = false
            do {
                let count = try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: readSize) { space in
                    guard let n = try Syscall.read(fd, into: space) else {
                        wouldBlock = true
                        return 0
                    }
                    return n
                }
                if wouldBlock { break }
                if count == 0 {
                    // The master closed its end: what came before is handled first.
                    if readAny { delegate.linkReadDone() }
                    close(nil)
                    return
                }
            } catch {
                if readAny { delegate.linkReadDone() }
                close(error)
                return
            }
            readAny = true
            // A read that did not fill its buffer emptied the socket: no read to see EAGAIN.
            let drained = buffer.readableBytes < readSize
            if !drained {
                readSize = min(readSize * 2, 64 * 1024)
            } else if buffer.readableBytes < readSize / 4 {
                readSize = max(readSize / 2, 16 * 1024)
            }
            delegate.linkReceived(buffer)
            if drained && !toTheEnd { break }
        }
        if readAny && !closed { delegate.linkReadDone() }
    }

    func send(_ batch: ByteBuffer) {
        guard !closed, batch.readableBytes > 0 else { return }
        unsent.append(batch)
        if unsent.count == 1 { drain() }
    }

    func whenSent(_ body: @escaping () -> Void) {
        if unsent.isEmpty || closed { body() } else { whenAllSent.append(body) }
    }

    /// Writes what waits until the socket takes no more; EPOLLOUT, asked for only then,
    /// brings the loop back.
    private func drain() {
        while !closed, var first = unsent.first {
            let written: Int?
            do {
                written = try first.withUnsafeReadableBytes { try Syscall.write(fd, $0) }
            } catch {
                close(error)
                return
            }
            guard let written else {
                if !waitingForSpace {
                    waitingForSpace = true
                    loop.rewatch(fd, events: EpollLoop.readable | EpollLoop.writable)
                }
                return
            }
            first.moveReaderIndex(forwardBy: written)
            if first.readableBytes == 0 {
                unsent.removeFirst()
            } else {
                unsent[unsent.startIndex] = first
            }
        }
        if unsent.isEmpty && waitingForSpace && !closed {
            waitingForSpace = false
            loop.rewatch(fd, events: EpollLoop.readable)
        }
        if unsent.isEmpty && !whenAllSent.isEmpty {
            let bodies = whenAllSent
            whenAllSent.removeAll()
            for body in bodies { body() }
        }
    }

    private func close(_ error: Error?) {
        guard !closed else { return }
        closed = true
        loop.unwatch(fd)
        Syscall.close(fd)
        unsent.removeAll()
        let bodies = whenAllSent
        whenAllSent.removeAll()
        for body in bodies { body() }
        delegate.linkClosed(error)
    }
}
