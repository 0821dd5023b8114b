import Logging
import NIOConcurrencyHelpers
import NIOCore

/// The master's side of task workers: which task worker holds which task for whom, and the
/// tasks waiting for a free task worker.
///
/// Every task and every result passes through here, so the accounting is exact: a task
/// worker that dies fails each task it held at once (Swoole leaves those callers waiting,
/// swoole#425), and a result is forwarded only to the generation of the worker that asked,
/// never to a newer process in the same slot (swoole#1328).
final class TaskScheduler: @unchecked Sendable {
    /// A task on its way: the frame to forward and the worker process that asked for it.
    struct Pending {
        var id: UInt64
        var source: WorkerEndpoint
        var target: Int
        var data: ByteBuffer
    }

    private let lock = NIOLock()
    private let logger: Logger
    /// Tasks a task worker may hold at once.
    private let concurrency: Int
    /// The current generation of each task worker slot.
    private var workers: [Int: WorkerEndpoint] = [:]
    /// Tasks each task worker process holds, by process.
    private var inHand: [ObjectIdentifier: [UInt64: Pending]] = [:]
    private var queue = CircularBuffer<Pending>()
    private var rotation = 0

    init(logger: Logger, concurrency: Int) {
        self.logger = logger
        self.concurrency = concurrency
    }

    /// A worker asked for a task to be run.
    func submit(id: UInt64, from source: WorkerEndpoint, target: Int, data: ByteBuffer) {
        let task = Pending(id: id, source: source, target: target, data: data)
        // Sends are queued on the task worker's loop under the lock: a task worker that is
        // being retired must not get a task after the acknowledgement that promised it none
        // (queued on the same loop once the lock is free). They are written there, never
        // inline: a write that fails closes the channel at once, and its close handler
        // takes this lock again.
        lock.withLock {
            guard let worker = pick(for: target) else {
                queue.append(task)
                return
            }
            inHand[ObjectIdentifier(worker), default: [:]][id] = task
            worker.sendFromLoop(.task(id: id, source: source.workerId, target: target, data: data))
        }
    }

    /// The free task worker with the fewest tasks in hand (or the named one, when free).
    private func pick(for target: Int) -> WorkerEndpoint? {
        if target >= 0 {
            guard let worker = workers[target], load(worker) < concurrency else { return nil }
            return worker
        }
        // Ties go round the task workers in turn, so that idle ones share the work evenly.
        let ids = workers.keys.sorted()
        guard !ids.isEmpty else { return nil }
        rotation &+= 1
        var best: WorkerEndpoint?
        var bestLoad = Int.max
        for step in 0..<ids.count {
            let worker = workers[ids[(rotation + step) % ids.count]]!
            let current = load(worker)
            if current < concurrency && current < bestLoad { best = worker; bestLoad = current }
        }
        return best
    }

    private func load(_ worker: WorkerEndpoint) -> Int { inHand[ObjectIdentifier(worker)]?.count ?? 0 }

    /// The tasks a task worker holds now, for `stats()`.
    func held(by worker: WorkerEndpoint) -> Int { lock.withLock { load(worker) } }

    /// A task worker finished a task: forward the result to the process that asked, then
    /// give the task worker its next task.
    func complete(id: UInt64, by worker: WorkerEndpoint, status: TaskStatus, data: ByteBuffer) {
        let task = lock.withLock { inHand[ObjectIdentifier(worker)]?.removeValue(forKey: id) }
        if let task {
            worker.served.wrappingIncrement(ordering: .relaxed)
            deliver(task, status: status, data: data)
        } else {
            logger.warning("task worker \(worker.workerId) finished task \(id), which it did not hold")
        }
        feed(worker)
    }

    private func deliver(_ task: Pending, status: TaskStatus, data: ByteBuffer) {
        guard task.source.link.isOpen else {
            logger.info("the result of task \(task.id) is dropped: worker \(task.source.workerId) (pid \(task.source.pid)) that asked for it is gone")
            return
        }
        task.source.send(.taskResult(id: task.id, source: task.source.workerId, status: status, data: data))
    }

    /// Hands queued tasks to `worker` while it has room.
    private func feed(_ worker: WorkerEndpoint) {
        lock.withLock {
            while workers[worker.workerId] === worker, load(worker) < concurrency,
                  let index = queue.firstIndex(where: { $0.target < 0 || $0.target == worker.workerId }) {
                let task = queue.remove(at: index)
                inHand[ObjectIdentifier(worker), default: [:]][task.id] = task
                worker.sendFromLoop(.task(id: task.id, source: task.source.workerId, target: task.target, data: task.data))
            }
        }
    }

    /// A task worker (a new generation) is ready.
    func register(_ worker: WorkerEndpoint) {
        lock.withLock { workers[worker.workerId] = worker }
        feed(worker)
    }

    /// A task worker is stopping: it finishes what it holds and gets nothing more.
    func retire(_ worker: WorkerEndpoint) {
        lock.withLock {
            if workers[worker.workerId] === worker { workers[worker.workerId] = nil }
        }
    }

    /// A task worker's connection closed: every task it held fails now, with an error the
    /// caller can see.
    func remove(_ worker: WorkerEndpoint) {
        let lost = lock.withLock { () -> [Pending] in
            if workers[worker.workerId] === worker { workers[worker.workerId] = nil }
            return Array((inHand.removeValue(forKey: ObjectIdentifier(worker)) ?? [:]).values)
        }
        if !lost.isEmpty {
            logger.warning("task worker \(worker.workerId) (pid \(worker.pid)) died holding \(lost.count) task(s); failing them")
        }
        for task in lost {
            deliver(task, status: .workerDied, data: ByteBuffer(string: "task worker \(worker.workerId) died"))
        }
    }

    /// The server stops: queued tasks will never run.
    func failQueued() {
        let queued = lock.withLock { () -> [Pending] in
            defer { queue.removeAll() }
            return Array(queue)
        }
        for task in queued { deliver(task, status: .shutdown, data: ByteBuffer(string: "the server is stopping")) }
    }

    /// Tasks queued or held, for stats.
    var counts: (queued: Int, running: Int) {
        lock.withLock { (queue.count, inHand.values.reduce(0) { $0 + $1.count }) }
    }
}
