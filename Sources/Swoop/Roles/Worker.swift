#if canImport(Glibc)
import Glibc
#endif
import Atomics
import CSwoop
import Foundation
import Logging
import NIOCore

/// A worker or task worker process: it connects to the master, runs the user's handlers for
/// what the master dispatches, and stops gracefully on SIGTERM.
struct WorkerProcess {
    let server: Server

    func run() -> Never {
        let context = server.context
        let title = context.role == .taskWorker ? "task worker" : "worker"
        ProcessTitle.set("\(ProcessTitle.programName): \(title) \(context.workerId)")
        let logger = server.logger
        let pump: EventPump
        do {
            pump = try EventPump(signals: [SIGTERM, SIGINT, SIGUSR1, SIGUSR2, SIGHUP, SIGWINCH])
        } catch {
            logger.critical("cannot install signal handlers: \(error)")
            exit(ExitCode.cannotBoot)
        }
        // Swoop's own loop: the IPC link and, in base mode, the client connections (line
        // protocols and HTTP alike) are its sockets.
        let loop: EpollLoop
        do {
            loop = try EpollLoop.start(name: "worker loop")
        } catch {
            logger.critical("cannot start the event loop: \(error)")
            exit(ExitCode.cannotBoot)
        }
        let runtime = WorkerRuntime(server: server, loop: loop, pump: pump)
        server.worker = runtime
        do {
            try runtime.startUp()
        } catch {
            logger.critical("worker \(context.workerId) failed to start: \(error)")
            exit(ExitCode.cannotBoot)
        }
        while true {
            let events = pump.wait(timeoutMs: -1)
            for signal in events.signals {
                switch signal {
                case SIGTERM, SIGINT:
                    runtime.loop.execute { runtime.beginStop(reason: "signal \(signal)") }
                case SIGWINCH:
                    // From the manager: logrotate moved the log away.
                    for error in LogSink.reopenAll() { logger.error("cannot reopen the log: \(error)") }
                    if server.settings.logFile != nil { logger.info("log file reopened") }
                default:
                    break
                }
            }
            for work in events.work { work() }
        }
    }
}

/// Exit codes with a meaning for the manager.
enum ExitCode {
    /// The process could not start (like nginx's 2, gunicorn's 3): the manager backs off
    /// instead of respawning in a tight loop.
    static let cannotBoot: Int32 = 3
}

/// The worker's side of the IPC connection and the dispatcher of its handlers. All of its
/// state is touched only on its event loop.
/// The state on the request path skips the run-time exclusivity check (see ``EpollSocket``).
final class WorkerRuntime: LocalWorker, @unchecked Sendable {
    let server: Server
    let loop: EpollLoop
    let pump: EventPump
    /// Where async handlers resume after an `await`: this worker's loop.
    private let executor: LoopTaskExecutor
    /// The connection to the master, once made.
    private var output: EpollSocket?
    private var logger: Logger { server.logger }
    private var handlers: Handlers { server.handlers }

    /// Per connection: the events waiting while an async handler of that connection runs,
    /// so that a connection's events are handled one after another, in order.
    @exclusivity(unchecked) private var queues: [UInt64: CircularBuffer<IPCMessage>] = [:]
    /// Connections with an async handler's event not finished: waiting for its runner (the
    /// end of this loop turn), or suspended.
    @exclusivity(unchecked) private var busy = ConnectionSet()
    /// The connection whose event is being handled inline by a sync handler: its events
    /// arriving meanwhile (a handler that closes its connection) wait too.
    @exclusivity(unchecked) private var inlineConnection: UInt64?
    /// Async handlers' events waiting for a runner, in the order they arrived, from
    /// `nextJob` on: an array emptied once all are taken (a `CircularBuffer`'s append and
    /// `popFirst` of a struct this size cost about 300 instructions an event).
    @exclusivity(unchecked) private var asyncJobs: [AsyncJob] = []
    @exclusivity(unchecked) private var nextJob = 0
    /// Events taken by runners so far (whether a runner started took any).
    @exclusivity(unchecked) private var jobsTaken = 0
    /// `startRunners` is posted to the loop (it runs once this turn's I/O is done).
    @exclusivity(unchecked) private var runnersScheduled = false
    /// Handlers running (sync ones count while they run; async ones until they finish).
    @exclusivity(unchecked) private var running = 0
    /// Requests finished but not yet reported to the master, by connection (0: UDP).
    @exclusivity(unchecked) private var finished: [UInt64] = []
    @exclusivity(unchecked) private var stopRequested = false
    private var stopAcknowledged = false
    private var stopDeadline: Scheduled<Void>?
    private var nextQuery: UInt32 = 1
    private var queries: [UInt32: EventLoopPromise<ByteBuffer>] = [:]
    @exclusivity(unchecked) private var inReadBatch = false
    @exclusivity(unchecked) private var needsFlush = false
    /// Frames written since the last flush, encoded back to back: one buffer and one
    /// socket write per flush rather than one of each per frame.
    @exclusivity(unchecked) private var outgoing = ByteBuffer()
    private lazy var reader = IPCFrameReader(maxFrameLength: server.settings.maxIPCFrameLength)
    /// Base mode: this worker's own listeners and connections.
    @exclusivity(unchecked) private var local: WorkerReactor?

    /// How each task this worker created will end: in onFinish, or in a waiting `taskwait`.
    private enum TaskWaiter {
        case finish
        case wait(EventLoopPromise<ByteBuffer>, Scheduled<Void>?)
    }
    private var taskWaiters: [UInt64: TaskWaiter] = [:]
    /// Tasks created and not ended; read by `task()` on any thread to refuse at once when full.
    private let outstandingTasks = ManagedAtomic(0)
    private let taskCounter = ManagedAtomic<UInt32>(0)
    /// In a task worker: the task that `finish()` answers, for the handler running it.
    @TaskLocal static var currentTask: UInt64?
    /// In a task worker: tasks already answered by `finish()`.
    private var answeredTasks: Set<UInt64> = []
    /// Requests (or tasks) served, for maxRequest / taskMaxRequest.
    @exclusivity(unchecked) private var served = 0
    private lazy var recycleAfter: Int = {
        let limit = server.isTaskWorker ? server.settings.taskMaxRequest : server.settings.maxRequest
        // A random grace of up to half the limit (Swoole's max_request_grace, gunicorn's
        // jitter), so that workers started together do not all restart together.
        guard limit > 10 else { return limit }
        return limit + Int.random(in: 0...(limit / 2))
    }()
    private var recycleRequested = false
    /// Base mode: the worker's own connections while it stops.
    private enum ConnectionsState { case open, closing, closed }
    private var connectionsState = ConnectionsState.open

    init(server: Server, loop: EpollLoop, pump: EventPump) {
        self.server = server
        self.loop = loop
        self.pump = pump
        self.executor = LoopTaskExecutor(loop)
        if server.settings.mode == .base && server.context.role == .worker {
            local = WorkerReactor(server: server, loop: loop, worker: self)
        }
    }

    /// Runs onWorkerStart, then connects to the master and says hello: only a worker that
    /// is ready announces itself, so the master never dispatches to one still booting.
    func startUp() throws {
        let context = server.context
        switch handlers.workerStart {
        case .sync(let body)?:
            try loop.submit { try body(context.workerId) }.wait()
        case .async(let body)?:
            let promise = loop.makePromise(of: Void.self)
            promise.completeWithTask { try await body(context.workerId) }
            try promise.futureResult.wait()
        case nil:
            break
        }
        let fd = try Syscall.connectAbstract(context.ipcAddress)
        let output = try loop.submit {
            let link = EpollSocket(fd: fd, loop: self.loop, delegate: self)
            try link.start()
            return link
        }.wait()
        try loop.submit {
            self.output = output
            self.write(.hello(role: context.role, workerId: context.workerId, generation: context.generation,
                              pid: getpid(), token: context.token))
            self.flush()
        }.wait()
        logger.debug("worker \(context.workerId) connected to the master")
    }

    // MARK: Outgoing

    /// Sends a message to the master from any thread, in call order per thread.
    func post(_ message: IPCMessage) {
        if loop.inEventLoop {
            write(message)
            if !inReadBatch { flush() }
        } else {
            loop.execute {
                self.write(message)
                if !self.inReadBatch { self.flush() }
            }
        }
    }

    /// An HTTP response's head with its body (or first part). In base mode, on the loop, it
    /// goes to the worker's own connection directly: an `IPCMessage` made and taken apart
    /// for it cost about 700 instructions, a few per cent of a request.
    /// The handler's fields and body go as they are (no array of pairs, no buffer for a
    /// string body: about 1k instructions and three allocations per request).
    func postResponse<Fields: Collection, Body: WireBody>(connection: UInt64, sequence: UInt32, status: Int,
                                                          headers: Fields, body: Body, end: Bool)
    where Fields.Element: WireField {
        if let local, local.owns(connection), loop.inEventLoop {
            local.reactor.respond(connection, sequence: sequence, status: status, headers: headers, body: body, end: end)
            if !inReadBatch { flush() }
            return
        }
        post(.httpResponse(connection: connection, sequence: sequence, status: status,
                           headers: headers.wirePairs,
                           body: body.buffer, end: end))
    }

    private func write(_ message: IPCMessage) {
        if let local {
            switch message {
            case .send(let connection, _), .closeConnection(let connection, _),
                 .httpResponse(let connection, _, _, _, _, _), .httpBody(let connection, _, _, _),
                 .httpSendfile(let connection, _, _, _, _, _, _, _, _):
                // Base mode: this worker's own connection is answered here, without the master.
                if local.owns(connection) {
                    local.reactor.apply(message)
                    return
                }
            default:
                break
            }
        }
        guard output != nil else { return }
        IPCCodec.encode(message, into: &outgoing)
        needsFlush = true
    }

    private func flush() {
        guard needsFlush, let output else { return }
        needsFlush = false
        if !finished.isEmpty {
            IPCCodec.encode(.done(connections: finished), into: &outgoing)
            finished.removeAll(keepingCapacity: true)
        }
        guard outgoing.readableBytes > 0 else { return }
        // Handed over whole; the next frames go into a new buffer (this one is the link's
        // until it is written), sized like the last batch.
        let batch = outgoing
        outgoing = ByteBufferAllocator().buffer(capacity: min(max(batch.readableBytes, 256), 64 * 1024))
        output.send(batch)
    }

    /// Asks the master a question and decodes its JSON answer.
    func ask<T: Decodable & Sendable>(_ query: MasterQuery, _ argument: UInt64) async throws -> T? {
        let answer: ByteBuffer = try await loop.flatSubmit { () -> EventLoopFuture<ByteBuffer> in
            let id = self.nextQuery
            self.nextQuery &+= 1
            if self.nextQuery == 0 { self.nextQuery = 1 }
            let promise = self.loop.makePromise(of: ByteBuffer.self)
            self.queries[id] = promise
            self.write(.request(id: id, query: query, argument: argument))
            if !self.inReadBatch { self.flush() }
            return promise.futureResult
        }.get()
        return try MasterQuery.decode(T.self, from: answer)
    }

    // MARK: Incoming

    private func read(_ bytes: ByteBuffer) throws {
        inReadBatch = true
        try reader.read(bytes) { message in handle(message) }
    }

    /// An event from the master, or in base mode from this worker's own reactor.
    func handle(_ message: IPCMessage) {
        switch message {
        case .connect(let id, _, _), .receive(let id, _, _), .close(let id, _, _), .httpRequest(let id, _, _, _, _):
            handleConnectionEvent(id, queued: message) { startConnectionEvent(id, message) }
        case let .packet(listener, address, port, data):
            let event = PacketEvent(data: data, client: ClientAddress(address: address, port: port, serverSocket: listener))
            run(handlers.packet, event, isRequest: true, what: "onPacket")
        case let .pipeMessage(from, _, data):
            run(handlers.pipeMessage, PipeMessageEvent(from: from, data: data), isRequest: false,
                what: "onPipeMessage")
        case let .response(id, data):
            queries.removeValue(forKey: id)?.succeed(data)
        case let .task(id, source, _, data):
            runTask(ServerTask(id: TaskID(id), sourceWorkerId: source, data: data))
        case let .taskResult(id, _, status, data):
            taskEnded(id, status: status, data: data)
        case .stopping:
            stopAcknowledged = true
            finishStopIfIdle()
        case .send, .closeConnection, .httpResponse, .httpBody, .httpSendfile:
            // Base mode: another worker's reply to a connection of this one.
            local?.reactor.apply(message)
        case .activate:
            if !stopRequested { local?.start() }
        case let .request(id, query, argument):
            write(.response(id: id, data: local?.answer(query, argument) ?? ByteBuffer()))
        default:
            logger.warning("unexpected message from the master: \(message)")
        }
    }

    private func readDone() {
        inReadBatch = false
        flush()
    }

    private func masterGone() -> Never {
        // The master is gone: nobody can receive our replies, so there is nothing to finish.
        for promise in queries.values { promise.fail(ServerError.masterUnreachable) }
        queries.removeAll()
        if !stopRequested { logger.info("the master closed the connection; exiting") }
        exit(0)
    }

    /// Handles one event of a connection whose previous events are all handled; the events
    /// that arrive while its handler runs wait in `queues` and follow in order.
    private func handleConnectionEvent(_ id: UInt64, _ message: IPCMessage) {
        handleConnectionEvent(id) { startConnectionEvent(id, message) }
    }

    /// Runs `start` (the handler of one of connection `id`'s events), which says whether
    /// the handler finishes later.
    private func handleConnectionEvent(_ id: UInt64, _ start: () -> Bool) {
        let outer = inlineConnection
        inlineConnection = id
        let later = start()
        inlineConnection = outer
        if later {
            busy.insert(id)
        } else {
            connectionEventDone(id)
        }
    }

    /// Base mode: a packet of this worker's own connection, as `handle` would take it.
    func handleReceive(connection id: UInt64, reactor: Int, data: ByteBuffer) {
        handleConnectionEvent(id, queued: .receive(connection: id, reactor: reactor, data: data)) {
            startReceive(id, reactor, data)
        }
    }

    /// Base mode: a request of this worker's own connection, as `handle` would take it.
    func handleRequest(connection id: UInt64, reactor: Int, sequence: UInt32, head: HTTPWireHead, body: ByteBuffer) {
        handleConnectionEvent(id, queued: .httpRequest(connection: id, reactor: reactor, sequence: sequence,
                                                       head: head, body: body)) {
            startRequest(id, reactor, sequence, head, body)
        }
    }

    /// An event of connection `id`: `start` runs its handler now, unless an earlier event of
    /// the connection is still being handled; then the event (made only in that case) waits
    /// in `queues`. Inlined: as a call it cost about 50 instructions a packet.
    @inline(__always)
    private func handleConnectionEvent(_ id: UInt64, queued message: @autoclosure () -> IPCMessage,
                                       _ start: () -> Bool) {
        if id == inlineConnection || (!busy.isEmpty && busy.contains(id)) {
            queues[id, default: CircularBuffer()].append(message())
        } else {
            handleConnectionEvent(id, start)
        }
    }

    /// The handler of a connection's event has finished: the next waiting event goes.
    private func connectionEventDone(_ id: UInt64) {
        if !queues.isEmpty, var queue = queues[id], let following = queue.popFirst() {
            queues[id] = queue.isEmpty ? nil : queue
            handleConnectionEvent(id, following)
        }
        if stopRequested { finishStopIfIdle() }
    }

    /// Runs the handler of a connection's event; true when it finishes later (an async
    /// handler: at the end of this loop turn, or after it suspended).
    private func startConnectionEvent(_ id: UInt64, _ message: IPCMessage) -> Bool {
        switch message {
        case let .connect(id, reactor, _):
            return run(handlers.connect, ConnectEvent(connection: ConnectionID(id), reactorId: reactor),
                       isRequest: false, what: "onConnect", connection: id, ordered: id)
        case let .receive(id, reactor, data):
            return startReceive(id, reactor, data)
        case let .httpRequest(id, reactor, sequence, head, body):
            return startRequest(id, reactor, sequence, head, body)
        case let .close(id, reactor, byServer):
            return run(handlers.close, ConnectEvent(connection: ConnectionID(id), reactorId: byServer ? -1 : reactor),
                       isRequest: false, what: "onClose", ordered: id)
        default:
            return false
        }
    }

    /// Runs `onReceive` for a packet of connection `id`; true when it finishes later.
    private func startReceive(_ id: UInt64, _ reactor: Int, _ data: ByteBuffer) -> Bool {
        switch handlers.receive {
        case .sync(let body)?:
            return runNow(isRequest: true, what: "onReceive", connection: id, ordered: id) {
                try body(server, ConnectionID(id), reactor, data)
            }
        case .async(let body)?:
            return runLater(.receive(body, ConnectionID(id), reactor, data), isRequest: true, what: "onReceive",
                            connection: id, ordered: id)
        case nil:
            return unhandled(isRequest: true, connection: id, ordered: id)
        }
    }

    /// Runs `onRequest` for a request of connection `id`; true when it finishes later.
    private func startRequest(_ id: UInt64, _ reactor: Int, _ sequence: UInt32, _ head: HTTPWireHead,
                              _ body: ByteBuffer) -> Bool {
        let request = Request(wire: head, body: body, connection: ConnectionID(id), reactorId: reactor)
        let response = Response(worker: self, connection: id, sequence: sequence,
                                maxChunk: min(server.settings.bufferOutputSize / 2, 256 * 1024))
        switch handlers.request {
        case .sync(let body)?:
            return runNow(isRequest: true, what: "onRequest", connection: id, ordered: id) {
                do {
                    try body(request, response)
                    response.endIfOpen()
                } catch {
                    requestFailed(request, response, error)
                }
            }
        case .async(let body)?:
            return runLater(.request(body, request, response), isRequest: true, what: "onRequest",
                            connection: id, ordered: id)
        case nil:
            logger.error("an HTTP request arrived, but the server has no onRequest handler; answering 500")
            response.fail()
            if local == nil { finished.append(id) }
            return false
        }
    }

    /// Runs one handler: a sync one inline, an async one by a runner at the end of this loop
    /// turn (`startRunners`). A handler that throws closes the connection it was serving.
    /// Returns true when the handler completes later, and then, for a connection's event
    /// (`ordered`), lets the connection's next event go.
    @discardableResult
    private func run<Event: Sendable>(_ callback: Callback<Event>?, _ event: Event, isRequest: Bool, what: String,
                                      connection: UInt64? = nil, ordered: UInt64? = nil) -> Bool {
        switch callback {
        case .sync(let body)?:
            return runNow(isRequest: isRequest, what: what, connection: connection, ordered: ordered) { try body(event) }
        case .async(let body)?:
            return runLater(.event({ try await body(event) }), isRequest: isRequest, what: what,
                            connection: connection, ordered: ordered)
        case nil:
            return unhandled(isRequest: isRequest, connection: connection, ordered: ordered)
        }
    }

    /// An event with no handler; a request is done with at once.
    private func unhandled(isRequest: Bool, connection: UInt64?, ordered: UInt64?) -> Bool {
        if isRequest && local == nil { finished.append(connection ?? 0) }
        if ordered == nil && stopRequested { finishStopIfIdle() }
        return false
    }

    /// Runs a sync handler now, on the loop.
    private func runNow(isRequest: Bool, what: String, connection: UInt64?, ordered: UInt64?,
                        _ body: () throws -> Void) -> Bool {
        running += 1
        do { try body() } catch { handlerFailed(what, connection, error) }
        complete(isRequest: isRequest, connection: connection, ordered: ordered, later: false)
        return false
    }

    /// Queues an async handler's call for this turn's runner; it completes later (`jobFinished`).
    private func runLater(_ call: AsyncCall, isRequest: Bool, what: String, connection: UInt64?,
                          ordered: UInt64?) -> Bool {
        running += 1
        asyncJobs.append(AsyncJob(call: call, what: what, connection: connection, ordered: ordered,
                                  isRequest: isRequest))
        scheduleRunners()
        return true
    }

    /// `onRequest`'s handler threw: a 500, or the connection closed when the head was sent.
    private func requestFailed(_ request: Request, _ response: Response, _ error: Error) {
        logger.error("onRequest handler threw \(error) for \(request.method) \(request.uri)")
        response.fail()
    }

    /// What a runner calls. The hot handlers (`onReceive`, `onRequest`) are called as the
    /// user gave them, with their arguments: no closure is allocated around them, and no
    /// async frame stands between the runner and the handler.
    private enum AsyncCall: Sendable {
        case request(AsyncRequestBody, Request, Response)
        case receive(AsyncReceiveBody, ConnectionID, Int, ByteBuffer)
        case event(@Sendable () async throws -> Void)
    }

    /// An async handler's event, waiting for a runner.
    private struct AsyncJob: Sendable {
        let call: AsyncCall
        let what: String
        let connection: UInt64?
        let ordered: UInt64?
        let isRequest: Bool
    }

    /// Posts `startRunners` to the loop once: it runs after this turn's I/O.
    private func scheduleRunners() {
        guard !runnersScheduled else { return }
        runnersScheduled = true
        loop.execute { self.startRunners() }
    }

    /// Runs the async handlers' events of this loop turn: one task runs them one after
    /// another for as long as none suspends, where a task per event cost about a third of a
    /// base-mode echo's instructions (its creation, its executor preference, its completion).
    /// A handler that suspends keeps its task; the events after it go on in a new one, so a
    /// slow handler holds up only its own connection. Tasks run on this thread until they
    /// first suspend (`Task.immediate`), and resume on this worker's loop (their executor
    /// preference).
    private func startRunners() {
        runnersScheduled = false
        // Like a read batch: what the handlers send goes out together at the end, in one
        // write to the master.
        let outerBatch = inReadBatch
        inReadBatch = true
        while hasWaitingJobs {
            let taken = jobsTaken
            // Returns once the runner has taken every event, or once one of them suspended.
            Task.immediate(executorPreference: executor) { [self] in await runJobs() }
            // Not started here (the runtime enqueued it instead): it runs from the loop.
            if jobsTaken == taken { break }
        }
        inReadBatch = outerBatch
        if !inReadBatch { flush() }
    }

    private var hasWaitingJobs: Bool { nextJob < asyncJobs.count }

    private func takeJob() -> AsyncJob? {
        guard nextJob < asyncJobs.count else { return nil }
        let job = asyncJobs[nextJob]
        nextJob += 1
        jobsTaken &+= 1
        if nextJob == asyncJobs.count {
            asyncJobs.removeAll(keepingCapacity: true)
            nextJob = 0
        }
        return job
    }

    /// A runner: takes the waiting events one at a time, until none is left.
    private func runJobs() async {
        while loop.inEventLoop, let job = takeJob() {
            let failure: Error?
            do {
                switch job.call {
                case .request(let handler, let request, let response):
                    do {
                        try await handler(request, response)
                        response.endIfOpen()
                    } catch {
                        requestFailed(request, response, error)
                    }
                case .receive(let handler, let connection, let reactorId, let data):
                    try await handler(server, connection, reactorId, data)
                case .event(let body):
                    try await body()
                }
                failure = nil
            } catch {
                failure = error
            }
            // Back on the loop (the executor preference), so called directly, without a
            // closure to allocate; the other branch is a safeguard.
            guard loop.inEventLoop else {
                loop.execute {
                    self.jobFinished(job, failure)
                    if self.hasWaitingJobs { self.scheduleRunners() }
                }
                return
            }
            jobFinished(job, failure)
        }
    }

    /// An async handler has returned, on the loop.
    private func jobFinished(_ job: AsyncJob, _ failure: Error?) {
        if let failure { handlerFailed(job.what, job.connection, failure) }
        complete(isRequest: job.isRequest, connection: job.connection, ordered: job.ordered, later: true)
        // A handler that finished in a later turn (it had suspended) sends what it wrote now;
        // those run by `startRunners` send theirs together at its end.
        if !inReadBatch { flush() }
    }

    /// A handler has returned. `later`: in a turn after the one that started it.
    private func complete(isRequest: Bool, connection: UInt64?, ordered: UInt64?, later: Bool) {
        running -= 1
        if isRequest {
            // The master counts what a worker holds only when it dispatched it (process mode).
            if local == nil {
                finished.append(connection ?? 0)
                needsFlush = true
            }
            countServed()
        }
        if let ordered {
            // A connection's event: who started it lets the next one go (at once, or now).
            if later {
                busy.remove(ordered)
                connectionEventDone(ordered)
            }
        } else if stopRequested {
            finishStopIfIdle()
        }
    }

    private func handlerFailed(_ what: String, _ connection: UInt64?, _ error: Error) {
        if let connection {
            logger.error("\(what) handler threw \(error); closing connection \(connection)")
            write(.closeConnection(connection: connection, reset: false))
        } else {
            logger.error("\(what) handler threw \(error)")
        }
    }

    // MARK: Tasks (the worker that asks)

    /// Registers a task and sends it; throws at once when it cannot be sent.
    func submitTask(_ data: ByteBuffer, to target: Int?, waiter: EventLoopPromise<ByteBuffer>?,
                    timeout: Duration? = nil) throws -> TaskID {
        let settings = server.settings
        guard data.readableBytes <= settings.protocol.packageMaxLength else {
            throw TaskError.payloadTooLarge(size: data.readableBytes, max: settings.protocol.packageMaxLength)
        }
        if let target, !(settings.workerNum..<(settings.workerNum + settings.taskWorkerNum)).contains(target) {
            throw TaskError.noTaskWorker("\(target) is not a task worker id")
        }
        if outstandingTasks.loadThenWrappingIncrement(ordering: .relaxed) >= settings.taskQueueLimit {
            outstandingTasks.wrappingDecrement(ordering: .relaxed)
            throw TaskError.queueFull(limit: settings.taskQueueLimit)
        }
        let id = UInt64(UInt32(truncatingIfNeeded: server.context.generation)) << 32
            | UInt64(taskCounter.wrappingIncrementThenLoad(ordering: .relaxed))
        let register: @Sendable () -> Void = { [self] in
            var timer: Scheduled<Void>?
            if let waiter, let timeout {
                timer = loop.scheduleTask(in: .nanoseconds(Int64(timeout.components.seconds) * 1_000_000_000
                                                         + timeout.components.attoseconds / 1_000_000_000)) {
                    guard self.taskWaiters.removeValue(forKey: id) != nil else { return }
                    self.outstandingTasks.wrappingDecrement(ordering: .relaxed)
                    waiter.fail(TaskError.timeout)
                }
            }
            taskWaiters[id] = waiter.map { .wait($0, timer) } ?? .finish
            write(.task(id: id, source: server.context.workerId, target: target ?? -1, data: data))
            if !inReadBatch { flush() }
        }
        if loop.inEventLoop { register() } else { loop.execute(register) }
        return TaskID(id)
    }

    func waitForTask(_ data: ByteBuffer, timeout: Duration, to target: Int?) async throws -> ByteBuffer {
        let promise = loop.makePromise(of: ByteBuffer.self)
        do {
            _ = try submitTask(data, to: target, waiter: promise, timeout: timeout)
        } catch {
            promise.fail(error)
        }
        return try await promise.futureResult.get()
    }

    private func taskEnded(_ id: UInt64, status: TaskStatus, data: ByteBuffer) {
        // Absent: it timed out, and its late result has no one to go to.
        guard let waiter = taskWaiters.removeValue(forKey: id) else { return }
        outstandingTasks.wrappingDecrement(ordering: .relaxed)
        defer { if stopRequested { finishStopIfIdle() } }
        let result: Result<ByteBuffer, TaskError>
        switch status {
        case .ok: result = .success(data)
        case .failed: result = .failure(.failed(String(buffer: data)))
        case .workerDied: result = .failure(.workerDied(String(buffer: data)))
        case .shutdown: result = .failure(.shutdown)
        }
        switch waiter {
        case let .wait(promise, timer):
            timer?.cancel()
            promise.completeWith(result.mapError { $0 as Error })
        case .finish:
            run(handlers.finish, FinishEvent(id: TaskID(id), result: result), isRequest: false, what: "onFinish")
        }
    }

    // MARK: Tasks (the task worker)

    private func runTask(_ task: ServerTask) {
        let id = task.id.rawValue
        guard let handler = handlers.task else {
            write(.taskResult(id: id, source: task.sourceWorkerId, status: .failed,
                              data: ByteBuffer(string: "the server has no onTask handler")))
            return
        }
        running += 1
        Task.immediate(executorPreference: executor) { [self] in
            let outcome: TaskOutcome
            do {
                let result = try await WorkerRuntime.$currentTask.withValue(id) { try await handler(task) }
                outcome = .result(result ?? ByteBuffer())
            } catch {
                outcome = .error("\(error)")
            }
            // Called directly when on the loop (no closure to allocate: the usual case).
            if loop.inEventLoop {
                taskReturned(id, outcome, source: task.sourceWorkerId)
            } else {
                loop.execute { self.taskReturned(id, outcome, source: task.sourceWorkerId) }
            }
        }
    }

    /// A task's handler has returned, on the loop.
    private func taskReturned(_ id: UInt64, _ outcome: TaskOutcome, source: Int) {
        finishTask(id, outcome, source: source)
        answeredTasks.remove(id)
        running -= 1
        countServed()
        if !inReadBatch { flush() }
        if stopRequested { finishStopIfIdle() }
    }

    /// Sends a task's result once (a `finish()` call and the handler's return both end here).
    func finishTask(_ id: UInt64, _ outcome: TaskOutcome, source: Int = -1) {
        guard loop.inEventLoop else {
            loop.execute { self.finishTask(id, outcome, source: source) }
            return
        }
        guard answeredTasks.insert(id).inserted else { return }
        let max = server.settings.protocol.packageMaxLength
        switch outcome {
        case .result(let data) where data.readableBytes > max:
            logger.error("the result of task \(id) is \(data.readableBytes) bytes, over packageMaxLength (\(max)); sending an error instead")
            write(.taskResult(id: id, source: source, status: .failed,
                              data: ByteBuffer(string: "\(TaskError.payloadTooLarge(size: data.readableBytes, max: max))")))
        case .result(let data):
            write(.taskResult(id: id, source: source, status: .ok, data: data))
        case .error(let reason):
            write(.taskResult(id: id, source: source, status: .failed, data: ByteBuffer(string: reason)))
        }
        if !inReadBatch { flush() }
    }

    /// Counts a served request or task; at the limit, asks the manager for a successor. The
    /// manager starts it first and only then stops this one, as in a reload.
    private func countServed() {
        served += 1
        guard recycleAfter > 0, served >= recycleAfter, !recycleRequested, !stopRequested else { return }
        recycleRequested = true
        logger.info("\(server.isTaskWorker ? "task worker" : "worker") \(server.context.workerId) served \(served) \(server.isTaskWorker ? "tasks" : "requests"); recycling it")
        write(.recycle(workerId: server.context.workerId, generation: server.context.generation))
        if !inReadBatch { flush() }
    }

    // MARK: Stopping

    /// Stops taking work, finishes what is running (within maxWaitTime), runs onWorkerStop
    /// and exits.
    func beginStop(reason: String) {
        guard !stopRequested else { return }
        stopRequested = true
        logger.debug("worker \(server.context.workerId) stopping (\(reason))")
        // Base mode: no new connections and no new requests; the open connections are
        // closed once the handlers are done.
        local?.stopAccepting()
        local?.stopReading()
        write(.stopping)
        flush()
        if running > 0 { handlers.workerExit?(server, server.context.workerId) }
        let wait = TimeAmount.milliseconds(Int64(server.settings.maxWaitTime * 1000))
        stopDeadline = loop.scheduleTask(in: wait) {
            self.logger.warning("worker \(self.server.context.workerId) still had \(self.running) handler(s) running after maxWaitTime; exiting anyway")
            self.exitNow()
        }
        finishStopIfIdle()
    }

    /// A stopping worker exits once it has no handler running and no task of its own
    /// waiting for a result: a result must reach the process that asked for it, never be
    /// dropped because that process left (or reach its successor, swoole#1328).
    private func finishStopIfIdle() {
        guard stopRequested, stopAcknowledged, running == 0, taskWaiters.isEmpty else { return }
        exitNow()
    }

    private func exitNow() {
        stopDeadline?.cancel()
        if let local {
            switch connectionsState {
            case .open:
                // Base mode: what the handlers wrote goes out before the connections close.
                connectionsState = .closing
                local.stopAccepting()
                local.closeConnections(within: .seconds(1)).whenComplete { _ in
                    self.connectionsState = .closed
                    self.exitNow()
                }
                return
            case .closing:
                return
            case .closed:
                break
            }
        }
        handlers.workerStop?(server, server.context.workerId)
        flush()
        // Exit once everything written has reached the socket, so no reply is lost.
        guard let output else { exit(0) }
        output.whenSent { exit(0) }
    }
}

/// The worker's link on its own loop: a socket of that loop.
extension WorkerRuntime: EpollSocketDelegate {
    func socketReceived(_ bytes: ByteBuffer) {
        do {
            try read(bytes)
        } catch {
            logger.error("IPC error: \(error)")
            masterGone()
        }
    }

    func socketReadDone() {
        readDone()
    }

    func socketClosed(_ error: Error?) {
        if let error { logger.error("IPC error: \(error)") }
        masterGone()
    }
}
