#if canImport(Glibc)
import Glibc
#endif
import Atomics
import CSwoop
import Foundation
import Logging
import NIOCore
import NIOPosix

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
            pump = try EventPump(signals: [SIGTERM, SIGINT, SIGUSR1, SIGUSR2, SIGHUP])
        } catch {
            logger.critical("cannot install signal handlers: \(error)")
            exit(ExitCode.cannotBoot)
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let runtime = WorkerRuntime(server: server, loop: group.next(), pump: pump)
        server.worker = runtime
        do {
            try runtime.startUp()
        } catch {
            logger.critical("worker \(context.workerId) failed to start: \(error)")
            exit(ExitCode.cannotBoot)
        }
        while true {
            let events = pump.wait(timeoutMs: -1)
            for signal in events.signals where signal == SIGTERM || signal == SIGINT {
                runtime.loop.execute { runtime.beginStop(reason: "signal \(signal)") }
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
final class WorkerRuntime: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = IPCMessage

    let server: Server
    let loop: EventLoop
    let pump: EventPump
    private var channel: Channel?
    private var logger: Logger { server.logger }
    private var handlers: Handlers { server.handlers }

    /// Per connection: the events waiting while an async handler of that connection runs,
    /// so that a connection's events are handled one after another, in order.
    private var queues: [UInt64: CircularBuffer<IPCMessage>] = [:]
    private var busy: Set<UInt64> = []
    /// Handlers running (sync ones count while they run; async ones until they finish).
    private var running = 0
    /// Requests finished but not yet reported to the master.
    private var finished = 0
    private var stopRequested = false
    private var stopAcknowledged = false
    private var stopDeadline: Scheduled<Void>?
    private var nextQuery: UInt32 = 1
    private var queries: [UInt32: EventLoopPromise<ByteBuffer>] = [:]
    private var inReadBatch = false
    private var needsFlush = false

    init(server: Server, loop: EventLoop, pump: EventPump) {
        self.server = server
        self.loop = loop
        self.pump = pump
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
        let maxFrame = server.settings.maxIPCFrameLength
        let channel = try ClientBootstrap(group: loop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(IPCDecoder(maxFrameLength: maxFrame)))
                    try channel.pipeline.syncOperations.addHandler(self)
                }
            }
            .withConnectedSocket(fd).wait()
        try loop.submit {
            self.channel = channel
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

    private func write(_ message: IPCMessage) {
        guard let channel else { return }
        var buffer = channel.allocator.buffer(capacity: 64)
        IPCCodec.encode(message, into: &buffer)
        channel.write(buffer, promise: nil)
        needsFlush = true
    }

    private func flush() {
        guard needsFlush, let channel else { return }
        needsFlush = false
        if finished > 0 {
            var buffer = channel.allocator.buffer(capacity: 16)
            IPCCodec.encode(.done(count: finished), into: &buffer)
            channel.write(buffer, promise: nil)
            finished = 0
        }
        channel.flush()
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
        if answer.readableBytes == 0 { return nil }
        return try JSONDecoder().decode(T.self, from: Data(answer.readableBytesView))
    }

    // MARK: Incoming

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        inReadBatch = true
        let message = unwrapInboundIn(data)
        switch message {
        case .connect(let id, _, _), .receive(let id, _, _), .close(let id, _, _):
            if busy.contains(id) {
                queues[id, default: CircularBuffer()].append(message)
            } else {
                handleConnectionEvent(id, message)
            }
        case let .packet(listener, address, port, data):
            let event = PacketEvent(data: data, client: ClientAddress(address: address, port: port, serverSocket: listener))
            run(handlers.packet, event, isRequest: true, what: "onPacket", onFinish: {})
        case let .pipeMessage(from, _, data):
            run(handlers.pipeMessage, PipeMessageEvent(from: from, data: data), isRequest: false,
                what: "onPipeMessage", onFinish: {})
        case let .response(id, data):
            queries.removeValue(forKey: id)?.succeed(data)
        case .stopping:
            stopAcknowledged = true
            finishStopIfIdle()
        default:
            logger.warning("unexpected message from the master: \(message)")
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        inReadBatch = false
        flush()
    }

    func channelInactive(context: ChannelHandlerContext) {
        // The master is gone: nobody can receive our replies, so there is nothing to finish.
        for promise in queries.values { promise.fail(ServerError.masterUnreachable) }
        queries.removeAll()
        if !stopRequested { logger.info("the master closed the connection; exiting") }
        exit(0)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        logger.error("IPC error: \(error)")
        context.close(promise: nil)
    }

    private func handleConnectionEvent(_ id: UInt64, _ message: IPCMessage) {
        let next = { [self] in
            self.busy.remove(id)
            if var queue = self.queues[id], let following = queue.popFirst() {
                self.queues[id] = queue.isEmpty ? nil : queue
                self.handleConnectionEvent(id, following)
            } else {
                self.queues[id] = nil
            }
        }
        busy.insert(id)
        switch message {
        case let .connect(id, reactor, _):
            run(handlers.connect, ConnectEvent(connection: ConnectionID(id), reactorId: reactor),
                isRequest: false, what: "onConnect", connection: id, onFinish: next)
        case let .receive(id, reactor, data):
            run(handlers.receive, ReceiveEvent(connection: ConnectionID(id), reactorId: reactor, data: data),
                isRequest: true, what: "onReceive", connection: id, onFinish: next)
        case let .close(id, reactor, byServer):
            run(handlers.close, ConnectEvent(connection: ConnectionID(id), reactorId: byServer ? -1 : reactor),
                isRequest: false, what: "onClose", onFinish: next)
        default:
            next()
        }
    }

    /// Runs one handler: a sync one inline, an async one as a task that reports back to
    /// the loop. A handler that throws closes the connection it was serving.
    private func run<Event: Sendable>(_ callback: Callback<Event>?, _ event: Event, isRequest: Bool, what: String,
                                      connection: UInt64? = nil, onFinish: @escaping () -> Void) {
        guard let callback else {
            if isRequest { finished += 1 }
            onFinish()
            return
        }
        running += 1
        switch callback {
        case .sync(let body):
            do { try body(event) } catch { handlerFailed(what, connection, error) }
            complete(isRequest: isRequest, onFinish)
        case .async(let body):
            // Task.immediate runs the handler on this thread until it first suspends, so a
            // handler that does not await costs no thread hop; one that does resumes
            // elsewhere and reports back to the loop.
            let finish = NIOLoopBound(onFinish, eventLoop: loop)
            Task.immediate { [self] in
                let failure: Error?
                do { try await body(event); failure = nil } catch { failure = error }
                let report: @Sendable () -> Void = { [self] in
                    if let failure { self.handlerFailed(what, connection, failure) }
                    self.complete(isRequest: isRequest, finish.value)
                    if !self.inReadBatch { self.flush() }
                }
                if loop.inEventLoop { report() } else { loop.execute(report) }
            }
        }
    }

    private func complete(isRequest: Bool, _ onFinish: () -> Void) {
        running -= 1
        if isRequest {
            finished += 1
            needsFlush = true
        }
        onFinish()
        if stopRequested { finishStopIfIdle() }
    }

    private func handlerFailed(_ what: String, _ connection: UInt64?, _ error: Error) {
        if let connection {
            logger.error("\(what) handler threw \(error); closing connection \(connection)")
            write(.closeConnection(connection: connection, reset: false))
        } else {
            logger.error("\(what) handler threw \(error)")
        }
    }

    // MARK: Stopping

    /// Stops taking work, finishes what is running (within maxWaitTime), runs onWorkerStop
    /// and exits.
    func beginStop(reason: String) {
        guard !stopRequested else { return }
        stopRequested = true
        logger.debug("worker \(server.context.workerId) stopping (\(reason))")
        write(.stopping)
        flush()
        let wait = TimeAmount.milliseconds(Int64(server.settings.maxWaitTime * 1000))
        stopDeadline = loop.scheduleTask(in: wait) {
            self.logger.warning("worker \(self.server.context.workerId) still had \(self.running) handler(s) running after maxWaitTime; exiting anyway")
            self.exitNow()
        }
        finishStopIfIdle()
    }

    private func finishStopIfIdle() {
        guard stopRequested, stopAcknowledged, running == 0 else { return }
        exitNow()
    }

    private func exitNow() {
        stopDeadline?.cancel()
        handlers.workerStop?(server, server.context.workerId)
        flush()
        // Exit once everything written has reached the socket, so no reply is lost.
        guard let channel else { exit(0) }
        channel.writeAndFlush(channel.allocator.buffer(capacity: 0)).whenComplete { _ in exit(0) }
    }
}
