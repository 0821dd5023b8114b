import Logging

/// A listening socket on Swoop's own loop (``EpollLoop``): each connection accepted goes to
/// `accepted` as a non-blocking, close-on-exec descriptor. For the master's IPC socket,
/// where a few connections arrive; the clients' listeners have the acceptor thread.
final class EpollListener: EpollWatcher, @unchecked Sendable {
    let fd: CInt
    private let loop: EpollLoop
    private let logger: Logger
    private let accepted: (CInt) -> Void
    private var isClosed = false

    /// `accepted` runs on `loop`.
    init(fd: CInt, loop: EpollLoop, logger: Logger, accepted: @escaping (CInt) -> Void) {
        self.fd = fd
        self.loop = loop
        self.logger = logger
        self.accepted = accepted
    }

    /// Starts accepting; on its loop.
    func start() throws {
        loop.assertInEventLoop()
        try Syscall.setNonBlocking(fd)
        try loop.watch(fd, events: EpollLoop.readable, self)
    }

    func ready(_ events: UInt32) {
        acceptAll()
    }

    private func acceptAll() {
        while !isClosed {
            do {
                guard let connection = try Syscall.accept(fd) else { return }
                accepted(connection)
            } catch {
                // Out of descriptors, say: the watch is edge-triggered, so the connections
                // still waiting are taken in a while rather than left for a new one.
                logger.error("\(error); accepting again in 100 ms")
                _ = loop.scheduleTask(in: .milliseconds(100)) { self.acceptAll() }
                return
            }
        }
    }

    /// Stops accepting and closes the socket; on its loop.
    func close() {
        guard !isClosed else { return }
        isClosed = true
        loop.unwatch(fd)
        Syscall.close(fd)
    }
}
