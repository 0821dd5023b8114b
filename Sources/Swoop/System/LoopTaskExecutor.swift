import NIOCore

/// A task executor that runs jobs on one NIO event loop.
///
/// A worker's async handlers prefer it, so that after an `await` they resume on the worker's
/// own loop rather than on the global concurrent pool: no thread hop to report a result,
/// no second thread to wake on a two-core machine, and a handler's continuation runs where
/// the worker's state lives.
final class LoopTaskExecutor: TaskExecutor {
    let loop: EventLoop

    init(_ loop: EventLoop) { self.loop = loop }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        loop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}
