#if canImport(Glibc)
import Glibc
#endif
import CSwoop
import Logging
import NIOCore

/// The manager process: the only one that creates workers. It starts every slot, reaps
/// each child that exits and replaces it in the same slot, replaces them all on reload,
/// and stops them on shutdown.
///
/// It runs on one thread with plain system calls and no event-loop library: its children's
/// PR_SET_PDEATHSIG is tied to the thread that spawned them, so that thread must be the
/// one that lives as long as the manager.
final class Manager {
    let server: Server
    private var logger: Logger { server.logger }
    private var settings: ServerSettings { server.settings }
    private let context: ProcessContext
    /// The workers' user and group (`settings.user`/`group`).
    private var credentials: Credentials? { server.credentials }
    private var table: ProcessTable
    private var link: CInt = -1
    private var linkBuffer = ByteBuffer()
    private var stopping = false
    /// The reload under way, and one asked for meanwhile (true: task workers only).
    private var reloading: Reload?
    private var queuedReload: Bool?

    /// A reload: every slot in it gets a new process, and all of them are activated together
    /// once all are ready, so that a new build that fails to start is rolled back whole.
    private struct Reload {
        var taskWorkersOnly: Bool
        /// New generations not yet ready, by slot.
        var starting: [Int: Int]
        /// New generations ready and on standby, by slot.
        var ready: [Int: Int] = [:]
        var deadline: NIODeadline
        var committed = false
        var slots: [Int] { Array(starting.keys) + Array(ready.keys) }
    }
    private var stopDeadline: NIODeadline?
    private var killedOnDeadline = false

    init(server: Server) {
        self.server = server
        self.context = server.context
        self.table = ProcessTable(workerNum: server.settings.workerNum, taskWorkerNum: server.settings.taskWorkerNum)
    }

    func run() -> Never {
        ProcessTitle.set("\(ProcessTitle.programName): manager")
        let pump: EventPump
        do {
            pump = try EventPump(signals: [SIGTERM, SIGINT, SIGUSR1, SIGUSR2, SIGCHLD, SIGHUP, SIGWINCH])
            link = try Syscall.connectAbstract(context.ipcAddress)
            try sendToMaster(.hello(role: .manager, workerId: -1, generation: 0, pid: getpid(), token: context.token))
        } catch {
            logger.critical("the manager cannot reach the master: \(error)")
            exit(ExitCode.cannotBoot)
        }
        // Base mode's listening sockets go to the event workers only (see spawn); a task
        // worker's environment names them too, but it never has them open.
        context.listenDescriptors.filter { $0 >= 0 }.forEach(Syscall.setCloseOnExec)
        // Task workers first, as in Swoole, so that workers can hand them work at once.
        for slot in table.slots.indices.reversed() { spawn(slot) }
        server.handlers.managerStart?(server)

        while true {
            let events = pump.wait(watching: link >= 0 ? [link] : [], timeoutMs: nextTimeout())
            for signal in events.signals { handle(signal: signal) }
            if events.readable.contains(link) { readLink() }
            for work in events.work { work() }
            runTimers()
            if stopping && table.liveCount == 0 {
                server.handlers.managerStop?(server)
                logger.info("manager stopped")
                exit(0)
            }
        }
    }

    // MARK: Events

    private func handle(signal: CInt) {
        switch signal {
        case SIGCHLD: reap()
        case SIGTERM, SIGINT: beginStop()
        case SIGUSR1: reload(taskWorkersOnly: false)
        case SIGUSR2: reload(taskWorkersOnly: true)
        case SIGWINCH: reopenLogs()
        default: break
        }
    }

    private func readLink() {
        var chunk = [UInt8](repeating: 0, count: 4096)
        // The link is blocking and poll said it is readable: nil (an error) counts as end of file.
        let n = chunk.withUnsafeMutableBytes { (try? Syscall.read(link, into: $0)) ?? 0 }
        guard n > 0 else {
            // The master is gone; its children have no one to serve.
            logger.error("lost the connection to the master; stopping the workers")
            Syscall.close(link)
            link = -1
            beginStop(force: true)
            return
        }
        linkBuffer.writeBytes(chunk[0..<n])
        while let message = try? IPCCodec.decode(&linkBuffer, maxFrameLength: 1 << 20) {
            switch message {
            case let .workerReady(workerId, generation, pid):
                workerReady(workerId, generation: generation, pid: pid)
            case let .reload(taskWorkersOnly):
                reload(taskWorkersOnly: taskWorkersOnly)
            case .shutdown:
                beginStop()
            case let .recycle(workerId, generation):
                recycle(workerId, generation: generation)
            default:
                logger.warning("unexpected message from the master: \(message)")
            }
        }
    }

    private func sendToMaster(_ message: IPCMessage) throws {
        var frame = ByteBuffer()
        IPCCodec.encode(message, into: &frame)
        try frame.withUnsafeReadableBytes { try Syscall.writeAll(link, $0) }
    }

    /// SIGWINCH from the master: reopen the log here, then in every worker.
    private func reopenLogs() {
        for error in LogSink.reopenAll() { logger.error("cannot reopen the log: \(error)") }
        if settings.logFile != nil { logger.info("log file reopened") }
        for pid in table.livePids { Syscall.kill(pid, SIGWINCH) }
    }

    // MARK: Spawning and reaping

    private func spawn(_ slot: Int) {
        let entry = table.slots[slot]
        let role: ProcessRole = entry.isTaskWorker ? .taskWorker : .worker
        let generation = table.nextGeneration(slot)
        let environment = context.childEnvironment(role: role, workerId: slot, generation: generation,
                                                   managerPid: getpid())
        do {
            var command = Spawner.Command(path: context.executable, arguments: ProcessTitle.originalArguments,
                                          environment: environment)
            command.credentials = credentials
            // Base mode: an event worker accepts on the listening sockets.
            if role == .worker { command.descriptors += context.listenDescriptors.filter { $0 >= 0 }.map { ($0, $0) } }
            let pid = try Spawner.spawn(command)
            table.started(slot, pid: pid, generation: generation, at: .now())
        } catch {
            logger.error("cannot start \(role) \(slot): \(error); retrying")
            table.scheduleRespawn(slot, at: .now() + .seconds(1))
        }
    }

    private func reap() {
        while let exit = Syscall.reapChild() {
            if let reload = reloading, !reload.committed,
               let slot = reload.slots.first(where: { table.slots[$0].current == exit.pid }) {
                // A new worker of a reload died before the reload took effect: the old
                // workers keep serving, and this build is not used.
                let what = table.slots[slot].isTaskWorker ? "task worker" : "worker"
                server.handlers.workerError?(server, WorkerExit(workerId: slot, pid: exit.pid,
                                                                 exitCode: exit.exitCode, signal: exit.signal))
                rollBack("the new \(what) \(slot) (pid \(exit.pid)) exited during start-up (exit code \(exit.exitCode), signal \(exit.signal))")
                continue
            }
            guard let outcome = table.exited(pid: exit.pid, at: .now()) else { continue }
            let what = table.slots[outcome.slot].isTaskWorker ? "task worker" : "worker"
            if outcome.wasCurrent && !stopping {
                if !exit.isClean {
                    logger.warning("\(what) \(outcome.slot) (pid \(exit.pid)) exited abnormally: exit code \(exit.exitCode), signal \(exit.signal)")
                    server.handlers.workerError?(server, WorkerExit(workerId: outcome.slot, pid: exit.pid,
                                                                     exitCode: exit.exitCode, signal: exit.signal))
                }
                if let delay = outcome.backoff {
                    logger.warning("\(what) \(outcome.slot) keeps failing right after start; restarting it in \(delay.nanoseconds / 1_000_000) ms")
                    table.scheduleRespawn(outcome.slot, at: .now() + delay)
                } else {
                    spawn(outcome.slot)
                }
            } else if !exit.isClean && !(stopping && killedOnDeadline) && !outcome.killedByUs {
                logger.warning("\(what) \(outcome.slot) (pid \(exit.pid)) exited abnormally while stopping: exit code \(exit.exitCode), signal \(exit.signal)")
            }
        }
        finishReloadIfDone()
    }

    private func workerReady(_ slot: Int, generation: Int, pid: Int32) {
        guard table.slots.indices.contains(slot), table.slots[slot].generation == generation else { return }
        if var reload = reloading, reload.starting[slot] == generation {
            reload.starting[slot] = nil
            reload.ready[slot] = generation
            reloading = reload
            if reload.starting.isEmpty { commitReload() }
            return
        }
        // A replacement for a worker that died, or the successor of a recycled one: it takes
        // over at once, and only then is the old one (if any) asked to stop, so that the
        // slot never has nobody to serve it.
        activate(slot, generation: generation)
    }

    private func activate(_ slot: Int, generation: Int) {
        try? sendToMaster(.activate(workerId: slot, generation: generation))
        let deadline = NIODeadline.now() + .milliseconds(Int64(settings.maxWaitTime * 1000) + 1000)
        for old in table.stopOlder(slot, than: generation, deadline: deadline) {
            Syscall.kill(old, SIGTERM)
        }
    }

    // MARK: Reload and stop

    private func reload(taskWorkersOnly: Bool) {
        guard !stopping else { return }
        if reloading != nil {
            // Queued, not lost; a queued full reload covers a task-worker one.
            queuedReload = (queuedReload ?? true) && taskWorkersOnly
            logger.info("a reload is under way; this one (\(taskWorkersOnly ? "task workers" : "all workers")) will follow it")
            return
        }
        logger.info("reloading \(taskWorkersOnly ? "the task workers" : "all workers and task workers")")
        server.handlers.beforeReload?(server)
        var reload = Reload(taskWorkersOnly: taskWorkersOnly, starting: [:],
                            deadline: .now() + .milliseconds(Int64(settings.workerStartTimeout * 1000)))
        for slot in table.slots.indices where !taskWorkersOnly || table.slots[slot].isTaskWorker {
            table.retireCurrent(slot)
            spawn(slot)
            reload.starting[slot] = table.slots[slot].generation
        }
        reloading = reload
    }

    /// Every new worker is ready: they all take over, and the old ones finish and exit.
    private func commitReload() {
        guard var reload = reloading else { return }
        reload.committed = true
        reloading = reload
        for (slot, generation) in reload.ready { activate(slot, generation: generation) }
        finishReloadIfDone()
    }

    /// A new worker failed: the new generation is stopped and the old one keeps its slots.
    private func rollBack(_ reason: String) {
        guard let reload = reloading else { return }
        logger.error("reload rolled back: \(reason); the old workers keep serving")
        for slot in reload.slots {
            if let failed = table.rollBack(slot) { Syscall.kill(failed, SIGKILL) }
        }
        reloading = nil
        try? sendToMaster(.reloadDone(succeeded: false))
        startQueuedReload()
    }

    private func finishReloadIfDone() {
        guard let reload = reloading, reload.committed,
              !reload.slots.contains(where: { !table.slots[$0].retiring.isEmpty }) else { return }
        reloading = nil
        logger.info("reload complete")
        server.handlers.afterReload?(server)
        try? sendToMaster(.reloadDone(succeeded: true))
        startQueuedReload()
    }

    private func startQueuedReload() {
        guard let next = queuedReload else { return }
        queuedReload = nil
        reload(taskWorkersOnly: next)
    }

    /// A worker reached maxRequest (or taskMaxRequest): start its successor; it stops once
    /// the successor is ready, exactly as in a reload.
    private func recycle(_ slot: Int, generation: Int) {
        guard !stopping, table.slots.indices.contains(slot), table.slots[slot].generation == generation,
              !(reloading?.slots.contains(slot) ?? false) else { return }
        table.retireCurrent(slot)
        spawn(slot)
    }

    private func beginStop(force: Bool = false) {
        guard !stopping else {
            if force { killAll() }
            return
        }
        stopping = true
        table.cancelRespawns()
        if force {
            killAll()
            return
        }
        for pid in table.livePids { Syscall.kill(pid, SIGTERM) }
        stopDeadline = .now() + .milliseconds(Int64(settings.maxWaitTime * 1000) + 500)
    }

    private func killAll() {
        killedOnDeadline = true
        for pid in table.livePids { Syscall.kill(pid, SIGKILL) }
    }

    // MARK: Timers

    private func nextTimeout() -> Int32 {
        let reloadDeadline = reloading.flatMap { $0.committed ? nil : $0.deadline }
        let deadlines = [stopDeadline, table.nextDeadline, reloadDeadline].compactMap { $0 }
        guard let next = deadlines.min() else { return -1 }
        return Int32(max(0, min(Int64(Int32.max), (next - .now()).nanoseconds / 1_000_000)))
    }

    private func runTimers() {
        let now = NIODeadline.now()
        if let deadline = stopDeadline, deadline <= now {
            stopDeadline = nil
            if table.liveCount > 0 {
                logger.warning("\(table.liveCount) worker(s) did not stop within maxWaitTime; killing them")
                killAll()
            }
        }
        if let reload = reloading, !reload.committed, reload.deadline <= now {
            let late = reload.starting.keys.sorted().map(String.init).joined(separator: ", ")
            rollBack("worker(s) \(late) did not become ready within workerStartTimeout (\(settings.workerStartTimeout) s)")
        }
        for slot in table.dueRespawns(now: now) where !stopping { spawn(slot) }
        for pid in table.overdueRetired(now: now) {
            logger.warning("an old worker (pid \(pid)) did not finish within maxWaitTime; killing it")
            Syscall.kill(pid, SIGKILL)
        }
    }
}
