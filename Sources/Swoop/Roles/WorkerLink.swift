#if canImport(Glibc)
import Glibc
#endif
import Atomics
import CSwoop
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// Where the master's frames for one process go: its IPC link (``MasterLink``), from any
/// thread. The HTTP session's unit tests and fuzz harness put their own.
protocol FrameOutput: AnyObject, Sendable {
    /// The loop the link runs on.
    var loop: EventLoop { get }
    /// False once the link has closed; read from any thread.
    var isOpen: Bool { get }
    /// Writes frames (one or several back to back), in call order per calling thread.
    func write(_ frames: ByteBuffer)
}

/// One generation of one worker slot, as the master sees it: its IPC link and the
/// requests it holds.
final class WorkerEndpoint: @unchecked Sendable {
    let role: ProcessRole
    let workerId: Int
    let generation: Int
    let pid: Int32
    let link: FrameOutput
    /// Requests dispatched to it and not yet reported done (read lock-free by mode 3).
    let inFlight = ManagedAtomic(0)
    /// Requests (tasks, for a task worker) it has finished, for `stats()`.
    let served = ManagedAtomic(0)
    /// The same requests by connection, to close those clients if the worker dies, with
    /// when the worker began the oldest (a connection's requests are handled one after
    /// another, so it began the next when it finished the one before), for the watchdog.
    private let pending = NIOLockedValueBox<[UInt64: (count: Int, since: NIODeadline)]>([:])
    /// The watchdog's state, touched on its loop only: killed, or a liveness probe out.
    var condemned = false
    var probeSentAt: NIODeadline?
    /// Base mode: the master's questions to this worker (about the connections it holds)
    /// waiting for an answer, by id.
    private let questions = NIOLockedValueBox<(next: UInt32, waiting: [UInt32: EventLoopPromise<ByteBuffer>])>((1, [:]))

    init(role: ProcessRole, workerId: Int, generation: Int, pid: Int32, link: FrameOutput) {
        self.role = role
        self.workerId = workerId
        self.generation = generation
        self.pid = pid
        self.link = link
    }

    /// A request of `connection` (0: a datagram) was handed to this worker.
    func began(_ connection: UInt64) {
        inFlight.wrappingIncrement(ordering: .relaxed)
        pending.withLockedValue { pending in
            // One lookup (this runs for every request); the clock is read only for a
            // connection that had nothing pending.
            pending[connection, default: (0, .now())].count += 1
        }
    }

    func finished(_ connections: [UInt64]) {
        inFlight.wrappingDecrement(by: connections.count, ordering: .relaxed)
        served.wrappingIncrement(by: connections.count, ordering: .relaxed)
        pending.withLockedValue { pending in
            var now: NIODeadline?
            for connection in connections {
                guard let index = pending.index(forKey: connection) else { continue }
                if pending.values[index].count > 1 {
                    if now == nil { now = .now() }
                    pending.values[index] = (pending.values[index].count - 1, now!)
                } else {
                    pending.remove(at: index)
                }
            }
        }
    }

    /// When the worker began the request it has been working on longest, if it holds any.
    func oldestRequestStart() -> NIODeadline? {
        pending.withLockedValue { $0.values.lazy.map(\.since).min() }
    }

    /// The connections whose requests this worker held when its connection closed.
    func stranded() -> [UInt64] {
        pending.withLockedValue { pending in
            defer { pending.removeAll() }
            return pending.keys.filter { $0 != 0 }
        }
    }

    /// Asks this worker about its connections; a worker that goes away answers empty.
    func ask(_ query: MasterQuery, _ argument: UInt64) -> EventLoopFuture<ByteBuffer> {
        let promise = link.loop.makePromise(of: ByteBuffer.self)
        let id = questions.withLockedValue { state -> UInt32 in
            let id = state.next
            state.next = state.next == .max ? 1 : state.next + 1
            state.waiting[id] = promise
            return id
        }
        send(.request(id: id, query: query, argument: argument))
        if !link.isOpen { dropQuestions() }
        return promise.futureResult
    }

    func answered(_ id: UInt32, _ data: ByteBuffer) {
        questions.withLockedValue { $0.waiting.removeValue(forKey: id) }?.succeed(data)
    }

    /// Ends every question with an empty answer (the worker is gone).
    func dropQuestions() {
        let waiting = questions.withLockedValue { state in
            defer { state.waiting.removeAll() }
            return Array(state.waiting.values)
        }
        for promise in waiting { promise.succeed(ByteBuffer()) }
    }

    /// Writes frames (one or several back to back).
    func write(_ frames: ByteBuffer) {
        link.write(frames)
    }

    /// Sends from the link's loop, in a later turn even when called on it: for callers
    /// that hold a lock which the link's close handling takes (a failed write closes the
    /// link inline).
    func sendFromLoop(_ message: IPCMessage) {
        let frame = frame(message)
        let link = self.link
        link.loop.execute { link.write(frame) }
    }

    func send(_ message: IPCMessage) {
        write(frame(message))
    }

    private func frame(_ message: IPCMessage) -> ByteBuffer {
        var frame = ByteBufferAllocator().buffer(capacity: 32 + message.payloadSize)
        IPCCodec.encode(message, into: &frame)
        return frame
    }
}

/// The master's end of one IPC connection (a worker's, a task worker's or the manager's):
/// a socket on one of the reactor loops. Its first message must be a hello with the
/// server's token. Touched on its loop only, except `write`, `close` and `isOpen`; its state
/// on the reply path skips the run-time exclusivity check (see ``EpollSocket``).
final class MasterLink: EpollSocketDelegate, FrameOutput, @unchecked Sendable {
    unowned let core: MasterCore
    let epollLoop: EpollLoop
    var loop: EventLoop { epollLoop }
    private var socket: EpollSocket!
    private let open = ManagedAtomic(true)
    private let closed: EventLoopPromise<Void>
    /// Completes once the link is closed and its endpoint unregistered.
    var closeFuture: EventLoopFuture<Void> { closed.futureResult }
    @exclusivity(unchecked) private var reader: IPCFrameReader
    @exclusivity(unchecked) private var endpoint: WorkerEndpoint?
    private var isManager = false
    @exclusivity(unchecked) private var rejected = false
    /// Read once rather than per message.
    private let isBase: Bool
    private let reactorCount: Int
    /// Process mode: the replies of this read, by reactor, handed over at its end.
    @exclusivity(unchecked) private var replies: [[IPCMessage]] = []
    @exclusivity(unchecked) private var hasReplies = false

    init(fd: CInt, loop: EpollLoop, core: MasterCore, maxFrameLength: Int) {
        self.core = core
        epollLoop = loop
        closed = loop.makePromise()
        reader = IPCFrameReader(maxFrameLength: maxFrameLength)
        isBase = core.isBase
        reactorCount = core.reactors.count
        socket = EpollSocket(fd: fd, loop: loop, delegate: self)
    }

    /// Starts reading; on its loop.
    func start() throws {
        try socket.start()
        core.linkOpened(self)
    }

    var isOpen: Bool { open.load(ordering: .relaxed) }

    func write(_ frames: ByteBuffer) {
        if epollLoop.inEventLoop {
            socket.send(frames)
        } else {
            epollLoop.execute { self.socket.send(frames) }
        }
    }

    /// Closes the link, from any thread.
    func close() {
        if epollLoop.inEventLoop {
            socket.close(reset: false)
        } else {
            epollLoop.execute { self.socket.close(reset: false) }
        }
    }

    func socketReceived(_ bytes: ByteBuffer) {
        do {
            try reader.read(bytes) { message in
                if !rejected { handle(message) }
            }
        } catch {
            core.logger.error("IPC connection of worker \(endpoint?.workerId ?? -1): \(error); closing it")
            socket.close(reset: false)
        }
    }

    func socketReadDone() {
        handOverReplies()
    }

    func socketClosed(_ error: Error?) {
        open.store(false, ordering: .relaxed)
        // The last replies of a worker that exited go out before its clients are told.
        handOverReplies()
        core.linkClosed(self)
        if let endpoint {
            core.unregister(endpoint)
            // It holds this link: let go of each other.
            self.endpoint = nil
        }
        if isManager { core.managerLinkLost() }
        closed.succeed(())
    }

    private func handle(_ message: IPCMessage) {
        if let endpoint {
            route(message, from: endpoint)
            return
        }
        if isManager {
            switch message {
            case let .activate(workerId, generation):
                core.activate(workerId: workerId, generation: generation)
            case let .reloadDone(succeeded):
                core.reloadFinished(succeeded: succeeded)
            default:
                core.logger.warning("unexpected message from the manager: \(message)")
            }
            return
        }
        // The token is random per server run and travels only in the children's environment,
        // which other users cannot read (/proc/<pid>/environ is private): a process that
        // knows it was started by this master.
        guard case let .hello(role, workerId, generation, pid, token) = message, token == core.token else {
            core.logger.error("rejected an IPC connection that did not identify itself")
            rejected = true
            socket.close(reset: false)
            return
        }
        if role == .manager {
            isManager = true
            core.managerLinked(self)
            return
        }
        let endpoint = WorkerEndpoint(role: role, workerId: workerId, generation: generation, pid: pid, link: self)
        self.endpoint = endpoint
        core.register(endpoint)
    }

    private func route(_ message: IPCMessage, from endpoint: WorkerEndpoint) {
        switch message {
        case .send(let connection, _), .httpResponse(let connection, _, _, _, _, _), .httpBody(let connection, _, _, _),
             .httpSendfile(let connection, _, _, _, _, _, _, _, _), .closeConnection(let connection, _):
            if isBase {
                core.routeToConnection(connection, message)
            } else {
                if replies.isEmpty { replies = Array(repeating: [], count: reactorCount) }
                replies[Int(connection % UInt64(reactorCount))].append(message)
                hasReplies = true
            }
        case let .sendTo(listener, address, port, data):
            core.sendDatagram(listener: listener, address: address, port: port, data: data)
        case let .done(connections):
            endpoint.finished(connections)
        case let .pipeMessage(from, to, data):
            core.relayPipeMessage(from: from, to: to, data: data)
        case let .request(id, query, argument):
            core.answer(query, argument).whenSuccess { answer in
                guard id != 0 else { return }
                endpoint.send(.response(id: id, data: answer))
            }
        case let .task(id, _, target, data):
            core.tasks.submit(id: id, from: endpoint, target: target, data: data)
        case let .taskResult(id, _, status, data):
            core.tasks.complete(id: id, by: endpoint, status: status, data: data)
        case let .response(id, data):
            endpoint.answered(id, data)
        case let .recycle(workerId, generation):
            core.sendToManager(.recycle(workerId: workerId, generation: generation))
        case .stopping:
            core.retire(endpoint).whenComplete { _ in endpoint.send(.stopping) }
        default:
            core.logger.warning("unexpected message from worker \(endpoint.workerId): \(message)")
        }
    }

    private func handOverReplies() {
        guard hasReplies else { return }
        hasReplies = false
        for index in replies.indices where !replies[index].isEmpty {
            let batch = replies[index]
            replies[index].removeAll(keepingCapacity: true)
            core.reactors[index].onLoop { $0.apply(batch: batch) }
        }
    }
}

extension Reactor {
    /// Runs `body` on this reactor's loop: at once when already there, else as a task.
    @inline(__always)
    func onLoop(_ body: @escaping @Sendable (Reactor) -> Void) {
        if loop.inEventLoop { body(self) } else { loop.execute { body(self) } }
    }
}
