#if canImport(Glibc)
import Glibc
#endif
import CSwoop
import Foundation
import Logging

/// The master's main reactor: one thread that accepts connections on every TCP and Unix
/// listener and hands each to a reactor (the least loaded one).
///
/// It accepts by hand rather than through NIO's ServerBootstrap because the bootstrap
/// picks the child loop round-robin, while Swoole's rule, kept here, is the reactor with the
/// fewest connections. Doing it by hand also lets it back off when the process runs out of
/// descriptors instead of spinning.
final class Acceptor: @unchecked Sendable {
    /// (listening descriptor, listener index)
    private let listeners: [(fd: CInt, index: Int)]
    private let wakeRead: CInt
    private let wakeWrite: CInt
    private let logger: Logger
    private let onAccept: @Sendable (CInt, Int) -> Void
    private var thread: Thread?
    private let finished = DispatchSemaphore(value: 0)

    init(listeners: [(fd: CInt, index: Int)], logger: Logger, onAccept: @escaping @Sendable (CInt, Int) -> Void) throws {
        self.listeners = listeners
        self.logger = logger
        self.onAccept = onAccept
        var fds: [CInt] = [0, 0]
        _ = try Syscall.retrying("pipe2") { cswoop_pipe(&fds) }
        wakeRead = fds[0]
        wakeWrite = fds[1]
        for listener in listeners { try Syscall.setNonBlocking(listener.fd) }
    }

    func start() {
        let thread = Thread { [self] in
            // Named from inside: Foundation does not pass `Thread.name` to the system on
            // Linux, and tests (and `top -H`) find the acceptor by this name.
            _ = cswoop_set_thread_name("swoop-acceptor")
            self.loop()
            self.finished.signal()
        }
        self.thread = thread
        thread.start()
    }

    /// Stops accepting and closes the listening sockets; returns once the thread is done.
    func stop() {
        var byte: UInt8 = 1
        _ = write(wakeWrite, &byte, 1)
        if thread != nil { finished.wait() }
        thread = nil
    }

    private func loop() {
        let fds = listeners.map(\.fd)
        var backoffMs: Int32 = 0
        while true {
            let ready: [CInt]
            do {
                // While backing off, only the wake-up pipe is watched: the listener that ran
                // out of descriptors is still readable, and polling it would return at once.
                ready = backoffMs > 0 ? try Syscall.poll([wakeRead], timeoutMs: backoffMs)
                                      : try Syscall.poll([wakeRead] + fds, timeoutMs: -1)
            } catch {
                logger.error("acceptor: \(error)")
                continue
            }
            if ready.contains(wakeRead) { break }
            // After a back-off (or an interrupted poll) every listener is tried again.
            let retryAll = ready.isEmpty
            backoffMs = 0
            for listener in listeners where retryAll || ready.contains(listener.fd) {
                // Up to 64 connections per wake-up per listener, as Swoole does, so one busy
                // port cannot starve the others.
                for _ in 0..<64 {
                    do {
                        guard let fd = try Syscall.accept(listener.fd) else { break }
                        onAccept(fd, listener.index)
                    } catch let error as SystemError where [EMFILE, ENFILE, ENOBUFS, ENOMEM].contains(error.errno) {
                        logger.error("\(error); pausing accepts for 100 ms")
                        backoffMs = 100
                        break
                    } catch {
                        logger.error("listener \(listener.index): \(error)")
                        break
                    }
                }
            }
        }
        for listener in listeners { Syscall.close(listener.fd) }
    }
}
