#if canImport(Glibc)
import Glibc
#endif
import NIOCore

/// The manager's table of worker slots (nginx's `ngx_processes`): stable slots, each with
/// its current process and the older generations still finishing their work. Pure state:
/// the manager performs what it decides, so it can be tested without processes.
struct ProcessTable {
    struct Slot {
        let isTaskWorker: Bool
        /// The process that serves the slot (the newest generation).
        var current: Int32?
        var generation = 0
        var startedAt: NIODeadline?
        /// Older generations: asked to stop once the current one is ready.
        var retiring: [Retired] = []
        /// Quick failures in a row, for the back-off.
        var failures = 0
        var respawnAt: NIODeadline?
    }

    struct Retired {
        var pid: Int32
        var generation: Int
        var deadline: NIODeadline
        var signalled = false
    }

    /// What an exit meant.
    struct Outcome {
        var slot: Int
        /// The slot's current process exited (a crash, unless stopping): replace it.
        var wasCurrent: Bool
        /// The manager stopped it (a retired generation).
        var killedByUs: Bool
        /// Wait this long before respawning (a crash loop).
        var backoff: TimeAmount?
    }

    /// A worker that dies sooner than this after its start counts as failing to boot.
    static let quickFailure = TimeAmount.seconds(1)

    private(set) var slots: [Slot]
    /// Generations count every process the manager starts, across slots, so that a
    /// generation names one process for the life of the server (task ids rely on it).
    private var lastGeneration = 0

    init(workerNum: Int, taskWorkerNum: Int) {
        slots = (0..<(workerNum + taskWorkerNum)).map { Slot(isTaskWorker: $0 >= workerNum) }
    }

    mutating func nextGeneration(_ slot: Int) -> Int {
        lastGeneration += 1
        slots[slot].generation = lastGeneration
        return lastGeneration
    }

    mutating func started(_ slot: Int, pid: Int32, generation: Int, at now: NIODeadline) {
        slots[slot].current = pid
        slots[slot].startedAt = now
        slots[slot].respawnAt = nil
    }

    /// Moves the slot's current process to the retiring list; it is signalled once its
    /// successor is ready, and killed after `deadline`.
    mutating func retireCurrent(_ slot: Int, deadline: NIODeadline) {
        guard let pid = slots[slot].current else { return }
        slots[slot].retiring.append(Retired(pid: pid, generation: slots[slot].generation, deadline: deadline))
        slots[slot].current = nil
    }

    /// Generation `generation` of `slot` is ready: the pids of older generations to stop now.
    mutating func markReady(_ slot: Int, generation: Int) -> [Int32] {
        guard slots.indices.contains(slot) else { return [] }
        var stop: [Int32] = []
        for i in slots[slot].retiring.indices where !slots[slot].retiring[i].signalled
            && slots[slot].retiring[i].generation < generation {
            slots[slot].retiring[i].signalled = true
            stop.append(slots[slot].retiring[i].pid)
        }
        return stop
    }

    mutating func exited(pid: Int32, at now: NIODeadline) -> Outcome? {
        for index in slots.indices {
            if slots[index].current == pid {
                slots[index].current = nil
                var backoff: TimeAmount?
                if let started = slots[index].startedAt, now - started < Self.quickFailure {
                    slots[index].failures += 1
                    if slots[index].failures > 1 {
                        let exponent = min(slots[index].failures - 2, 6)
                        backoff = .milliseconds(100 << exponent)
                    }
                } else {
                    slots[index].failures = 0
                }
                return Outcome(slot: index, wasCurrent: true, killedByUs: false, backoff: backoff)
            }
            if let r = slots[index].retiring.firstIndex(where: { $0.pid == pid }) {
                slots[index].retiring.remove(at: r)
                return Outcome(slot: index, wasCurrent: false, killedByUs: true, backoff: nil)
            }
        }
        return nil
    }

    mutating func scheduleRespawn(_ slot: Int, at time: NIODeadline) {
        slots[slot].respawnAt = time
    }

    mutating func cancelRespawns() {
        for i in slots.indices { slots[i].respawnAt = nil }
    }

    mutating func dueRespawns(now: NIODeadline) -> [Int] {
        var due: [Int] = []
        for i in slots.indices {
            if let at = slots[i].respawnAt, at <= now, slots[i].current == nil {
                slots[i].respawnAt = nil
                due.append(i)
            }
        }
        return due
    }

    /// Retired processes past their deadline (each reported once).
    mutating func overdueRetired(now: NIODeadline) -> [Int32] {
        var overdue: [Int32] = []
        for i in slots.indices {
            for r in slots[i].retiring.indices where slots[i].retiring[r].deadline <= now {
                overdue.append(slots[i].retiring[r].pid)
                slots[i].retiring[r].deadline = .distantFuture
            }
        }
        return overdue
    }

    var nextDeadline: NIODeadline? {
        let times = slots.flatMap { slot in [slot.respawnAt].compactMap { $0 } + slot.retiring.map(\.deadline) }
        return times.filter { $0 != .distantFuture }.min()
    }

    var livePids: [Int32] {
        slots.flatMap { slot in [slot.current].compactMap { $0 } + slot.retiring.map(\.pid) }
    }

    var liveCount: Int { livePids.count }
}
