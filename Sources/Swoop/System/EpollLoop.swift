#if canImport(Glibc)
import Glibc
#endif
import Atomics
import CSwoop
import Foundation
import NIOConcurrencyHelpers
import NIOCore

/// Told what a watched descriptor is ready for, on its loop's thread.
protocol EpollWatcher: AnyObject {
    /// `events`: the `EPOLLIN`, `EPOLLOUT`, `EPOLLRDHUP`, `EPOLLHUP`, `EPOLLERR` bits that fired.
    func ready(_ events: UInt32)
}

/// An event loop of Swoop's own on epoll, where NIO's channel pipeline costs more per
/// request than the targets leave (Benchmarks/README.md, "A loop of our own").
///
/// It is a NIO `EventLoop` (tasks, timers, promises, and through `LoopTaskExecutor` the
/// continuations of async handlers run on it as on NIO's loops), and it watches raw
/// descriptors for their owners, edge-triggered, rather than hosting NIO channels. Work
/// posted from another thread wakes it through an eventfd, written only while the loop
/// sleeps in `epoll_wait`.
final class EpollLoop: EventLoop, @unchecked Sendable {
    private let epoll: CInt
    private let wake: CInt
    /// The thread running `run()`: set before `start` returns it, so other threads read it
    /// after it was written.
    private var ownerThread: pthread_t?

    /// Tasks posted from any thread, and whether the loop is (about to be) asleep.
    private struct Inbox {
        var tasks: [@Sendable () -> Void] = []
        var sleeping = false
        var stopping = false
    }
    private let inbox = NIOLockedValueBox(Inbox())

    // On the loop's thread only.
    /// By descriptor: descriptors are small numbers, reused lowest first, so an array indexed
    /// by them is dense, and a lookup per event costs no hashing.
    @exclusivity(unchecked) private var watchers: [EpollWatcher?] = []
    @exclusivity(unchecked) private var timers = TimerHeap()
    @exclusivity(unchecked) private var timerSequence: UInt64 = 0
    /// Cancelled timers still in the heap.
    @exclusivity(unchecked) private var cancelledTimers = 0
    @exclusivity(unchecked) private var draining: [@Sendable () -> Void] = []
    private var shutdownCallbacks: [(DispatchQueue, @Sendable (Error?) -> Void)] = []
    /// The buffers its sockets read into: the n-th read of a turn takes the n-th and gives it
    /// back after. A read's packets may be kept until the turn's handlers have run (the
    /// runners come after the reads), so each read of a turn needs memory of its own; by the
    /// next turn the handlers are done and each buffer's memory is free to reuse (no
    /// allocation per read). A buffer still shared (a handler suspended with its packet)
    /// is replaced by `clear`'s copy; the old memory stays with the packet.
    @exclusivity(unchecked) private var readBuffers: [ByteBuffer] = []
    @exclusivity(unchecked) private var readsThisTurn = 0
    /// Reads of a turn beyond this many allocate as they go.
    private static let maxReadBuffers = 64

    /// The buffer for the next read of this turn (empty when it has none yet).
    func takeReadBuffer() -> ByteBuffer {
        guard readsThisTurn < readBuffers.count else { return ByteBuffer() }
        return readBuffers.withUnsafeMutableBufferPointer { buffers in
            // Moved out, so that the reader holds the only reference while it writes.
            var taken = ByteBuffer()
            swap(&taken, &buffers[readsThisTurn])
            return taken
        }
    }

    /// Gives back the buffer `takeReadBuffer` returned, after the read.
    func giveBackReadBuffer(_ buffer: ByteBuffer) {
        if readsThisTurn < readBuffers.count {
            readBuffers[readsThisTurn] = buffer
        } else if readBuffers.count < Self.maxReadBuffers {
            readBuffers.append(buffer)
        }
        readsThisTurn += 1
    }

    init() throws {
        epoll = try Syscall.retrying("epoll_create1") { epoll_create1(CInt(EPOLL_CLOEXEC)) }
        do {
            wake = try Syscall.retrying("eventfd") { eventfd(0, CInt(EFD_NONBLOCK | EFD_CLOEXEC)) }
        } catch {
            Syscall.close(epoll)
            throw error
        }
        var event = epoll_event(events: EPOLLIN.rawValue, data: epoll_data_t(fd: wake))
        _ = try Syscall.retrying("epoll_ctl", "eventfd") { epoll_ctl(epoll, EPOLL_CTL_ADD, wake, &event) }
    }

    deinit {
        Syscall.close(wake)
        Syscall.close(epoll)
    }

    /// Starts a thread named `name` that runs the loop until it is shut down.
    static func start(name: String) throws -> EpollLoop {
        let loop = try EpollLoop()
        let started = ConditionLock(value: false)
        let thread = Thread {
            _ = cswoop_set_thread_name(name)
            started.lock()
            loop.ownerThread = pthread_self()
            started.unlock(withValue: true)
            loop.run()
        }
        thread.start()
        started.lock(whenValue: true)
        started.unlock()
        return loop
    }

    // MARK: Descriptors

    /// The events a watcher may ask for.
    static let readable = EPOLLIN.rawValue | EPOLLRDHUP.rawValue
    static let writable = EPOLLOUT.rawValue
    /// The peer closed its end, or the descriptor failed (reported whether asked for or not).
    static let hangUp = EPOLLRDHUP.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue

    /// Watches `fd` for `events` (edge-triggered: the watcher reads or writes until EAGAIN).
    func watch(_ fd: CInt, events: UInt32, _ watcher: EpollWatcher) throws {
        assertInEventLoop()
        var event = epoll_event(events: events | EPOLLET.rawValue, data: epoll_data_t(fd: fd))
        _ = try Syscall.retrying("epoll_ctl", "add fd \(fd)") { epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &event) }
        let index = Int(fd)
        if index >= watchers.count {
            watchers.append(contentsOf: repeatElement(nil, count: max(index + 1, watchers.count * 2) - watchers.count))
        }
        watchers[index] = watcher
    }

    /// Changes what `fd` is watched for (a writer asks for `writable` only while it has
    /// bytes the socket did not take: an edge-triggered EPOLLOUT otherwise wakes the loop
    /// each time the peer reads).
    func rewatch(_ fd: CInt, events: UInt32) {
        assertInEventLoop()
        var event = epoll_event(events: events | EPOLLET.rawValue, data: epoll_data_t(fd: fd))
        _ = epoll_ctl(epoll, EPOLL_CTL_MOD, fd, &event)
    }

    /// Stops watching `fd` (before it is closed: a closed descriptor leaves epoll by itself
    /// only once no duplicate of it is open).
    func unwatch(_ fd: CInt) {
        assertInEventLoop()
        guard Int(fd) < watchers.count, watchers[Int(fd)] != nil else { return }
        watchers[Int(fd)] = nil
        _ = epoll_ctl(epoll, EPOLL_CTL_DEL, fd, nil)
    }

    // MARK: The loop

    /// Runs the loop on the calling thread until `shutdownGracefully`.
    func run() {
        if ownerThread == nil { ownerThread = pthread_self() }
        var events = [epoll_event](repeating: epoll_event(), count: 64)
        while true {
            let timeout = nextTimeout()
            let ready = events.withUnsafeMutableBufferPointer { buffer in
                epoll_wait(epoll, buffer.baseAddress, CInt(buffer.count), timeout)
            }
            readsThisTurn = 0
            if ready > 0 {
                for index in 0..<Int(ready) {
                    let event = events[index]
                    if event.data.fd == wake {
                        var count: UInt64 = 0
                        _ = Glibc.read(wake, &count, 8)
                    } else if Int(event.data.fd) < watchers.count, let watcher = watchers[Int(event.data.fd)] {
                        watcher.ready(event.events)
                    }
                }
            }
            runDueTimers()
            if runPostedTasks() { break }
        }
        finishShutdown()
    }

    /// Milliseconds `epoll_wait` may sleep: 0 when tasks wait, else until the next timer.
    private func nextTimeout() -> CInt {
        let idle = inbox.withLockedValue { inbox -> Bool in
            inbox.sleeping = inbox.tasks.isEmpty && !inbox.stopping
            return inbox.sleeping
        }
        guard idle else { return 0 }
        guard let first = timers.first else { return -1 }
        let now = NIODeadline.now()
        guard first.deadline > now else { return 0 }
        let nanoseconds = first.deadline.uptimeNanoseconds - now.uptimeNanoseconds
        return CInt(clamping: (nanoseconds + 999_999) / 1_000_000)
    }

    private func runDueTimers() {
        guard !timers.isEmpty else { return }
        let now = NIODeadline.now()
        while let first = timers.first, first.deadline <= now {
            let timer = timers.removeFirst()
            if timer.settled {
                cancelledTimers -= 1
            } else {
                timer.settled = true
                timer.body()
            }
        }
    }

    /// Runs what was posted; true when the loop is to stop.
    private func runPostedTasks() -> Bool {
        var stopping = false
        inbox.withLockedValue { inbox in
            // Awake since epoll_wait returned; from here tasks posted meanwhile wait for the
            // next turn without a wake-up (until then, the first of them may write one).
            inbox.sleeping = false
            swap(&draining, &inbox.tasks)
            stopping = inbox.stopping && draining.isEmpty
        }
        for task in draining { task() }
        draining.removeAll(keepingCapacity: true)
        return stopping
    }

    private func finishShutdown() {
        for fd in watchers.indices where watchers[fd] != nil { unwatch(CInt(fd)) }
        while !timers.isEmpty {
            let timer = timers.removeFirst()
            if !timer.settled { timer.fail(EventLoopError.shutdown) }
        }
        let callbacks = shutdownCallbacks
        shutdownCallbacks.removeAll()
        for (queue, callback) in callbacks { queue.async { callback(nil) } }
    }

    // MARK: EventLoop

    var inEventLoop: Bool {
        guard let mine = ownerThread else { return false }
        return pthread_equal(mine, pthread_self()) != 0
    }

    func execute(_ task: @escaping @Sendable () -> Void) {
        // Posted by the loop's own thread, the task needs no wake-up: the loop is awake and
        // runs it at the end of this turn. (The inbox still says "asleep" until the turn's
        // I/O is done, and waking it anyway wrote and read the eventfd in most turns.)
        let onLoop = inEventLoop
        let wakeUp = inbox.withLockedValue { inbox -> Bool in
            inbox.tasks.append(task)
            defer { inbox.sleeping = false }
            return inbox.sleeping && !onLoop
        }
        if wakeUp { signalWake() }
    }

    private func signalWake() {
        wakeUps.wrappingIncrement(ordering: .relaxed)
        var one: UInt64 = 1
        _ = Glibc.write(wake, &one, 8)
    }

    /// Writes to the eventfd so far (tests: the loop's own posts must not make any).
    private let wakeUps = ManagedAtomic(0)
    var wakeUpsForTesting: Int { wakeUps.load(ordering: .relaxed) }
    /// The loop is (about to be) asleep in `epoll_wait` with nothing posted (tests).
    var isAsleepForTesting: Bool { inbox.withLockedValue { $0.sleeping } }

    @discardableResult
    func scheduleTask<T>(deadline: NIODeadline, _ task: @escaping @Sendable () throws -> T) -> Scheduled<T> {
        let promise: EventLoopPromise<T> = makePromise()
        let timer = Timer(deadline: deadline, fail: { promise.fail($0) }) {
            // On the loop: the value does not cross threads.
            do { promise.assumeIsolatedUnsafeUnchecked().succeed(try task()) } catch { promise.fail(error) }
        }
        if inEventLoop {
            add(timer)
        } else {
            execute { self.add(timer) }
        }
        return Scheduled(promise: promise) {
            self.execute {
                guard !timer.settled else { return }   // it ran already, or was cancelled
                timer.settled = true
                self.cancelledTimers += 1
                // A cancelled timer waits in the heap for its deadline; when they are most
                // of it (timeouts cancelled by every request), they go at once.
                if self.cancelledTimers > 64 && self.cancelledTimers * 2 > self.timers.count {
                    self.timers.removeCancelled()
                    self.cancelledTimers = 0
                }
                promise.fail(EventLoopError.cancelled)
            }
        }
    }

    @discardableResult
    func scheduleTask<T>(in delay: TimeAmount, _ task: @escaping @Sendable () throws -> T) -> Scheduled<T> {
        scheduleTask(deadline: .now() + delay, task)
    }

    private func add(_ timer: Timer) {
        timerSequence &+= 1
        timer.sequence = timerSequence
        timers.insert(timer)
    }

    func preconditionInEventLoop(file: StaticString, line: UInt) {
        precondition(inEventLoop, "not on this EpollLoop's thread", file: file, line: line)
    }

    func preconditionNotInEventLoop(file: StaticString, line: UInt) {
        precondition(!inEventLoop, "on this EpollLoop's thread", file: file, line: line)
    }

    func shutdownGracefully(queue: DispatchQueue, _ callback: @escaping @Sendable (Error?) -> Void) {
        execute { self.shutdownCallbacks.append((queue, callback)) }
        let wakeUp = inbox.withLockedValue { inbox -> Bool in
            inbox.stopping = true
            return inbox.sleeping
        }
        if wakeUp { signalWake() }
    }

    /// Timers in the heap, cancelled or not (tests: the cancelled ones must not pile up).
    var pendingTimersForTesting: Int { timers.count }

    // MARK: Timers

    /// A scheduled task; a class so that its cancellation reaches it in the heap.
    private final class Timer: @unchecked Sendable {
        let deadline: NIODeadline
        var sequence: UInt64 = 0
        /// It ran, or was cancelled: nothing more to do for it.
        var settled = false
        let body: () -> Void
        /// Fails its promise: the loop shut down before it came due.
        let fail: (Error) -> Void
        init(deadline: NIODeadline, fail: @escaping (Error) -> Void, body: @escaping () -> Void) {
            self.deadline = deadline
            self.fail = fail
            self.body = body
        }
        /// Earlier deadline first; the order of scheduling between equal ones.
        func precedes(_ other: Timer) -> Bool {
            deadline != other.deadline ? deadline < other.deadline : sequence < other.sequence
        }
    }

    /// A binary min-heap of timers.
    private struct TimerHeap {
        private var items: [Timer] = []
        var isEmpty: Bool { items.isEmpty }
        var count: Int { items.count }
        var first: Timer? { items.first }

        mutating func removeCancelled() {
            let kept = items.filter { !$0.settled }
            items.removeAll(keepingCapacity: true)
            for timer in kept { insert(timer) }
        }

        mutating func insert(_ timer: Timer) {
            items.append(timer)
            var child = items.count - 1
            while child > 0 {
                let parent = (child - 1) / 2
                guard items[child].precedes(items[parent]) else { break }
                items.swapAt(child, parent)
                child = parent
            }
        }

        mutating func removeFirst() -> Timer {
            let first = items[0]
            let last = items.removeLast()
            guard !items.isEmpty else { return first }
            items[0] = last
            var parent = 0
            while true {
                let left = 2 * parent + 1, right = left + 1
                var smallest = parent
                if left < items.count, items[left].precedes(items[smallest]) { smallest = left }
                if right < items.count, items[right].precedes(items[smallest]) { smallest = right }
                guard smallest != parent else { break }
                items.swapAt(parent, smallest)
                parent = smallest
            }
            return first
        }
    }
}
