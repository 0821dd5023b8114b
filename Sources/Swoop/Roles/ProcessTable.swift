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
        var startedAt: NIODeadline?
        /// Set when it is asked to stop: it is killed if still alive then.
        var deadline: NIODeadline?
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

    /// Moves the slot's current process to the retiring list, to be replaced by a new one:
    /// it goes on serving until its successor is activated.
    mutating func retireCurrent(_ slot: Int) {
        guard let pid = slots[slot].current else { return }
        slots[slot].retiring.append(Retired(pid: pid, generation: slots[slot].generation,
                                            startedAt: slots[slot].startedAt))
        slots[slot].current = nil
    }

    /// The successor of `slot` is active: the pids of older generations to stop now, each
    /// to be killed if it is still alive at `deadline`.
    mutating func stopOlder(_ slot: Int, than generation: Int, deadline: NIODeadline) -> [Int32] {
        guard slots.indices.contains(slot) else { return [] }
        var stop: [Int32] = []
        for i in slots[slot].retiring.indices where slots[slot].retiring[i].deadline == nil
            && slots[slot].retiring[i].generation < generation {
            slots[slot].retiring[i].deadline = deadline
            stop.append(slots[slot].retiring[i].pid)
        }
        return stop
    }

    /// Undoes a replacement that failed: the newest retiring process serves the slot again.
    /// Returns the failed successor's pid, if it is still alive, to be stopped.
    mutating func rollBack(_ slot: Int) -> Int32? {
        guard let old = slots[slot].retiring.last(where: { $0.deadline == nil }) else { return nil }
        let failed = slots[slot].current
        slots[slot].retiring.removeAll { $0.pid == old.pid }
        slots[slot].current = old.pid
        slots[slot].generation = old.generation
        slots[slot].startedAt = old.startedAt
        slots[slot].respawnAt = nil
        return failed
    }

    /// Whether the slot is being replaced: an older process still serves it.
    func isReplacing(_ slot: Int) -> Bool {
        slots[slot].retiring.contains { $0.deadline == nil }
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
            for r in slots[i].retiring.indices {
                if let deadline = slots[i].retiring[r].deadline, deadline <= now {
                    overdue.append(slots[i].retiring[r].pid)
                    slots[i].retiring[r].deadline = .distantFuture
                }
            }
        }
        return overdue
    }

    var nextDeadline: NIODeadline? {
        let times = slots.flatMap { slot in [slot.respawnAt].compactMap { $0 } + slot.retiring.compactMap(\.deadline) }
        return times.filter { $0 != .distantFuture }.min()
    }

    var livePids: [Int32] {
        slots.flatMap { slot in [slot.current].compactMap { $0 } + slot.retiring.map(\.pid) }
    }

    var liveCount: Int { livePids.count }
}
