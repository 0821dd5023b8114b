#if canImport(Glibc)
import Glibc
#endif
import NIOCore

/// What a socket on Swoop's own loop reports to its owner, on the loop.
protocol EpollSocketDelegate: AnyObject {
    /// A read: whatever bytes the socket had (a stream, not cut into messages).
    func socketReceived(_ bytes: ByteBuffer)
    /// Everything readable has been read (the turn's replies may go out now).
    func socketReadDone()
    /// The socket is closed: by the peer, by a failure (`error`) or by `close(reset:)`.
    func socketClosed(_ error: Error?)
    /// The peer shut down its sending side, on a socket that allows it: nothing more will
    /// be read, and writes go on.
    func socketInputClosed()
}

extension EpollSocketDelegate {
    func socketInputClosed() {}
}

/// A file being sent ended before the range promised: it was truncated under the sender.
struct FileTruncatedError: Error, CustomStringConvertible {
    var description: String { "a file being sent was truncated" }
}

/// A connected stream socket on Swoop's own loop (``EpollLoop``): what NIO's channel does for
/// one (read until the socket is empty, hold what a write leaves over until the socket takes
/// more) without the pipeline around each read and write. The worker's IPC link and, in base
/// mode, the worker's client connections are such sockets. Touched on its loop only.
///
/// Its hot state, here and in the other types of a loop's request path, is marked
/// `@exclusivity(unchecked)`: each access is short and calls nothing that touches the same
/// property, and Swift's run-time exclusivity check on a class's stored property (about 60
/// instructions: `swift_beginAccess` and its access set) took a fifth of a base-mode echo's
/// instructions (Benchmarks/README.md).
final class EpollSocket: EpollWatcher, @unchecked Sendable {
    let fd: CInt
    private let loop: EpollLoop
    /// Its owner, which closes it (unwatching it) before it goes. Checked in debug builds
    /// (a use after the owner went traps); unchecked in release, where each checked use
    /// cost a strong retain and its release, several per request (see ``HTTPSession``).
    #if DEBUG
    private unowned let delegate: EpollSocketDelegate
    #else
    private unowned(unsafe) let delegate: EpollSocketDelegate
    #endif
    /// What the socket has not taken yet, in order.
    @exclusivity(unchecked) private var unsent = CircularBuffer<Output>()
    private enum Output {
        case bytes(ByteBuffer)
        /// A range of a file, sent with sendfile(2); the socket owns the descriptor.
        case file(CInt, offset: Int, end: Int)
    }
    /// The bytes in `unsent`, not counting files (they are not held in memory).
    @exclusivity(unchecked) private(set) var unsentBytes = 0
    private var whenAllSent: [() -> Void] = []
    @exclusivity(unchecked) private(set) var isClosed = false
    /// False while `stopReading` holds: what arrives stays in the socket.
    @exclusivity(unchecked) private var reading = true
    /// The peer shut down its sending side (only seen where half-closure is allowed).
    @exclusivity(unchecked) private var inputClosed = false
    /// A read of 0 (the peer's FIN) is reported to the delegate, and writing goes on, rather
    /// than closing the socket: an HTTP client may send its last request and shut down its end.
    private let allowsHalfClosure: Bool
    /// EPOLLOUT is asked for: a write left bytes over.
    @exclusivity(unchecked) private var waitingForSpace = false
    /// The size of the next read: doubled when a read fills it, halved when one fills under
    /// a quarter, within `readSizes` (64 KiB at most: below malloc's mmap threshold; a larger
    /// message comes in several reads). The memory is the loop's (`EpollLoop.readBuffer`).
    @exclusivity(unchecked) private var readSize: Int
    private let readSizes: ClosedRange<Int>

    init(fd: CInt, loop: EpollLoop, delegate: EpollSocketDelegate, readSizes: ClosedRange<Int> = 16_384...65_536,
         allowsHalfClosure: Bool = false) {
        self.fd = fd
        self.loop = loop
        self.delegate = delegate
        self.readSizes = readSizes
        self.allowsHalfClosure = allowsHalfClosure
        readSize = readSizes.lowerBound
    }

    /// Starts watching the socket (non-blocking from here on).
    func start() throws {
        loop.assertInEventLoop()
        try Syscall.setNonBlocking(fd)
        try loop.watch(fd, events: EpollLoop.readable, self)
    }

    func ready(_ events: UInt32) {
        if events & EpollLoop.writable != 0 { drain() }
        if events & ~EpollLoop.writable != 0 && reading { readAll(toTheEnd: events & EpollLoop.hangUp != 0) }
    }

    /// Reads what the socket holds; `toTheEnd`: the peer closed its end, so read until the
    /// end of the stream rather than stop at a read that did not fill its buffer.
    private func readAll(toTheEnd: Bool) {
        var readAny = false
        while !isClosed && reading {
            // Not the loop's buffer when it is much larger than this socket reads (the IPC
            // link's 16 KiB, in a base-mode worker whose clients read 2 KiB): a reply that is
            // a slice of the read, waiting for a client that does not read, would hold all of
            // it while `bufferOutputSize` counts only the slice.
            var buffer = loop.takeReadBuffer()
            if buffer.capacity > 4 * readSize { buffer = ByteBuffer() }
            buffer.clear(minimumCapacity: readSize)
            var offered = 0
            var wouldBlock = false
            do {
                let count = try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: readSize) { space in
                    // At most the adaptive size, however large the shared buffer has grown.
                    let space = UnsafeMutableRawBufferPointer(rebasing: space.prefix(readSize))
                    offered = space.count
                    guard let n = try Syscall.receive(fd, into: space) else {
                        wouldBlock = true
                        return 0
                    }
                    return n
                }
                if wouldBlock {
                    giveBack(buffer)
                    break
                }
                if count == 0 {
                    // The peer closed its end: what came before is handled first.
                    giveBack(buffer)
                    if readAny { delegate.socketReadDone() }
                    if allowsHalfClosure {
                        inputClosed = true
                        reading = false
                        delegate.socketInputClosed()
                    } else {
                        close(nil)
                    }
                    return
                }
            } catch {
                giveBack(buffer)
                if readAny { delegate.socketReadDone() }
                close(error)
                return
            }
            readAny = true
            // A read that did not fill its space emptied the socket: no read to see EAGAIN.
            let drained = buffer.readableBytes < offered
            if !drained {
                readSize = min(readSize * 2, readSizes.upperBound)
            } else if buffer.readableBytes < readSize / 4 {
                readSize = max(readSize / 2, readSizes.lowerBound)
            }
            delegate.socketReceived(buffer)
            giveBack(buffer)
            if drained && !toTheEnd { break }
        }
        if readAny && !isClosed { delegate.socketReadDone() }
    }

    /// Returns the read's memory to the loop, unless it is large: a slice kept of it (a
    /// partial packet waiting for the rest) would hold all of it, for each connection.
    private func giveBack(_ buffer: ByteBuffer) {
        loop.giveBackReadBuffer(buffer.capacity <= 16_384 ? buffer : ByteBuffer())
    }

    /// Queues bytes behind those queued before, to go out at the next `flush`.
    func enqueue(_ bytes: ByteBuffer) {
        guard !isClosed, bytes.readableBytes > 0 else { return }
        unsent.append(.bytes(bytes))
        unsentBytes += bytes.readableBytes
    }

    /// Queues `file`'s bytes from `offset` to `end`, sent with sendfile(2) as the socket takes
    /// them; the socket owns the descriptor and closes it once sent or dropped. A file cut
    /// short before `end` closes the socket with ``FileTruncatedError``.
    func enqueue(file: CInt, offset: Int, end: Int) {
        guard !isClosed, offset < end else { return Syscall.close(file) }
        unsent.append(.file(file, offset: offset, end: end))
    }

    /// Writes what is queued, as much as the socket takes now; the rest when it has room.
    func flush() {
        if !unsent.isEmpty && !waitingForSpace { drain() }
    }

    /// Writes `bytes` after what waits; what the socket does not take waits for room. When
    /// nothing waits (the usual case), they go straight to the socket, without a pass through
    /// the queue.
    func send(_ bytes: ByteBuffer) {
        guard isIdle else {
            enqueue(bytes)
            flush()
            return
        }
        guard bytes.readableBytes > 0, let written = writeOnce(bytes) else { return }
        if written < bytes.readableBytes {
            var rest = bytes
            rest.moveReaderIndex(forwardBy: written)
            enqueue(rest)
            waitForSpace()
        }
    }

    /// One send(2) of `bytes`: how many the socket took (0: none, it is full), or nil when
    /// the write failed, which closed the socket.
    private func writeOnce(_ bytes: ByteBuffer) -> Int? {
        do {
            return try bytes.withUnsafeReadableBytes { try Syscall.send(fd, $0) } ?? 0
        } catch {
            close(error)
            return nil
        }
    }

    /// Nothing waits to be written, and the socket is open.
    var isIdle: Bool { unsent.isEmpty && !waitingForSpace && !isClosed }

    /// Runs `body` on the loop once everything queued has reached the socket, or cannot.
    func whenSent(_ body: @escaping () -> Void) {
        if unsent.isEmpty || isClosed { body() } else { whenAllSent.append(body) }
    }

    /// Reads nothing more until `resumeReading` (what arrives stays in the socket); writes go on.
    func stopReading() {
        reading = false
    }

    /// Reads again after `stopReading`, starting with what arrived meanwhile.
    func resumeReading() {
        guard !reading, !inputClosed, !isClosed else { return }
        reading = true
        // Re-arming the edge-triggered watch reports what is already there.
        rearm()
    }

    /// Sends a FIN once everything queued has been sent; reading goes on.
    func shutdownOutput() {
        whenSent { [self] in
            guard !isClosed else { return }
            do { try Syscall.shutdownOutput(fd) } catch { close(error) }
        }
    }

    /// Closes the socket; `reset` sends a RST and drops what is unsent (SO_LINGER 0).
    func close(reset: Bool) {
        guard !isClosed else { return }
        if reset {
            try? Syscall.setSocketOption(fd, SOL_SOCKET, SO_LINGER, linger(l_onoff: 1, l_linger: 0))
        }
        close(nil)
    }

    /// Writes what waits until the socket takes no more; EPOLLOUT, asked for only then,
    /// brings the loop back.
    private func drain() {
        while !isClosed, let first = unsent.first {
            switch first {
            case .bytes(var bytes):
                guard let written = writeOnce(bytes) else { return }
                guard written > 0 else { return waitForSpace() }
                unsentBytes -= written
                bytes.moveReaderIndex(forwardBy: written)
                if bytes.readableBytes == 0 {
                    unsent.removeFirst()
                } else {
                    unsent[unsent.startIndex] = .bytes(bytes)
                }
            case .file(let file, var offset, let end):
                let sent: Int?
                do {
                    sent = try Syscall.sendfile(fd, file, offset: &offset, count: min(end - offset, 1 << 30))
                } catch {
                    close(error)
                    return
                }
                guard let sent else { return waitForSpace() }
                // sendfile gives 0 at the end of the file: it was cut short under us, and the
                // length promised cannot be met (nginx: "file was truncated").
                if sent == 0 { return close(FileTruncatedError()) }
                if offset >= end {
                    Syscall.close(file)
                    unsent.removeFirst()
                } else {
                    unsent[unsent.startIndex] = .file(file, offset: offset, end: end)
                }
            }
        }
        if unsent.isEmpty && waitingForSpace && !isClosed {
            waitingForSpace = false
            rearm()
        }
        if unsent.isEmpty && !whenAllSent.isEmpty {
            let bodies = whenAllSent
            whenAllSent.removeAll()
            for body in bodies { body() }
        }
    }

    /// The socket took less than was offered: EPOLLOUT brings the loop back when it has room.
    private func waitForSpace() {
        guard !waitingForSpace else { return }
        waitingForSpace = true
        rearm()
    }

    /// Watches for what the socket waits for now: input unless reading stopped, room while
    /// a write waits for it.
    private func rearm() {
        loop.rewatch(fd, events: (reading ? EpollLoop.readable : 0) | (waitingForSpace ? EpollLoop.writable : 0))
    }

    private func close(_ error: Error?) {
        guard !isClosed else { return }
        isClosed = true
        loop.unwatch(fd)
        Syscall.close(fd)
        for case .file(let file, _, _) in unsent { Syscall.close(file) }
        unsent.removeAll()
        unsentBytes = 0
        let bodies = whenAllSent
        whenAllSent.removeAll()
        for body in bodies { body() }
        delegate.socketClosed(error)
    }
}
