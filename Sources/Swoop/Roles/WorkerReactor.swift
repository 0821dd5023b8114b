#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import NIOCore
import NIOPosix

/// Base mode: the worker in the reactor's own process, which gets its connections' events
/// directly, without the master.
protocol LocalWorker: AnyObject {
    func handle(_ message: IPCMessage)
    /// A packet and an HTTP request, without an IPC message made and taken apart for them
    /// (about 300 instructions each).
    func handleReceive(connection: UInt64, reactor: Int, data: ByteBuffer)
    func handleRequest(connection: UInt64, reactor: Int, sequence: UInt32, head: HTTPWireHead, body: ByteBuffer)
}

/// Base mode: a worker's own listeners and connections (Swoole's SWOOLE_BASE).
///
/// Every event worker inherits the listening sockets and accepts on them itself, so a
/// connection lives in the worker that accepted it: its bytes are framed, handled and
/// answered in one process, with no hop through the master. The reactor is the one the
/// master uses in process mode, run on the worker's loop, and it hands each event straight
/// to the worker's handlers.
///
/// A connection id is the accepting worker's generation (unique for the server's life) in
/// the high 32 bits and a sequence number in the low ones: a worker that sends to another
/// worker's connection goes through the master, which finds the owner by the generation.
final class WorkerReactor: @unchecked Sendable {
    let reactor: Reactor
    private let server: Server
    private let descriptors: [CInt]
    private let generation: UInt64
    /// Accepts on the inherited sockets once the worker is active.
    private var acceptor: Acceptor?
    private var sequence: UInt32 = 0
    /// Connections taken over and not closed yet (on the loop), for `maxConn`.
    private var open = 0
    private var started = false

    var loop: EventLoop { reactor.loop }
    var stats: ReactorStats { reactor.core.stats }

    init(server: Server, loop: EventLoop, worker: LocalWorker) {
        self.server = server
        descriptors = server.context.listenDescriptors
        generation = UInt64(UInt32(truncatingIfNeeded: server.context.generation))
        let host = ReactorHost(settings: server.settings, listeners: server.listeners, logger: server.logger)
        // Swoole's base mode reports the worker id as the reactor id.
        reactor = Reactor(id: server.context.workerId, loop: loop, core: host)
        reactor.local = worker
        reactor.yieldsAfterTurn = server.settings.yieldAfterTurn
    }

    /// Whether `connection` was accepted by this worker.
    func owns(_ connection: UInt64) -> Bool { connection >> 32 == generation }

    /// Starts accepting: the master's word that this worker is active (a new generation of
    /// a reload waits on standby until the reload commits).
    func start() {
        loop.assertInEventLoop()
        guard !started else { return }
        started = true
        // -1: a UDP listener, whose datagrams the master's loop reads and dispatches (a
        // socket shared by several processes' event loops would wake them all for each one).
        let streams = descriptors.enumerated().filter { $0.element >= 0 }.map { (fd: $0.element, index: $0.offset) }
        guard descriptors.count == server.listeners.count, !streams.isEmpty else {
            if descriptors.count != server.listeners.count {
                server.logger.critical("base mode: \(descriptors.count) inherited listening socket(s) for \(server.listeners.count) listener(s); this worker accepts nothing")
            }
            return
        }
        do {
            // An accept thread of its own rather than NIO's ServerBootstrap: every worker
            // polls the same sockets, and all but one find nothing to accept when a
            // connection arrives, which the acceptor takes in its stride.
            let ports = server.context.ports
            let acceptor = try Acceptor(listeners: streams, logger: server.logger) { [self] fd, index in
                loop.execute { [self] in
                    if open >= server.settings.maxConn {
                        reactor.core.refuse(fd)
                        return
                    }
                    sequence &+= 1
                    if sequence == 0 { sequence = 1 }
                    open += 1
                    reactor.adopt(fd, id: generation << 32 | UInt64(sequence), sequence: UInt64(sequence), listener: index,
                                  serverPort: index < ports.count ? ports[index] : 0) { [self] in
                        loop.execute { self.open -= 1 }
                    }
                }
            }
            acceptor.start()
            self.acceptor = acceptor
        } catch {
            server.logger.critical("base mode: cannot accept: \(error)")
        }
        let heartbeat = server.settings.effectiveHeartbeatInterval
        if heartbeat > 0 { reactor.startHeartbeat(interval: heartbeat) }
    }

    /// Stops accepting; the connections already open stay open. The other workers go on
    /// accepting on the same sockets.
    func stopAccepting() {
        loop.assertInEventLoop()
        started = true
        acceptor?.stop()
        acceptor = nil
    }

    /// Reads no more requests from the open connections: a stopping worker finishes those it
    /// holds and then closes them, rather than take new ones (under steady load it would
    /// otherwise never be idle, and would wait out maxWaitTime).
    func stopReading() {
        loop.assertInEventLoop()
        for connection in reactor.connections.values { connection.transport?.stopReading() }
    }

    /// Closes every connection once what was written to it has gone out (or `within` has
    /// passed), and completes when they are closed.
    func closeConnections(within limit: TimeAmount) -> EventLoopFuture<Void> {
        loop.assertInEventLoop()
        reactor.stopHeartbeat()
        let deadline = NIODeadline.now() + limit
        let closed = reactor.connections.values.compactMap { connection -> EventLoopFuture<Void>? in
            guard let transport = connection.transport else { return nil }
            connection.closedByServer = true
            closeWhenSent(transport, deadline: deadline)
            return transport.closeFuture
        }
        return EventLoopFuture.andAllComplete(closed, on: loop)
    }

    private func closeWhenSent(_ transport: ClientTransport, deadline: NIODeadline) {
        if transport.bufferedBytes == 0 || NIODeadline.now() >= deadline {
            transport.close(reset: false)
            return
        }
        loop.scheduleTask(in: .milliseconds(10)) { self.closeWhenSent(transport, deadline: deadline) }
    }

    /// Answers the master's question about this worker's connections, as JSON.
    func answer(_ query: MasterQuery, _ argument: UInt64) -> ByteBuffer {
        switch query {
        case .stats: return MasterQuery.encode(stats.counters)
        case .exists: return MasterQuery.encode(reactor.connections[argument] != nil)
        case .clientInfo: return MasterQuery.encode(reactor.connections[argument]?.info())
        case .connections: return MasterQuery.encode(reactor.connections.ids)
        default: return ByteBuffer()
        }
    }
}
