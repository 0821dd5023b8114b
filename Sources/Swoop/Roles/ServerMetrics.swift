import Metrics
import NIOConcurrencyHelpers

/// The figures of `stats()` through swift-metrics, so that a program that bootstraps a
/// metrics backend (Prometheus, StatsD…) before `start()` exports them.
///
/// The reactors count with atomics and never touch a metric: every second, and whenever
/// `stats()` is read, the master copies a snapshot into the metrics, turning its running
/// totals into counter increments. The per-packet path stays free of locks and calls.
///
/// | metric | kind | from |
/// |---|---|---|
/// | `swoop_connections` | gauge | connection_num |
/// | `swoop_accepted_connections_total` | counter | accept_count |
/// | `swoop_closed_connections_total` | counter | close_count |
/// | `swoop_requests_total` | counter | request_count |
/// | `swoop_worker_requests_total{worker}` | counter | each worker's request_count |
/// | `swoop_reloads_total` | counter | reload_count |
/// | `swoop_workers`, `swoop_idle_workers` | gauges | worker_num, idle_worker_num |
/// | `swoop_task_workers`, `swoop_task_idle_workers` | gauges | task_worker_num, task_idle_worker_num |
/// | `swoop_tasks_running`, `swoop_tasks_queued` | gauges | tasking_num, task_queue_num |
/// | `swoop_start_time_seconds` | gauge | start_time |
final class ServerMetrics: @unchecked Sendable {
    private let lock = NIOLock()
    private let connections = Gauge(label: "swoop_connections")
    private let workers = Gauge(label: "swoop_workers")
    private let idleWorkers = Gauge(label: "swoop_idle_workers")
    private let taskWorkers = Gauge(label: "swoop_task_workers")
    private let idleTaskWorkers = Gauge(label: "swoop_task_idle_workers")
    private let tasksRunning = Gauge(label: "swoop_tasks_running")
    private let tasksQueued = Gauge(label: "swoop_tasks_queued")
    private let startTime = Gauge(label: "swoop_start_time_seconds")
    private var totals = Totals()
    /// Each worker's counter, and the process and count it was last advanced to.
    private var perWorker: [Int: (counter: Counter, pid: Int32, count: Int)] = [:]

    /// A running total and the counter it feeds.
    private struct Total {
        let counter: Counter
        var last = 0

        /// Advances the counter to `value`; a total never shrinks, so a smaller value can
        /// only be a new series and counts from zero.
        mutating func advance(to value: Int) {
            let delta = value >= last ? value - last : value
            if delta > 0 { counter.increment(by: Int64(delta)) }
            last = value
        }
    }

    private struct Totals {
        var accepted = Total(counter: Counter(label: "swoop_accepted_connections_total"))
        var closed = Total(counter: Counter(label: "swoop_closed_connections_total"))
        var requests = Total(counter: Counter(label: "swoop_requests_total"))
        var reloads = Total(counter: Counter(label: "swoop_reloads_total"))
    }

    func record(_ stats: ServerStats) {
        lock.withLock {
            connections.record(stats.connection_num)
            workers.record(stats.worker_num)
            idleWorkers.record(stats.idle_worker_num)
            taskWorkers.record(stats.task_worker_num)
            idleTaskWorkers.record(stats.task_idle_worker_num)
            tasksRunning.record(stats.tasking_num)
            tasksQueued.record(stats.task_queue_num)
            startTime.record(stats.start_time)
            totals.accepted.advance(to: stats.accept_count)
            totals.closed.advance(to: stats.close_count)
            totals.requests.advance(to: stats.request_count)
            totals.reloads.advance(to: stats.reload_count)
            for worker in stats.workers {
                var entry = perWorker[worker.worker_id] ?? (
                    Counter(label: "swoop_worker_requests_total", dimensions: [("worker", String(worker.worker_id))]),
                    worker.pid, 0)
                // A new process in the slot starts counting from zero.
                if entry.pid != worker.pid { entry.pid = worker.pid; entry.count = 0 }
                if worker.request_count > entry.count {
                    entry.counter.increment(by: Int64(worker.request_count - entry.count))
                }
                entry.count = worker.request_count
                perWorker[worker.worker_id] = entry
            }
        }
    }
}
