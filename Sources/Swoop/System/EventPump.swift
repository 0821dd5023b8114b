#if canImport(Glibc)
import Glibc
#endif
import CSwoop
import NIOConcurrencyHelpers

/// The main thread's loop in every Swoop process: it waits for signals (through a
/// ``SignalPipe``), for work posted from other threads, and for the descriptors its role
/// watches, so that all process-level decisions happen on one thread, in order.
final class EventPump: @unchecked Sendable {
    let signals: SignalPipe
    private let wakeRead: CInt
    private let wakeWrite: CInt
    private let posted = NIOLockedValueBox<[@Sendable () -> Void]>([])

    init(signals: [CInt]) throws {
        self.signals = try SignalPipe(signals)
        var fds: [CInt] = [0, 0]
        _ = try Syscall.retrying("pipe2") { cswoop_pipe(&fds) }
        wakeRead = fds[0]
        wakeWrite = fds[1]
    }

    /// Runs `work` on the main thread soon; callable from any thread.
    func post(_ work: @escaping @Sendable () -> Void) {
        posted.withLockedValue { $0.append(work) }
        var byte: UInt8 = 1
        _ = write(wakeWrite, &byte, 1)
    }

    /// What woke the loop.
    struct Events {
        var signals: [CInt] = []
        var readable: [CInt] = []
        var work: [@Sendable () -> Void] = []
    }

    /// Waits until something happens or `timeoutMs` passes (-1: no timeout).
    func wait(watching extra: [CInt] = [], timeoutMs: Int32) -> Events {
        var events = Events()
        let ready = (try? Syscall.poll([signals.fd, wakeRead] + extra, timeoutMs: timeoutMs)) ?? []
        if ready.contains(signals.fd) { events.signals = signals.drain() }
        if ready.contains(wakeRead) {
            var sink = [UInt8](repeating: 0, count: 256)
            while (sink.withUnsafeMutableBytes { (try? Syscall.read(wakeRead, into: $0)) ?? nil } ?? 0) > 0 {}
        }
        events.work = posted.withLockedValue { work in
            defer { work.removeAll() }
            return work
        }
        events.readable = ready.filter { $0 != signals.fd && $0 != wakeRead }
        return events
    }
}
