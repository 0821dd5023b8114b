#if canImport(Glibc)
import Glibc
#endif
import Atomics
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// What the master's threads share: settings, reactors, the table of workers and the link
/// to the manager. The worker table changes rarely (a worker starts, stops or dies) and is
/// then published to every reactor, which keeps its own copy for the per-packet path.
final class MasterCore: @unchecked Sendable {
    let settings: ServerSettings
    let listeners: [ListenerConfig]
    let logger: Logger
    let token: UInt64
    /// What the reactors share: settings, logger and counters.
    let host: ReactorHost
    var stats: ReactorStats { host.stats }
    let metrics = ServerMetrics()
    let tasks: TaskScheduler
    let reactorGroup: ReactorGroup
    private(set) var reactors: [Reactor] = []
    /// Numbers the connections; the id is `sequence * reactorNum + reactor`.
    let connectionSequence = ManagedAtomic<UInt64>(0)
    /// UDP listeners by listener index, set once they are bound.
    let datagramSockets = NIOLockedValueBox<[Int: DatagramSocket]>([:])

    private let lock = NIOLock()
    /// Set when the master stops: no more work is scheduled on the reactors, so that their
    /// loops can be shut down without leaving a promise behind.
    let closing = ManagedAtomic(false)
    /// Every open IPC connection (workers of all generations and the manager).
    private var links: [ObjectIdentifier: MasterLink] = [:]
    private var current: [WorkerEndpoint?]
    /// New generations waiting for the manager's word to take over their slot.
    private var standby: [Int: WorkerEndpoint] = [:]
    private var everReady: Set<Int> = []
    /// Base mode: every live worker by generation, the number in the high half of the ids
    /// of the connections it accepted (older generations still finishing included).
    private var owners: [Int: WorkerEndpoint] = [:]
    /// Base mode: each live worker's counters as last reported, and those of workers gone.
    private var workerCounters: [Int: ConnectionCounters] = [:]
    private var goneCounters = ConnectionCounters()
    private var managerLink: MasterLink?
    /// Called on the main thread's pump.
    let events: MasterEvents

    init(settings: ServerSettings, listeners: [ListenerConfig], logger: Logger, token: UInt64, events: MasterEvents) throws {
        self.settings = settings
        self.listeners = listeners
        self.logger = logger
        self.token = token
        self.events = events
        self.host = ReactorHost(settings: settings, listeners: listeners, logger: logger)
        self.reactorGroup = try ReactorGroup(threads: settings.reactorNum)
        self.tasks = TaskScheduler(logger: logger, concurrency: settings.taskWorkerConcurrency)
        current = Array(repeating: nil, count: settings.workerNum + settings.taskWorkerNum)
        reactors = reactorGroup.loops.enumerated().map { Reactor(id: $0.offset, loop: $0.element, core: host) }
    }

    var isBase: Bool { settings.mode == .base }

    func reactor(of connection: UInt64) -> Reactor {
        reactors[Int(connection % UInt64(reactors.count))]
    }

    // MARK: Workers

    /// A worker said hello. Into an empty slot (the first start, or a replacement for a
    /// worker that died) it goes to work at once. Beside a live older generation (a reload or
    /// a recycle) it waits on standby until the manager activates it: a reload that fails
    /// can then be rolled back before any request reached the new code.
    func register(_ endpoint: WorkerEndpoint) {
        enum Placement { case active(allReady: Bool), standby, stale }
        let placement = lock.withLock { () -> Placement in
            guard endpoint.workerId >= 0, endpoint.workerId < current.count else { return .stale }
            if isBase && endpoint.role == .worker { owners[endpoint.generation] = endpoint }
            if let existing = current[endpoint.workerId], existing.link.isOpen {
                if existing.generation >= endpoint.generation { return .stale }
                standby[endpoint.workerId] = endpoint
                return .standby
            }
            current[endpoint.workerId] = endpoint
            let first = everReady.count < current.count
            everReady.insert(endpoint.workerId)
            return .active(allReady: first && everReady.count == current.count)
        }
        switch placement {
        case .stale:
            logger.warning("worker \(endpoint.workerId) generation \(endpoint.generation) is older than the current one; ignored")
            return
        case .standby:
            logger.debug("worker \(endpoint.workerId) generation \(endpoint.generation) pid \(endpoint.pid) is ready (standby)")
        case .active(let allReady):
            logger.debug("worker \(endpoint.workerId) generation \(endpoint.generation) pid \(endpoint.pid) is ready")
            if endpoint.role == .taskWorker { tasks.register(endpoint) } else { publish() }
            if isBase && endpoint.role == .worker { endpoint.send(.activate(workerId: endpoint.workerId, generation: endpoint.generation)) }
            if allReady { events.allWorkersReady() }
        }
        sendToManager(.workerReady(workerId: endpoint.workerId, generation: endpoint.generation, pid: endpoint.pid))
    }

    /// The manager activates a standby generation: it takes the slot's work from now on.
    func activate(workerId: Int, generation: Int) {
        let promoted = lock.withLock { () -> WorkerEndpoint? in
            guard workerId >= 0, workerId < current.count,
                  let waiting = standby[workerId], waiting.generation == generation else { return nil }
            standby[workerId] = nil
            current[workerId] = waiting
            return waiting
        }
        guard let promoted else { return }
        if promoted.role == .taskWorker { tasks.register(promoted) } else { publish() }
        // Base mode: a standby worker starts accepting only now, so that a reload rolled
        // back never let it serve a client.
        if isBase && promoted.role == .worker { promoted.send(.activate(workerId: workerId, generation: generation)) }
    }

    /// A worker's connection closed (it exited or crashed).
    func unregister(_ endpoint: WorkerEndpoint) {
        if endpoint.role == .taskWorker { tasks.remove(endpoint) }
        endpoint.dropQuestions()
        let changed = lock.withLock { () -> Bool in
            if owners[endpoint.generation] === endpoint {
                owners[endpoint.generation] = nil
                if var last = workerCounters.removeValue(forKey: endpoint.generation) {
                    // Its connections closed with it.
                    last.closed += last.connections
                    last.connections = 0
                    goneCounters = goneCounters + last
                }
            }
            if standby[endpoint.workerId] === endpoint { standby[endpoint.workerId] = nil }
            guard current[endpoint.workerId] === endpoint else { return false }
            current[endpoint.workerId] = nil
            return true
        }
        // The stranded requests are collected only once every reactor has stopped
        // dispatching to the dead worker: a request handed to it in between would otherwise
        // be written into a closed socket and its client left waiting forever.
        let dispatchStopped = changed && endpoint.role == .worker
            ? publish()
            : reactors[0].loop.makeSucceededVoidFuture()
        dispatchStopped.whenComplete { _ in self.closeStranded(endpoint) }
    }

    /// A worker that went away holding requests will never answer them: close those
    /// clients now rather than leave them waiting forever.
    private func closeStranded(_ endpoint: WorkerEndpoint) {
        for connection in endpoint.stranded() {
            reactor(of: connection).onLoop { reactor in
                let reason = "worker \(endpoint.workerId) (pid \(endpoint.pid)) died while handling its request"
                // An HTTP client gets an answer instead: 503, and its connection goes on.
                if let http = reactor.connections[connection]?.http {
                    http.workerDied(ObjectIdentifier(endpoint), reason)
                } else {
                    reactor.close(connection, reset: false, reason: reason)
                }
            }
        }
    }

    // MARK: Watchdog

    private var watchdog: RepeatedTask?

    /// Starts the watchdog if `requestTimeout` or `workerTimeout` asks for it.
    func startWatchdog() {
        // In base mode the master does not see requests: a stuck one shows as a worker
        // that no longer answers.
        let requestLimit = isBase ? 0 : settings.requestTimeout
        let livenessLimit = settings.workerTimeout > 0 ? settings.workerTimeout : (isBase ? settings.requestTimeout : 0)
        let limits = [requestLimit, livenessLimit].filter { $0 > 0 }
        guard let shortest = limits.min() else { return }
        let period = TimeAmount.milliseconds(Int64(max(50, shortest * 1000 / 4)))
        watchdog = reactors[0].loop.scheduleRepeatedTask(initialDelay: period, delay: period) { [self] _ in
            watch(requestLimit: requestLimit, livenessLimit: livenessLimit)
        }
    }

    /// Kills a worker stuck on a request, or whose event loop does not answer a probe.
    /// The manager replaces it; the master fails only the requests it held.
    private func watch(requestLimit: Double, livenessLimit: Double) {
        guard !closing.load(ordering: .relaxed) else { return }
        let loop = reactors[0].loop
        let now = NIODeadline.now()
        let workers = lock.withLock { current[0..<settings.workerNum].compactMap { $0 } }
        for endpoint in workers where !endpoint.condemned {
            if requestLimit > 0, let since = endpoint.oldestRequestStart(),
               now - since > .milliseconds(Int64(requestLimit * 1000)) {
                condemn(endpoint, "has not finished a request in \(requestLimit) s (requestTimeout)")
            } else if livenessLimit > 0 {
                if let sent = endpoint.probeSentAt {
                    if now - sent > .milliseconds(Int64(livenessLimit * 1000)) {
                        condemn(endpoint, "has not answered the liveness check in \(livenessLimit) s (workerTimeout)")
                    }
                } else {
                    endpoint.probeSentAt = now
                    endpoint.ask(.stats, 0).hop(to: loop).whenComplete { _ in endpoint.probeSentAt = nil }
                }
            }
        }
    }

    private func condemn(_ endpoint: WorkerEndpoint, _ why: String) {
        endpoint.condemned = true
        logger.warning("worker \(endpoint.workerId) (pid \(endpoint.pid)) \(why); killing it")
        Syscall.kill(endpoint.pid, SIGKILL)
    }

    /// A worker is stopping: no more work for it. The returned future completes once every
    /// reactor has stopped dispatching to it, so the acknowledgement the worker gets is the
    /// last frame it will receive.
    func retire(_ endpoint: WorkerEndpoint) -> EventLoopFuture<Void> {
        if endpoint.role == .taskWorker {
            tasks.retire(endpoint)
            // Through the link's task queue: a task written to it from another thread before
            // the retirement is queued there, and must reach the worker before the
            // acknowledgement, or the worker would exit without it.
            return endpoint.link.loop.submit {}
        }
        lock.withLock {
            if current[endpoint.workerId] === endpoint { current[endpoint.workerId] = nil }
        }
        // Published even when the table did not change here: a successor's activation may
        // still be on its way to some reactor, which until then dispatches to this worker.
        // Once every reactor has applied this table, none does.
        return publish(on: endpoint.link.loop)
    }

    func endpoint(_ workerId: Int) -> WorkerEndpoint? {
        lock.withLock { workerId >= 0 && workerId < current.count ? current[workerId] : nil }
    }

    /// Sends the current table of event workers to every reactor. The table is read and the
    /// tasks are queued under one lock, so that reactors receive tables in the order they
    /// changed and a slow publisher can never overwrite a newer table with an older one. The
    /// future completes once every reactor has applied it (and so everything queued before).
    @discardableResult
    private func publish(on loop: EventLoop? = nil) -> EventLoopFuture<Void> {
        let target = loop ?? reactors[0].loop
        if closing.load(ordering: .relaxed) { return target.makeSucceededVoidFuture() }
        let futures = lock.withLock { () -> [EventLoopFuture<Void>] in
            let table = Array(current[0..<settings.workerNum])
            return reactors.map { reactor in reactor.loop.submit { reactor.publish(table) } }
        }
        return EventLoopFuture.andAllComplete(futures, on: target)
    }

    /// Passes a worker's instruction for a connection (a reply, a close…) to the reactor
    /// that holds the connection, or in base mode to the worker that does.
    func routeToConnection(_ connection: UInt64, _ message: IPCMessage) {
        guard isBase else {
            reactor(of: connection).onLoop { $0.apply(message) }
            return
        }
        // Absent: the worker is gone, and its connections with it.
        lock.withLock { owners[Int(connection >> 32)] }?.send(message)
    }

    /// The live workers of base mode.
    private var liveWorkers: [WorkerEndpoint] { lock.withLock { Array(owners.values) } }

    func relayPipeMessage(from: Int, to: Int, data: ByteBuffer) {
        guard let target = endpoint(to) else {
            logger.warning("pipe message from worker \(from) to worker \(to) dropped: worker \(to) is not running")
            return
        }
        target.send(.pipeMessage(from: from, to: to, data: data))
    }

    func sendDatagram(listener: Int, address: String, port: Int, data: ByteBuffer) {
        guard let socket = datagramSockets.withLockedValue({ $0[listener] }) else {
            logger.warning("sendto on listener \(listener), which is not a UDP listener")
            return
        }
        do {
            try socket.send(data, toIP: address, port: port)
            stats.totalSendBytes.wrappingIncrement(by: data.readableBytes, ordering: .relaxed)
        } catch {
            logger.warning("sendto \(address):\(port): \(error)")
        }
    }

    func linkOpened(_ link: MasterLink) {
        lock.withLock { links[ObjectIdentifier(link)] = link }
    }

    func linkClosed(_ link: MasterLink) {
        lock.withLock { _ = links.removeValue(forKey: ObjectIdentifier(link)) }
    }

    /// Closes every IPC connection and every client connection, and waits until they are
    /// closed, so that the reactor loops hold no more work.
    func closeEverything() {
        closing.store(true, ordering: .relaxed)
        try? reactors[0].loop.submit { self.watchdog?.cancel() }.wait()
        // Two rounds through every loop let the tasks and callbacks already queued finish.
        for _ in 0..<2 {
            for reactor in reactors { try? reactor.loop.submit {}.wait() }
        }
        for reactor in reactors {
            try? reactor.loop.submit {
                reactor.stopHeartbeat()
                reactor.closeAll()
            }.wait()
        }
        let open = lock.withLock { Array(links.values) }
        for link in open {
            link.close()
            try? link.closeFuture.wait()
        }
        for reactor in reactors { try? reactor.loop.submit {}.wait() }
    }

    // MARK: Manager

    func managerLinked(_ link: MasterLink) {
        lock.withLock { managerLink = link }
    }

    /// Who waits for the outcome of which reload (the control socket's `reload`).
    let reloads = NIOLockedValueBox(ReloadTracker<@Sendable (Bool?) -> Void>())

    /// A reload was asked of the manager; `done` gets its outcome.
    func reloadRequested(done: (@Sendable (Bool?) -> Void)?) {
        reloads.withLockedValue { $0.requested(done) }
    }

    /// The manager reported the end of a reload.
    func reloadFinished(succeeded: Bool) {
        for done in reloads.withLockedValue({ $0.finished() }) { done(succeeded) }
    }

    func managerLinkLost() {
        lock.withLock { managerLink = nil }
        events.managerLinkLost()
    }

    /// Sends a message to the manager; false when it is not connected.
    @discardableResult
    func sendToManager(_ message: IPCMessage) -> Bool {
        guard let link = lock.withLock({ managerLink }) else { return false }
        var frame = ByteBufferAllocator().buffer(capacity: 32)
        IPCCodec.encode(message, into: &frame)
        link.write(frame)
        return true
    }

    // MARK: Queries

    /// Answers a worker's question, as JSON (empty: no answer, such as a closed connection).
    func answer(_ query: MasterQuery, _ argument: UInt64) -> EventLoopFuture<ByteBuffer> {
        let loop = reactors[0].loop
        if isBase {
            // The workers hold the connections: the one that accepted it answers for it.
            switch query {
            case .exists, .clientInfo:
                guard let owner = lock.withLock({ owners[Int(argument >> 32)] }) else {
                    return loop.makeSucceededFuture(query == .exists ? MasterQuery.encode(false) : ByteBuffer())
                }
                return owner.ask(query, argument)
            case .connections:
                let lists = liveWorkers.map { $0.ask(.connections, 0) }
                return EventLoopFuture.whenAllComplete(lists, on: loop).map { results in
                    let ids = results.flatMap { result -> [UInt64] in
                        guard case .success(let data) = result else { return [] }
                        return ((try? MasterQuery.decode([UInt64].self, from: data)) ?? nil) ?? []
                    }
                    return MasterQuery.encode(ids.sorted())
                }
            default:
                break
            }
        }
        switch query {
        case .stats:
            return freshStats().map { MasterQuery.encode($0) }
        case .exists:
            let reactor = reactor(of: argument)
            return reactor.loop.submit { MasterQuery.encode(reactor.connections[argument] != nil) }
        case .clientInfo:
            let reactor = reactor(of: argument)
            return reactor.loop.submit { MasterQuery.encode(reactor.connections[argument]?.info()) }
        case .connections:
            let lists = reactors.map { reactor in reactor.loop.submit { reactor.connections.ids } }
            return EventLoopFuture.whenAllSucceed(lists, on: loop).map { MasterQuery.encode($0.flatMap { $0 }.sorted()) }
        case .reload, .reloadTaskWorkers:
            events.reload(taskWorkersOnly: query == .reloadTaskWorkers)
            return loop.makeSucceededFuture(ByteBuffer())
        case .shutdown:
            events.shutdown()
            return loop.makeSucceededFuture(ByteBuffer())
        }
    }


    /// The counters now: in base mode, after asking every worker for its own.
    func freshStats() -> EventLoopFuture<ServerStats> {
        let loop = reactors[0].loop
        guard isBase else { return loop.makeSucceededFuture(statsSnapshot()) }
        let answers = liveWorkers.map { worker in
            worker.ask(.stats, 0).map { data in
                (worker.generation, (try? MasterQuery.decode(ConnectionCounters.self, from: data)) ?? nil)
            }
        }
        return EventLoopFuture.whenAllComplete(answers, on: loop).map { results in
            self.lock.withLock {
                for case .success(let (generation, counters?)) in results where self.owners[generation] != nil {
                    self.workerCounters[generation] = counters
                }
            }
            return self.statsSnapshot()
        }
    }

    /// The counters as known now (in base mode, as the workers last reported them).
    func statsSnapshot() -> ServerStats {
        let workers = workerSnapshot()
        let counters = isBase
            ? lock.withLock { workerCounters.values.reduce(goneCounters, +) }
            : stats.counters
        let snapshot = ServerStats(
            start_time: stats.startTime,
            connection_num: counters.connections,
            accept_count: counters.accepted,
            close_count: counters.closed,
            abort_count: counters.aborted,
            reject_count: counters.rejected,
            request_count: counters.requests,
            dispatch_count: counters.requests,
            total_recv_bytes: counters.received,
            total_send_bytes: counters.sent,
            worker_num: settings.workerNum,
            task_worker_num: settings.taskWorkerNum,
            reload_count: stats.reloadCount.load(ordering: .relaxed),
            tasking_num: tasks.counts.running,
            task_queue_num: tasks.counts.queued,
            idle_worker_num: workers.filter { $0.type == "worker" && $0.in_flight == 0 }.count,
            task_idle_worker_num: workers.filter { $0.type == "task_worker" && $0.in_flight == 0 }.count,
            workers: workers)
        metrics.record(snapshot)
        return snapshot
    }

    /// The process serving each slot now, with its figures.
    func workerSnapshot() -> [WorkerStats] {
        (0..<(settings.workerNum + settings.taskWorkerNum)).compactMap { id in
            guard let endpoint = endpoint(id) else { return nil }
            let isTask = endpoint.role == .taskWorker
            let served = isBase && !isTask
                ? lock.withLock { workerCounters[endpoint.generation]?.requests ?? 0 }
                : endpoint.served.load(ordering: .relaxed)
            return WorkerStats(worker_id: id, pid: endpoint.pid, type: isTask ? "task_worker" : "worker",
                               request_count: served,
                               in_flight: isTask ? tasks.held(by: endpoint) : endpoint.inFlight.load(ordering: .relaxed))
        }
    }
}

/// What the master's threads ask of its main thread.
protocol MasterEvents: AnyObject, Sendable {
    func allWorkersReady()
    func managerLinkLost()
    func reload(taskWorkersOnly: Bool)
    func shutdown()
}
