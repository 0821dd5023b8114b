import Atomics
import Foundation
import Logging
import NIOCore
import NIOPosix

/// The master's reactor threads and how many connections each holds, so that the
/// acceptor can hand each new connection to the least loaded one.
///
/// Each reactor thread runs Swoop's own loop (``EpollLoop``), which carries the client
/// sockets, the IPC links and the UDP sockets: SwiftNIO's channel pipeline cost the master
/// about a third of its instructions per request (Benchmarks/README.md).
final class ReactorGroup: Sendable {
    let loops: [EpollLoop]
    /// Open connections per reactor; counted up on hand-over, down on close.
    let load: [ManagedAtomic<Int>]

    init(threads: Int) throws {
        loops = try (0..<threads).map { try EpollLoop.start(name: "swoop-reactor-\($0)") }
        load = loops.map { _ in ManagedAtomic(0) }
    }

    /// Stops the loops once the tasks queued on them have run.
    func shutdown() {
        for loop in loops { try? loop.syncShutdownGracefully() }
    }

    /// The index of the reactor with the fewest connections, now counted as holding one more.
    func leastLoaded() -> Int {
        var best = 0
        var bestLoad = Int.max
        for i in loops.indices {
            let value = load[i].load(ordering: .relaxed)
            if value < bestLoad { best = i; bestLoad = value }
        }
        load[best].wrappingIncrement(ordering: .relaxed)
        return best
    }
}

/// The counters of one process's reactors (the master's in process mode, a worker's in
/// base mode), updated without a lock.
final class ReactorStats: Sendable {
    let startTime = Int(Date().timeIntervalSince1970)
    let connectionCount = ManagedAtomic(0)
    let acceptCount = ManagedAtomic(0)
    let closeCount = ManagedAtomic(0)
    let abortCount = ManagedAtomic(0)
    let rejectCount = ManagedAtomic(0)
    let requestCount = ManagedAtomic(0)
    let totalRecvBytes = ManagedAtomic(0)
    let totalSendBytes = ManagedAtomic(0)
    let reloadCount = ManagedAtomic(0)

    /// The connection counters as they are now.
    var counters: ConnectionCounters {
        ConnectionCounters(
            connections: connectionCount.load(ordering: .relaxed), accepted: acceptCount.load(ordering: .relaxed),
            closed: closeCount.load(ordering: .relaxed), aborted: abortCount.load(ordering: .relaxed),
            rejected: rejectCount.load(ordering: .relaxed),
            requests: requestCount.load(ordering: .relaxed), received: totalRecvBytes.load(ordering: .relaxed),
            sent: totalSendBytes.load(ordering: .relaxed))
    }
}

/// One process's connection counters; in base mode each worker reports its own and the
/// master adds them up.
struct ConnectionCounters: Codable, Sendable {
    var connections = 0, accepted = 0, closed = 0, aborted = 0, rejected = 0, requests = 0, received = 0, sent = 0

    static func + (a: ConnectionCounters, b: ConnectionCounters) -> ConnectionCounters {
        ConnectionCounters(connections: a.connections + b.connections, accepted: a.accepted + b.accepted,
                           closed: a.closed + b.closed, aborted: a.aborted + b.aborted, rejected: a.rejected + b.rejected,
                           requests: a.requests + b.requests, received: a.received + b.received, sent: a.sent + b.sent)
    }
}

/// What a reactor needs from the process it runs in: the master in process mode, a worker
/// in base mode.
final class ReactorHost: Sendable {
    let settings: ServerSettings
    let listeners: [ListenerConfig]
    let logger: Logger
    let stats = ReactorStats()
    /// Bytes a reactor may hold for slots without a worker.
    let maxWaitingBytes = 64 * 1024 * 1024

    init(settings: ServerSettings, listeners: [ListenerConfig], logger: Logger) {
        self.settings = settings
        self.listeners = listeners
        self.logger = logger
    }

    /// Closes a connection accepted while `maxConn` were open, and counts it. The first
    /// and every 1000th are logged, so that a flood cannot flood the log too.
    func refuse(_ fd: CInt) {
        Syscall.close(fd)
        let count = stats.rejectCount.wrappingIncrementThenLoad(ordering: .relaxed)
        if count == 1 || count % 1000 == 0 {
            logger.warning("refused a connection: maxConn (\(settings.maxConn)) connections are open (\(count) refused so far)")
        }
    }

    func idleTimeout(listener: Int) -> Double {
        let own = listeners[listener].protocol?.heartbeatIdleTime ?? settings.protocol.heartbeatIdleTime
        if own > 0 { return own }
        let interval = settings.effectiveHeartbeatInterval
        return interval > 0 ? 2 * interval : 0
    }
}

/// One reactor thread's state: its connections, its copy of the worker table and the
/// packets waiting for a worker that is being replaced. Touched only on its own loop, so
/// the per-packet path takes no lock. Its hot state skips the run-time exclusivity check (see
/// ``EpollSocket``).
final class Reactor: @unchecked Sendable {
    let id: Int
    let loop: EventLoop
    let core: ReactorHost
    @exclusivity(unchecked) private(set) var connections = ConnectionTable<ClientConnection>()
    /// The current endpoint of each event worker slot, as last published by the registry.
    @exclusivity(unchecked) private var workers: [WorkerEndpoint?]
    /// Frames for slots that have no worker right now (it crashed and is being respawned).
    private var waiting: [[(request: UInt64?, frame: ByteBuffer)]]
    private var waitingBytes = 0
    @exclusivity(unchecked) private var roundRobin = 0
    private var heartbeat: RepeatedTask?
    private var httpSweep: RepeatedTask?
    /// Base mode: the worker in this process, which gets every event directly. It holds
    /// this reactor (checked in debug builds, unchecked in release: see `HTTPSession`).
    #if DEBUG
    unowned var local: LocalWorker?
    #else
    unowned(unsafe) var local: LocalWorker?
    #endif
    /// Frames for workers written during this loop turn, sent together at its end: one hop
    /// to each worker link's loop per turn rather than one per packet.
    @exclusivity(unchecked) private var outbox: [(endpoint: WorkerEndpoint, frames: ByteBuffer)] = []
    @exclusivity(unchecked) private var outboxScheduled = false
    /// While a batch of replies is applied: the connections written to and not flushed.
    @exclusivity(unchecked) private var batching = false
    @exclusivity(unchecked) private var unflushed: [ClientConnection] = []
    /// Base mode (`ServerSettings.yieldAfterTurn`): yield the CPU after each turn that read.
    var yieldsAfterTurn = false
    private var yieldScheduled = false

    /// Yields the CPU once this loop turn's I/O is done (a task runs after it).
    func yieldAfterTurn() {
        guard !yieldScheduled else { return }
        yieldScheduled = true
        loop.execute { self.yieldScheduled = false; sched_yield() }
    }

    init(id: Int, loop: EventLoop, core: ReactorHost) {
        self.id = id
        self.loop = loop
        self.core = core
        workers = Array(repeating: nil, count: core.settings.workerNum)
        waiting = Array(repeating: [], count: core.settings.workerNum)
    }

    // MARK: Connections

    func add(_ connection: ClientConnection) {
        connections[connection.id] = connection
        core.stats.connectionCount.wrappingIncrement(ordering: .relaxed)
        core.stats.acceptCount.wrappingIncrement(ordering: .relaxed)
        send(.connect(connection: connection.id, reactor: id, listener: connection.listener),
             toSlot: connection.stickySlot, connection: connection.id)
    }

    func remove(_ connection: ClientConnection) {
        guard connections.removeValue(forKey: connection.id) != nil else { return }
        core.stats.connectionCount.wrappingDecrement(ordering: .relaxed)
        core.stats.closeCount.wrappingIncrement(ordering: .relaxed)
        send(.close(connection: connection.id, reactor: id, byServer: connection.closedByServer),
             toSlot: connection.stickySlot, connection: connection.id)
    }

    /// Takes over an accepted socket as one of this reactor's connections; `closed` runs
    /// when it closes (or could not be taken over).
    func adopt(_ fd: CInt, id: UInt64, sequence: UInt64, listener index: Int, serverPort: Int,
               closed: @escaping @Sendable () -> Void) {
        let listener = core.listeners[index]
        let framing = listener.protocol ?? core.settings.protocol
        let outputLimit = core.settings.bufferOutputSize
        guard let loop = loop as? EpollLoop else {
            preconditionFailure("a reactor takes sockets over on Swoop's own loop only")
        }
        // Done on the accepting thread, before the hand-over: the reactor's loop serves
        // the connections it has meanwhile.
        if listener.type == .tcp { try? Syscall.setSocketOption(fd, CInt(IPPROTO_TCP), TCP_NODELAY, CInt(1)) }
        let peer = Syscall.peerAddress(fd)
        let start: @Sendable () -> Void = { [self] in
            let connection = ClientConnection(id: id, sequence: sequence, listener: index, reactor: self,
                                              remoteIP: peer.ip, remotePort: peer.port, serverPort: serverPort,
                                              framing: framing)
            // An HTTP client may shut down its sending side after its last request and still
            // read the responses (HTTPSession closes once they are sent).
            let transport = SocketTransport(fd: fd, loop: loop, connection: connection, outputLimit: outputLimit,
                                            allowsHalfClosure: framing.openHTTPProtocol, closed: closed)
            do {
                try transport.start()
            } catch {
                core.logger.warning("could not take over an accepted connection: \(error)")
                Syscall.close(fd)
                connection.transport = nil
                closed()
            }
        }
        if loop.inEventLoop { start() } else { loop.execute(start) }
    }

    /// Writes a worker's reply to its client; a closed connection drops it.
    func deliver(_ connection: UInt64, _ data: ByteBuffer) {
        guard let client = connections[connection] else { return }
        core.stats.totalSendBytes.wrappingIncrement(by: data.readableBytes, ordering: .relaxed)
        guard batching || client.reading else {
            client.write(data, flush: true)
            return
        }
        // Inside a batch of replies (process mode) or while the client's own bytes are read
        // (base mode, a handler that did not suspend): one flush at the batch's end, in
        // apply(batch:) or in the connection's readComplete.
        client.write(data, flush: false)
        if batching && !client.unflushed { unflushed.append(client) }
        client.unflushed = true
    }

    func close(_ connection: UInt64, reset: Bool, reason: String? = nil) {
        guard let client = connections[connection] else { return }
        client.closedByServer = true
        if let reason { core.logger.info("closing connection \(connection): \(reason)") }
        client.transport?.close(reset: reset)
    }

    /// Carries out a batch of workers' instructions (read from one IPC link in one go), with
    /// one flush per connection at the end.
    func apply(batch: [IPCMessage]) {
        batching = true
        for message in batch { apply(message) }
        batching = false
        for client in unflushed where client.unflushed {
            client.unflushed = false
            client.flush()
        }
        unflushed.removeAll(keepingCapacity: true)
    }

    /// An HTTP response's head with its body (or first part), for one of this reactor's connections.
    func respond<Fields: Collection, Body: WireBody>(_ connection: UInt64, sequence: UInt32, status: Int,
                                                     headers: Fields, body: Body, end: Bool)
    where Fields.Element: WireField {
        connections[connection]?.http?.response(sequence: sequence, status: status, headers: headers, body: body,
                                                end: end)
    }

    /// Carries out a worker's instruction for one of this reactor's connections: a reply,
    /// an HTTP response or a part of one, a close.
    func apply(_ message: IPCMessage) {
        switch message {
        case let .send(connection, data):
            deliver(connection, data)
        case let .httpResponse(connection, sequence, status, headers, body, end):
            respond(connection, sequence: sequence, status: status, headers: headers, body: body, end: end)
        case let .httpBody(connection, sequence, data, end):
            connections[connection]?.http?.responseBody(sequence: sequence, data: data, end: end)
        case let .httpSendfile(connection, sequence, status, headers, path, device, inode, offset, length):
            connections[connection]?.http?.sendfile(sequence: sequence, status: status, headers: headers, path: path,
                                                    identity: (device, inode), offset: offset, length: length)
        case let .closeConnection(connection, reset):
            close(connection, reset: reset)
        default:
            core.logger.warning("a reactor cannot carry out \(message)")
        }
    }

    // MARK: Dispatch

    /// Hands a client's packet to a worker chosen by the dispatch mode.
    func dispatch(_ connection: ClientConnection, _ data: ByteBuffer) {
        core.stats.requestCount.wrappingIncrement(ordering: .relaxed)
        core.stats.totalRecvBytes.wrappingIncrement(by: data.readableBytes, ordering: .relaxed)
        // Base mode: the worker in this process serves every connection it accepted.
        if let local { return local.handleReceive(connection: connection.id, reactor: id, data: data) }
        let slot = chooseSlot(connection: connection.id, remoteIP: connection.remoteIP, sticky: connection.stickySlot,
                              ipSlot: connection.ipSlot, data: data)
        send(.receive(connection: connection.id, reactor: id, data: data), toSlot: slot,
             connection: connection.id, isRequest: true)
    }

    /// Hands a whole HTTP request to a worker chosen by the dispatch mode.
    func dispatchHTTP(_ connection: ClientConnection, sequence: UInt32, head: ParsedRequestHead, body: ByteBuffer) {
        core.stats.requestCount.wrappingIncrement(ordering: .relaxed)
        if let local {
            return local.handleRequest(connection: connection.id, reactor: id, sequence: sequence, head: head.wire,
                                       body: body)
        }
        let slot = chooseSlot(connection: connection.id, remoteIP: connection.remoteIP,
                              sticky: connection.stickySlot, ipSlot: connection.ipSlot, data: body)
        let holder = send(.httpRequest(connection: connection.id, reactor: id, sequence: sequence, head: head.wire, body: body),
                          toSlot: slot, connection: connection.id, isRequest: true)
        connection.http?.heldBy = holder.map(ObjectIdentifier.init)
    }

    /// Hands a UDP datagram to a worker: the ip-hash modes by the client's address, the
    /// others in turn.
    func dispatchPacket(listener: Int, address: String, port: Int, data: ByteBuffer) {
        core.stats.requestCount.wrappingIncrement(ordering: .relaxed)
        let n = workers.count
        let slot: Int
        switch core.settings.dispatchMode.kind {
        case .fixed, .ipHash: slot = ClientConnection.hash(address) % n
        default: slot = chooseSlot(connection: 0, remoteIP: address, sticky: 0, ipSlot: ClientConnection.hash(address) % n, data: data)
        }
        send(.packet(listener: listener, address: address, port: port, data: data), toSlot: slot,
             connection: 0, isRequest: true)
    }

    private func chooseSlot(connection: UInt64, remoteIP: String, sticky: Int, ipSlot: Int, data: ByteBuffer) -> Int {
        let n = workers.count
        switch core.settings.dispatchMode.kind {
        case .fixed:
            return sticky
        case .ipHash:
            return ipSlot
        case .roundRobin:
            roundRobin = (roundRobin + 1) % n
            return roundRobin
        case .preemptive:
            // The idle worker first: the one with the fewest requests in hand, scanning from
            // a rotating start so that equally idle workers share the load.
            roundRobin = (roundRobin + 1) % n
            var best = roundRobin
            var bestLoad = Int.max
            for step in 0..<n {
                let slot = (roundRobin + step) % n
                guard let endpoint = workers[slot] else { continue }
                let load = endpoint.inFlight.load(ordering: .relaxed)
                if load < bestLoad { best = slot; bestLoad = load }
                if load == 0 { break }
            }
            return best
        case .custom(let choose):
            let head = data.getSlice(at: data.readerIndex, length: min(data.readableBytes, 8192)) ?? data
            let chosen = choose(DispatchContext(connection: ConnectionID(connection), remoteAddress: remoteIP, data: head))
            return ((chosen % n) + n) % n
        }
    }

    /// Writes a frame to the slot's worker and returns it; nil when the frame waits for one.
    @discardableResult
    private func send(_ message: IPCMessage, toSlot slot: Int, connection: UInt64, isRequest: Bool = false) -> WorkerEndpoint? {
        if let local {
            local.handle(message)
            return nil
        }
        if let endpoint = workers[slot] {
            if isRequest { endpoint.began(connection) }
            post(message, to: endpoint)
            return endpoint
        }
        // No worker in this slot right now: hold the frame until its replacement arrives,
        // within a bound, so a crash loop cannot grow the master without limit.
        var frame = ByteBufferAllocator().buffer(capacity: 32 + message.payloadSize)
        IPCCodec.encode(message, into: &frame)
        if waitingBytes + frame.readableBytes > core.maxWaitingBytes {
            core.logger.warning("no worker in slot \(slot) and the waiting queue is full; dropping a packet of connection \(connection)")
            if connection != 0 { close(connection, reset: false) }
            return nil
        }
        waitingBytes += frame.readableBytes
        waiting[slot].append((isRequest ? connection : nil, frame))
        return nil
    }

    /// Encodes a frame for a worker into this turn's buffer for it, written when the turn's
    /// I/O is done: one buffer and one write per worker per turn.
    private func post(_ message: IPCMessage, to endpoint: WorkerEndpoint) {
        if let index = outbox.firstIndex(where: { $0.endpoint === endpoint }) {
            IPCCodec.encode(message, into: &outbox[index].frames)
        } else {
            var frames = ByteBufferAllocator().buffer(capacity: max(1024, 32 + message.payloadSize))
            IPCCodec.encode(message, into: &frames)
            outbox.append((endpoint, frames))
        }
        if !outboxScheduled {
            outboxScheduled = true
            // A task runs after this turn's I/O: every packet read in it is in the outbox.
            loop.execute { self.flushOutbox() }
        }
    }

    private func flushOutbox() {
        outboxScheduled = false
        guard !outbox.isEmpty else { return }
        let batches = outbox
        outbox.removeAll(keepingCapacity: true)
        for (endpoint, frames) in batches { endpoint.write(frames) }
    }

    /// Takes a new table of event workers from the registry and flushes what waited for them.
    func publish(_ table: [WorkerEndpoint?]) {
        // What was dispatched under the old table goes out first: a retired worker's
        // acknowledgement, sent once every reactor has applied the new table, must follow
        // every frame it was given.
        flushOutbox()
        workers = table
        for slot in waiting.indices where !waiting[slot].isEmpty {
            guard let endpoint = workers[slot] else { continue }
            for (request, frame) in waiting[slot] {
                if let request {
                    endpoint.began(request)
                    connections[request]?.http?.heldBy = ObjectIdentifier(endpoint)
                }
                waitingBytes -= frame.readableBytes
                endpoint.write(frame)
            }
            waiting[slot].removeAll()
        }
    }

    // MARK: Heartbeat

    /// Scans this reactor's connections every `interval` seconds and closes those idle
    /// (nothing received) for longer than their listener's idle time.
    func startHeartbeat(interval: Double) {
        let delay = TimeAmount.milliseconds(Int64(interval * 1000))
        heartbeat = loop.scheduleRepeatedTask(initialDelay: delay, delay: delay) { [unowned self] _ in
            let now = NIODeadline.now()
            for connection in self.connections.values {
                let idle = self.core.idleTimeout(listener: connection.listener)
                guard idle > 0 else { continue }
                if now - connection.lastReceive > TimeAmount.milliseconds(Int64(idle * 1000)) {
                    self.close(connection.id, reset: false, reason: "idle for more than \(idle) s (heartbeat)")
                }
            }
        }
    }

    func stopHeartbeat() {
        heartbeat?.cancel()
        httpSweep?.cancel()
    }

    /// Checks the HTTP connections' timeouts every 50 ms, from the first one armed on. One
    /// repeated task per reactor instead of one scheduled task per request and timeout.
    func sweepHTTPTimers() {
        guard httpSweep == nil else { return }
        httpSweep = loop.scheduleRepeatedTask(initialDelay: .milliseconds(50), delay: .milliseconds(50)) { [unowned self] _ in
            let now = NIODeadline.now()
            let due = connections.values.compactMap { connection -> HTTPSession? in
                guard let session = connection.http, let timer = session.timer, timer.deadline <= now else { return nil }
                return session
            }
            for session in due { session.fireTimer(now: now) }
        }
    }

    func closeAll() {
        for connection in connections.values { connection.transport?.close(reset: false) }
    }
}

extension IPCMessage {
    /// The bytes a message carries besides its header, to size its buffer once.
    var payloadSize: Int {
        switch self {
        case .receive(_, _, let data), .packet(_, _, _, let data), .send(_, let data), .pipeMessage(_, _, let data),
             .task(_, _, _, let data), .taskResult(_, _, _, let data):
            return data.readableBytes + 64
        case .httpRequest(_, _, _, let head, let body):
            return body.readableBytes + head.target.utf8.count
                + head.headers.reduce(64) { $0 + $1.name.utf8.count + $1.value.utf8.count + 8 }
        case .httpResponse(_, _, _, let headers, let body, _):
            return body.readableBytes + headers.reduce(64) { $0 + $1.name.utf8.count + $1.value.utf8.count + 8 }
        case .httpBody(_, _, let data, _):
            return data.readableBytes + 32
        case .httpSendfile(_, _, _, let headers, let path, _, _, _, _):
            return path.utf8.count + headers.reduce(96) { $0 + $1.name.utf8.count + $1.value.utf8.count + 8 }
        default: return 0
        }
    }
}

/// A client connection, owned by one reactor (the master's in process mode, a worker's in
/// base mode): its framing, its bookkeeping and its events, whatever moves its bytes.
/// Touched on its reactor's loop only; its hot state skips the run-time exclusivity check
/// (see ``EpollSocket``).
final class ClientConnection: @unchecked Sendable {
    let id: UInt64
    let listener: Int
    let reactor: Reactor
    /// Set once, right after init; let go when the connection closes (the transport holds
    /// the connection too).
    @exclusivity(unchecked) var transport: ClientTransport?
    let remoteIP: String
    let remotePort: Int
    let serverPort: Int
    let connectTime = Date().timeIntervalSince1970
    @exclusivity(unchecked) var lastReceive = NIODeadline.now()
    /// The wall-clock time of `lastReceive`, worked out when asked (one clock read per
    /// packet rather than two).
    var lastReceiveWall: Double {
        Date().timeIntervalSince1970 - Double((NIODeadline.now() - lastReceive).nanoseconds) / 1e9
    }
    @exclusivity(unchecked) var closedByServer = false
    /// Between a read's first packet and the end of the read.
    @exclusivity(unchecked) var reading = false
    /// Replies written during the read and not flushed yet.
    @exclusivity(unchecked) var unflushed = false
    /// The worker of this connection's connect/close events and of its packets in mode 2.
    let stickySlot: Int
    /// The worker of its packets in mode 4.
    let ipSlot: Int
    /// The HTTP side of the connection, on an HTTP listener.
    private(set) var http: HTTPSession?
    /// Cuts the stream into packets on a listener with framing; nil when each read is a packet.
    @exclusivity(unchecked) private var packets: PacketReader?
    /// `packets` is reading (a close meanwhile does not touch it).
    @exclusivity(unchecked) private var readingPackets = false
    /// The connection closed or its stream failed to frame: nothing more it sent is handed
    /// over (no packet after the close event).
    @exclusivity(unchecked) private var closing = false

    init(id: UInt64, sequence: UInt64, listener: Int, reactor: Reactor, remoteIP: String, remotePort: Int,
         serverPort: Int, framing: ProtocolSettings) {
        self.id = id
        self.listener = listener
        self.reactor = reactor
        self.remoteIP = remoteIP
        self.remotePort = remotePort
        self.serverPort = serverPort
        let n = reactor.core.settings.workerNum
        stickySlot = Int(sequence % UInt64(n))
        ipSlot = Self.hash(remoteIP) % n
        if framing.openHTTPProtocol {
            http = HTTPSession(connection: self, settings: framing)
        } else if framing.openEOFSplit {
            packets = PacketReader(.eof(EOFFramer(eof: framing.packageEOF, maxLength: framing.packageMaxLength)))
        } else if framing.openLengthCheck {
            packets = PacketReader(.length(LengthFieldFramer(
                lengthType: framing.packageLengthType, lengthOffset: framing.packageLengthOffset,
                bodyOffset: framing.packageBodyOffset, maxLength: framing.packageMaxLength)))
        }
    }

    /// A stable hash of an address (Swift's `hashValue` is seeded per process, and the
    /// workers' choice must not change when the master restarts).
    static func hash(_ text: String) -> Int {
        var h: UInt32 = 2_166_136_261
        for byte in text.utf8 { h = (h ^ UInt32(byte)) &* 16_777_619 }
        return Int(h & 0x7fff_ffff)
    }

    /// The connection is up: the reactor counts it and reports it (onConnect).
    func opened() {
        reactor.add(self)
        http?.opened()
    }

    /// Bytes from the client: HTTP requests, or packets (each read is one without framing).
    func received(_ data: ByteBuffer) {
        guard !closing else { return }
        touched()
        reading = true
        if let http { return http.received(data) }
        guard packets != nil else { return reactor.dispatch(self, data) }
        // Read in place (taking it out and putting it back copied it twice per read). A
        // base-mode handler may close the connection from inside a dispatch: `closed()` then
        // leaves the reader alone, as it must in the middle of its read.
        readingPackets = true
        do {
            try packets?.read(data) { packet in
                reactor.dispatch(self, packet)
                return !closing
            }
        } catch {
            readingPackets = false
            closing = true
            packets = nil
            return failed(error)
        }
        readingPackets = false
        if closing { packets = nil }
    }

    /// The read is over: the replies written during it go out together.
    func readComplete() {
        reading = false
        if unflushed {
            unflushed = false
            transport?.flush()
        }
        if reactor.yieldsAfterTurn { reactor.yieldAfterTurn() }
    }

    /// Writes (and flushes) bytes to the client.
    func write(_ data: ByteBuffer, flush: Bool) {
        transport?.write(data, flush: flush)
    }

    func flush() {
        transport?.flush()
    }

    /// Bytes arrived: the connection is not idle.
    func touched() {
        lastReceive = Syscall.coarseNow()
    }

    /// The client shut down its sending side, on an HTTP listener (where it is allowed).
    func inputClosed() {
        http?.clientInputClosed()
    }

    /// The connection closed: the packets still whole in what was read go before the close
    /// event (onClose).
    func closed() {
        http?.closed()
        if !readingPackets, var reader = packets {
            packets = nil
            do {
                try reader.finish { packet in
                    reactor.dispatch(self, packet)
                    return true
                }
            } catch {
                failed(error)
            }
        }
        closing = true
        reactor.remove(self)
        transport = nil
    }

    /// The client does not read what it is sent: closed rather than allowed to grow this
    /// process's memory past bufferOutputSize.
    func outputExceeded() {
        reactor.close(id, reset: true, reason: "output buffer exceeded bufferOutputSize (the client does not read)")
    }

    /// Logs why the connection fails and closes it.
    func failed(_ error: Error) {
        if let framing = error as? FramingError {
            reactor.core.logger.warning("connection \(id) from \(remoteIP):\(remotePort): \(framing); closing it")
            reactor.core.stats.abortCount.wrappingIncrement(ordering: .relaxed)
        } else if let io = error as? IOError, [ECONNRESET, EPIPE].contains(io.errnoCode) {
            reactor.core.stats.abortCount.wrappingIncrement(ordering: .relaxed)
        } else if let system = error as? SystemError, [ECONNRESET, EPIPE].contains(system.errno) {
            reactor.core.stats.abortCount.wrappingIncrement(ordering: .relaxed)
        } else {
            reactor.core.logger.info("connection \(id): \(error); closing it")
        }
        closedByServer = true
        transport?.close(reset: false)
    }

    func info() -> ClientInfo {
        ClientInfo(remoteIP: remoteIP, remotePort: remotePort, reactorId: reactor.id, serverPort: serverPort,
                   connectTime: connectTime, lastReceiveTime: lastReceiveWall)
    }
}
