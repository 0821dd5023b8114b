import CSwoop
import Logging
import NIOCore
@_exported import struct NIOCore.ByteBuffer
#if canImport(Glibc)
import Glibc
#endif

/// A server with Swoole's process model: a master whose reactor threads own the client
/// sockets, a manager that keeps `workerNum` workers and `taskWorkerNum` task workers alive,
/// and workers that run your handlers.
///
/// ```swift
/// var settings = ServerSettings()
/// settings.protocol.openEOFSplit = true
/// settings.protocol.packageEOF = Array("\n".utf8)
/// let server = Server(host: "127.0.0.1", port: 9501, settings: settings)
/// server.onReceive { server, connection, reactorId, data in
///     try server.send(connection, data)
/// }
/// try server.start()
/// ```
///
/// Swoop starts every process from the program's executable, so the code before
/// `start()` runs in each of them: configure the server there, and open per-process
/// resources (database connections, caches) in `onWorkerStart`. In the master, `start()`
/// returns after the server has stopped; in every other process it never returns.
public final class Server: @unchecked Sendable {
    // Mutable only before start(), read-only afterwards: that is what makes the class Sendable.
    // The two read on every event skip the run-time exclusivity check (see `EpollSocket`):
    // nothing writes them once events flow.
    @exclusivity(unchecked) var handlers = Handlers()
    var listeners: [ListenerConfig]
    /// The settings; change them before ``start()``.
    @exclusivity(unchecked) public var settings: ServerSettings
    private var started = false

    /// The process this `Server` object lives in, known once `start()` runs.
    let context: ProcessContext
    /// The worker side, in worker and task worker processes.
    var worker: WorkerRuntime?
    /// The master side, in the master process.
    var master: Master?
    /// The user and group of the workers and task workers, from the settings.
    var credentials: Credentials?
    /// Writes this process's log lines (to `settings.logFile`, or standard error).
    public private(set) var logger: Logger

    /// Creates a server whose main listener is `host:port` (port 0: any free port).
    public init(host: String = "0.0.0.0", port: Int = 9501, type: SocketType = .tcp,
                settings: ServerSettings = ServerSettings()) {
        self.settings = settings
        self.listeners = [ListenerConfig(host: host, port: port, type: type, protocol: nil)]
        self.context = ProcessContext.current
        self.logger = Logger(label: "swoop")
    }

    // MARK: Listeners

    /// Adds another port served by the same workers, with its own framing (nil: the
    /// server's). Returns the listener's index, which `ClientAddress.serverSocket` reports.
    @discardableResult
    public func addListener(host: String, port: Int, type: SocketType,
                            protocol settings: ProtocolSettings? = nil) -> Int {
        listeners.append(ListenerConfig(host: host, port: port, type: type, protocol: settings))
        return listeners.count - 1
    }

    /// The port each listener is bound to, in the order they were added (in the master,
    /// once started, in every process: port 0 is resolved to the port the system chose).
    public var ports: [Int] {
        master?.boundPorts ?? (context.ports.count == listeners.count ? context.ports : listeners.map(\.port))
    }

    // MARK: Identity

    /// This worker's id: 0..<workerNum for workers, then the task workers; -1 elsewhere.
    public var workerId: Int { context.workerId }
    /// Whether this process is a task worker.
    public var isTaskWorker: Bool { context.role == .taskWorker }
    /// This process's pid.
    public var workerPid: Int32 { getpid() }
    /// The master's pid.
    public var masterPid: Int32 { context.masterPid }
    /// The manager's pid (0 in the master before the manager started).
    public var managerPid: Int32 { master?.managerPid ?? context.managerPid }

    // MARK: Handlers

    /// Runs in the master once every worker is up and the listeners accept.
    public func onStart(_ handler: @escaping @Sendable (Server) -> Void) { handlers.start = handler }
    /// Runs in the master after every other process has exited.
    public func onShutdown(_ handler: @escaping @Sendable (Server) -> Void) { handlers.shutdown = handler }
    /// Runs in the manager once it has started the workers.
    public func onManagerStart(_ handler: @escaping @Sendable (Server) -> Void) { handlers.managerStart = handler }
    /// Runs in the manager after every worker has exited, before it exits.
    public func onManagerStop(_ handler: @escaping @Sendable (Server) -> Void) { handlers.managerStop = handler }
    /// Runs in the manager when a worker or task worker exits abnormally (a crash, a
    /// signal, a non-zero exit code), before it is replaced.
    public func onWorkerError(_ handler: @escaping @Sendable (Server, _ workerId: Int, _ pid: Int32,
                                                              _ exitCode: Int32, _ signal: Int32) -> Void) {
        handlers.workerError = { server, exit in handler(server, exit.workerId, exit.pid, exit.exitCode, exit.signal) }
    }
    /// Runs in the manager when a reload begins.
    public func onBeforeReload(_ handler: @escaping @Sendable (Server) -> Void) { handlers.beforeReload = handler }
    /// Runs in the manager when a reload has completed: every old worker has exited.
    public func onAfterReload(_ handler: @escaping @Sendable (Server) -> Void) { handlers.afterReload = handler }
    /// Runs in a worker that is stopping (reload, recycle, shutdown) while it still finishes
    /// the work it holds: cancel timers and close what would keep it busy.
    public func onWorkerExit(_ handler: @escaping @Sendable (Server, _ workerId: Int) -> Void) {
        handlers.workerExit = handler
    }
    /// Runs in each worker and task worker before it takes work.
    public func onWorkerStart(_ handler: @escaping @Sendable (Server, _ workerId: Int) throws -> Void) {
        handlers.workerStart = .sync { [unowned self] id in try handler(self, id) }
    }
    /// Runs in each worker and task worker before it takes work; may await.
    public func onWorkerStart(_ handler: @escaping @Sendable (Server, _ workerId: Int) async throws -> Void) {
        handlers.workerStart = .async { [unowned self] id in try await handler(self, id) }
    }
    /// Runs in a worker that stops (shutdown, reload, recycle) once it has finished its work.
    public func onWorkerStop(_ handler: @escaping @Sendable (Server, _ workerId: Int) -> Void) {
        handlers.workerStop = handler
    }
    /// A client connected.
    public func onConnect(_ handler: @escaping @Sendable (Server, ConnectionID, _ reactorId: Int) throws -> Void) {
        handlers.connect = .sync { [unowned self] e in try handler(self, e.connection, e.reactorId) }
    }
    /// A client connected; may await.
    public func onConnect(_ handler: @escaping @Sendable (Server, ConnectionID, _ reactorId: Int) async throws -> Void) {
        handlers.connect = .async { [unowned self] e in try await handler(self, e.connection, e.reactorId) }
    }
    /// A packet arrived (framed by the listener's protocol settings).
    ///
    /// The packets of one connection are handled one after another, in order; other
    /// connections are served meanwhile. A handler that throws closes that connection.
    public func onReceive(_ handler: @escaping @Sendable (Server, ConnectionID, _ reactorId: Int, ByteBuffer) throws -> Void) {
        handlers.receive = .sync(handler)
    }
    /// A packet arrived; may await. The handler runs on the worker's event loop, and resumes
    /// there after each await.
    public func onReceive(
        _ handler: nonisolated(nonsending) @escaping @Sendable (Server, ConnectionID, _ reactorId: Int, ByteBuffer)
            async throws -> Void
    ) {
        handlers.receive = .async(handler)
    }
    /// A connection ended; `reactorId` is -1 when the server closed it.
    public func onClose(_ handler: @escaping @Sendable (Server, ConnectionID, _ reactorId: Int) throws -> Void) {
        handlers.close = .sync { [unowned self] e in try handler(self, e.connection, e.reactorId) }
    }
    /// A connection ended; may await.
    public func onClose(_ handler: @escaping @Sendable (Server, ConnectionID, _ reactorId: Int) async throws -> Void) {
        handlers.close = .async { [unowned self] e in try await handler(self, e.connection, e.reactorId) }
    }
    /// A UDP datagram arrived; answer with ``sendto(_:_:_:serverSocket:)``.
    public func onPacket(_ handler: @escaping @Sendable (Server, ByteBuffer, ClientAddress) throws -> Void) {
        handlers.packet = .sync { [unowned self] e in try handler(self, e.data, e.client) }
    }
    /// A UDP datagram arrived; may await.
    public func onPacket(_ handler: @escaping @Sendable (Server, ByteBuffer, ClientAddress) async throws -> Void) {
        handlers.packet = .async { [unowned self] e in try await handler(self, e.data, e.client) }
    }
    /// Another worker sent this one a message with ``sendMessage(_:toWorker:)``.
    public func onPipeMessage(_ handler: @escaping @Sendable (Server, _ fromWorkerId: Int, ByteBuffer) throws -> Void) {
        handlers.pipeMessage = .sync { [unowned self] e in try handler(self, e.from, e.data) }
    }
    /// Another worker sent this one a message; may await.
    public func onPipeMessage(_ handler: @escaping @Sendable (Server, _ fromWorkerId: Int, ByteBuffer) async throws -> Void) {
        handlers.pipeMessage = .async { [unowned self] e in try await handler(self, e.from, e.data) }
    }

    // MARK: Running

    /// Starts the server. In the master it returns once the server has stopped (SIGTERM,
    /// SIGINT or ``shutdown()``); in the manager and the workers it never returns.
    ///
    /// With ``ServerSettings/daemonize``, the process that calls it starts the server in the
    /// background and waits: it exits with status 0 once the daemon is ready (its pid file
    /// written, `onStart` run), and otherwise throws the error the daemon's start failed
    /// with (a port in use, a pid file held by a running server, an unwritable log file).
    ///
    /// ```swift
    /// do {
    ///     try server.start()
    /// } catch {
    ///     print("cannot start: \(error)")   // also for a daemon that failed to start
    ///     exit(1)
    /// }
    /// ```
    public func start() throws {
        guard !started else { throw ServerError.alreadyStarted }
        started = true
        let handshake = context.role == .master ? Daemon.Handshake.current : nil
        do {
            try prepare()
            if context.role == .master && settings.daemonize && handshake == nil {
                _ = try Daemon.launch(settings: settings, executable: context.executable,
                                      arguments: ProcessTitle.originalArguments)
                exit(0)
            }
            try ServerLog.bootstrapIfNeeded(settings: settings, context: context)
            logger = try ServerLog.makeLogger(settings: settings, context: context)
        } catch {
            handshake?.failed(error)
            throw error
        }
        switch context.role {
        case .master:
            let master = Master(server: self)
            self.master = master
            do {
                try master.run()
            } catch {
                handshake?.failed(error)
                throw error
            }
            if let handshake, handshake.isPending {
                handshake.failed(ServerError.daemonFailed(reason: "the server stopped before it was ready; see the log"))
            }
        case .manager:
            Manager(server: self).run()
        case .worker, .taskWorker:
            WorkerProcess(server: self).run()
        }
    }

    /// Checks the settings and, in the master, that no running server holds the pid file
    /// and that the log file can be opened.
    private func prepare() throws {
        try settings.validate()
        for (index, listener) in listeners.enumerated() where listener.protocol != nil {
            try listener.protocol!.validate(prefix: "listener[\(index)].protocol.")
        }
        if settings.reactorNum > settings.workerNum { settings.reactorNum = settings.workerNum }
        // Base mode: the master's one loop carries only IPC; the workers own the clients.
        if settings.mode == .base { settings.reactorNum = 1 }
        settings.listenersPackageMaxLength = listeners.compactMap { $0.protocol?.packageMaxLength }.max() ?? 0
        let credentials = try Credentials.resolve(user: settings.user, group: settings.group)
        self.credentials = credentials
        LogSink.fileOwner = credentials
        guard context.role == .master else { return }
        if let credentials, geteuid() != 0, credentials.uid != geteuid() || credentials.gid != getegid() {
            throw ServerError.invalidSetting(name: settings.user != nil ? "user" : "group",
                                             reason: "changing the workers' user needs the server to start as root")
        }
        _ = try LogSink.shared(path: settings.logFile, rotation: settings.logRotation)
        if let path = settings.pidFile {
            if case let .master(pid) = PidFile(path: path).holder() {
                throw ServerError.alreadyRunning(pid: pid, pidFile: path)
            }
            let directory = path.contains("/") ? String(path[..<path.lastIndex(of: "/")!]) : "."
            if access(directory.isEmpty ? "/" : directory, W_OK) != 0 {
                throw ServerError.invalidSetting(name: "pidFile",
                                                 reason: "cannot write in \(directory): \(String(cString: strerror(errno)))")
            }
        }
    }

    // MARK: Talking to clients (workers)

    /// Sends `data` to a client, through the reactor that owns its connection; sends from
    /// one worker reach the client in the order they were made. A connection that has
    /// closed drops the data.
    public func send(_ connection: ConnectionID, _ data: ByteBuffer) throws {
        let worker = try requireWorker("send")
        guard data.readableBytes <= settings.bufferOutputSize else {
            throw ServerError.payloadTooLarge(size: data.readableBytes, max: settings.bufferOutputSize)
        }
        worker.post(.send(connection: connection.rawValue, data: data))
    }

    /// Sends a string's UTF-8 bytes to a client.
    public func send(_ connection: ConnectionID, _ text: String) throws {
        try send(connection, ByteBuffer(string: text))
    }

    /// Sends a UDP datagram from listener `serverSocket` (the one that received the request).
    public func sendto(_ address: String, _ port: Int, _ data: ByteBuffer, serverSocket: Int = -1) throws {
        let worker = try requireWorker("sendto")
        let index = serverSocket >= 0 ? serverSocket : (listeners.firstIndex { $0.type == .udp } ?? 0)
        worker.post(.sendTo(listener: index, address: address, port: port, data: data))
    }

    /// Answers a UDP client.
    public func sendto(_ client: ClientAddress, _ data: ByteBuffer) throws {
        try sendto(client.address, client.port, data, serverSocket: client.serverSocket)
    }

    /// Closes a client connection (`reset`: with a TCP RST, dropping unsent data).
    public func close(_ connection: ConnectionID, reset: Bool = false) throws {
        try requireWorker("close").post(.closeConnection(connection: connection.rawValue, reset: reset))
    }

    /// Sends `message` to another worker or task worker, whose `onPipeMessage` receives it.
    public func sendMessage(_ message: ByteBuffer, toWorker workerId: Int) throws {
        let worker = try requireWorker("sendMessage")
        guard (0..<(settings.workerNum + settings.taskWorkerNum)).contains(workerId) else {
            throw ServerError.noSuchWorker(workerId)
        }
        worker.post(.pipeMessage(from: context.workerId, to: workerId, data: message))
    }

    /// Whether a connection is still open.
    public func exists(_ connection: ConnectionID) async throws -> Bool {
        let answer: Bool? = try await requireWorker("exists").ask(.exists, connection.rawValue)
        return answer ?? false
    }

    /// What the master knows of a connection, or nil when it is closed.
    public func clientInfo(_ connection: ConnectionID) async throws -> ClientInfo? {
        try await requireWorker("clientInfo").ask(.clientInfo, connection.rawValue)
    }

    /// The open connections.
    public func connections() async throws -> [ConnectionID] {
        let ids: [UInt64]? = try await requireWorker("connections").ask(.connections, 0)
        return (ids ?? []).map(ConnectionID.init)
    }

    /// The server's counters.
    public func stats() async throws -> ServerStats {
        guard let stats: ServerStats = try await requireWorker("stats").ask(.stats, 0) else {
            throw ServerError.masterUnreachable
        }
        return stats
    }

    /// Replaces every worker and task worker (or only the task workers), as SIGUSR1 and
    /// SIGUSR2 do. Connections stay open.
    public func reload(taskWorkersOnly: Bool = false) throws {
        if let master { master.requestReload(taskWorkersOnly: taskWorkersOnly); return }
        try requireWorker("reload").post(.request(id: 0, query: taskWorkersOnly ? .reloadTaskWorkers : .reload, argument: 0))
    }

    /// Stops the whole server gracefully, as SIGTERM to the master does.
    public func shutdown() throws {
        if let master { master.requestShutdown(); return }
        try requireWorker("shutdown").post(.request(id: 0, query: .shutdown, argument: 0))
    }

    private func requireWorker(_ call: String) throws -> WorkerRuntime {
        guard let worker else { throw ServerError.notInWorker(call) }
        return worker
    }
}

/// One listening socket and its framing.
struct ListenerConfig: Sendable {
    var host: String
    var port: Int
    var type: SocketType
    var `protocol`: ProtocolSettings?
}
