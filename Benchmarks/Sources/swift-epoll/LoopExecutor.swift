// The task executor of one event loop thread: async handlers run, and resume, on the loop.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CEpoll
import Synchronization

/// Jobs that the main thread sent to the loops' executors at start (`--async`) and that ran.
let executorsChecked = Atomic<Int>(0)

/// Runs jobs on its event loop's thread.
///
/// `enqueue` puts a job on a queue that the loop drains once per turn, after the turn's
/// events. From the loop's own thread that is all; from any other thread it also writes to
/// the loop's eventfd, so that a loop blocked in `epoll_wait` wakes up for the job.
///
/// A handler started with `Task.immediate(executorPreference:)` on the loop runs inline until
/// its first real suspension; only what comes after a suspension arrives here.
final class LoopExecutor: TaskExecutor, @unchecked Sendable {
    // @unchecked Sendable: `jobs` is behind its mutex, `queued` and `owner` are atomics,
    // `wakeFD` and `spare` never change after init or are used by the loop's thread alone.

    private let jobs = Mutex<[UnownedJob]>([])
    /// How many jobs wait in `jobs`: lets the loop skip the lock on a turn with none.
    private let queued = Atomic<Int>(0)
    /// The loop's thread (`pthread_self()`), once it runs; 0 before.
    private let owner = Atomic<UInt>(0)
    /// Written to wake the loop (registered in its epoll, level-triggered).
    let wakeFD: CInt
    /// The loop's swap partner for `jobs`: drained batches go through it without allocating.
    private var spare: [UnownedJob] = []

    init() {
        wakeFD = eventfd(0, CInt(EFD_NONBLOCK) | CInt(EFD_CLOEXEC))
        precondition(wakeFD >= 0, "swift-epoll: eventfd failed: errno \(errno)")
    }

    deinit { close(wakeFD) }

    /// Called by the loop's thread before it first waits.
    func bindToCurrentThread() {
        owner.store(UInt(pthread_self()), ordering: .releasing)
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        jobs.withLock { queue in
            queue.append(job)
            queued.add(1, ordering: .releasing)
        }
        if owner.load(ordering: .acquiring) != UInt(pthread_self()) {
            // Another thread: the loop may be asleep in epoll_wait.
            var one: UInt64 = 1
            _ = write(wakeFD, &one, MemoryLayout<UInt64>.size)
        }
    }

    /// Called by the loop when the eventfd was readable: resets it.
    func acknowledgeWake() {
        var value: UInt64 = 0
        _ = read(wakeFD, &value, MemoryLayout<UInt64>.size)
    }

    /// Runs every job queued so far (those they enqueue in turn wait for the next turn).
    /// Called by the loop's thread once per turn.
    @inline(__always)
    func runQueuedJobs() {
        guard queued.load(ordering: .acquiring) > 0 else { return }
        runQueuedJobsSlowly()
    }

    @inline(never)
    private func runQueuedJobsSlowly() {
        var batch = spare
        spare = []
        jobs.withLock { queue in
            swap(&queue, &batch)
            queued.store(0, ordering: .relaxed)
        }
        let executor = asUnownedTaskExecutor()
        for job in batch { job.runSynchronously(on: executor) }
        batch.removeAll(keepingCapacity: true)
        spare = batch
    }
}
