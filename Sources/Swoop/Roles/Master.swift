#if canImport(Glibc)
import Glibc
#endif
import CSwoop
import Foundation
import Logging
import NIOCore
import NIOPosix

/// The master process: it binds the listeners, starts the manager, runs the acceptor and
/// the reactor threads, and stops everything on SIGTERM.
///
/// Start-up order matters. The listeners are bound and the manager is spawned before any
/// NIO thread exists, so a bind error fails `start()` before a single process was created;
/// the manager is spawned by fork+exec from C either way, which stays safe once threads run.
final class Master: MasterEvents, @unchecked Sendable {
    let server: Server
    private var logger: Logger { server.logger }
    private var settings: ServerSettings { server.settings }
    private let pump: EventPump
    private(set) var boundPorts: [Int] = []
    private(set) var managerPid: Int32 = 0
    private var core: MasterCore!
    private var acceptor: Acceptor?
    /// The IPC listener, on the first reactor's loop.
    private var ipcListener: EpollListener?
    /// The control socket, on a NIO loop of its own (it is rarely used, and its SO_PEERCRED
    /// check and line protocol are NIO handlers).
    private var controlGroup: MultiThreadedEventLoopGroup?
    private var controlChannel: Channel?
    /// The TCP and Unix listeners, served by the acceptor.
    private var streamListeners: [(fd: CInt, index: Int)] = []
    private var context: ProcessContext

    private enum State { case starting, running, stopping, stopped }
    private var state = State.starting
    private var managerExited = false
    private var shutdownDeadline: NIODeadline?
    /// Copies the counters into swift-metrics every second.
    private var metricsTask: RepeatedTask?

    init(server: Server) {
        self.server = server
        var context = server.context
        var random = SystemRandomNumberGenerator()
        context.token = random.next()
        context.ipcAddress = "swoop.\(getpid()).\(String(random.next() as UInt32, radix: 16))"
        self.context = context
        // Signal handlers are installed before any thread starts, so no thread can take a
        // signal by its default action.
        do {
            pump = try EventPump(signals: [SIGTERM, SIGINT, SIGUSR1, SIGUSR2, SIGCHLD, SIGHUP, SIGWINCH])
        } catch {
            fatalError("cannot install signal handlers: \(error)")
        }
    }

    func run() throws {
        // Orphans of a dead manager are re-parented to the master, which reaps them.
        _ = cswoop_set_child_subreaper()
        var sockets: [(fd: CInt, port: Int)] = []
        for listener in server.listeners {
            switch listener.type {
            case .tcp, .udp:
                do {
                    sockets.append(try Syscall.bindInet(host: listener.host, port: listener.port,
                                                        udp: listener.type == .udp, backlog: settings.backlog,
                                                        reusePort: false))
                } catch let error as SystemError {
                    sockets.forEach { Syscall.close($0.fd) }
                    throw ServerError.bindFailed(host: listener.host, port: listener.port,
                                                 reason: String(cString: strerror(error.errno)))
                }
            case .unixStream:
                let fd = try Syscall.retrying("bind", listener.host) {
                    cswoop_listen_unix_path(listener.host, CInt(settings.backlog), CInt(settings.unixSocketMode))
                }
                if let owner = try Credentials.resolve(user: settings.unixSocketUser, group: settings.unixSocketGroup) {
                    _ = try Syscall.retrying("chown", listener.host) { chown(listener.host, owner.uid, owner.gid) }
                }
                sockets.append((fd, 0))
            }
        }
        boundPorts = sockets.map(\.port)
        if let path = settings.pidFile, case let .stale(_, reason) = PidFile(path: path).holder() {
            logger.notice("the pid file \(path) is stale (\(reason)); it will be replaced")
        }
        let ipcListener = try Syscall.listenAbstract(context.ipcAddress, backlog: 1024)
        ProcessTitle.set("\(ProcessTitle.programName): master")
        // Base mode: the workers accept, on sockets the manager passes down to them.
        let inherited: [CInt?] = settings.mode == .process ? [] : zip(server.listeners, sockets).map {
            $0.type == .udp ? nil : $1.fd
        }
        try spawnManager(listening: inherited)
        inherited.compactMap { $0 }.forEach(Syscall.close)

        core = try MasterCore(settings: settings, listeners: server.listeners, logger: logger,
                              token: context.token, events: self)
        let core = self.core!
        try startIPC(ipcListener)
        do {
            let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
            controlGroup = group
            controlChannel = try ControlServer.start(on: group.next(), actions: self, logger: logger)
        } catch {
            // The server is still useful without it; only stop/reload/status need it.
            logger.warning("no control socket: \(error)")
        }
        metricsTask = core.reactors[0].loop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { _ in
            _ = core.freshStats()
        }
        for (index, listener) in server.listeners.enumerated() where settings.mode == .process || listener.type == .udp {
            try startListener(index: index, listener, socket: sockets[index].fd)
        }
        if settings.mode == .process {
            let acceptor = try Acceptor(listeners: streamListeners, logger: logger) { [unowned self] fd, index in
                self.adopt(fd, listener: index)
            }
            self.acceptor = acceptor
            acceptor.start()
            let heartbeat = settings.effectiveHeartbeatInterval
            if heartbeat > 0 {
                for reactor in core.reactors { reactor.loop.execute { reactor.startHeartbeat(interval: heartbeat) } }
            }
        }
        core.startWatchdog()
        state = .running
        let reactors = settings.mode == .base ? "base mode" : "\(settings.reactorNum) reactor(s)"
        logger.info("master started: \(reactors), \(settings.workerNum) worker(s), \(settings.taskWorkerNum) task worker(s), ports \(boundPorts)")
        mainLoop()
    }

    /// Starts the manager; in base mode it gets the stream listeners' sockets (nil: a UDP
    /// listener, which stays with the master), to pass on to every worker.
    private func spawnManager(listening: [CInt?]) throws {
        var environment = context.childEnvironment(role: .manager, workerId: -1, generation: 0, managerPid: 0)
        environment[ProcessContext.portsKey] = boundPorts.map(String.init).joined(separator: ",")
        var command = Spawner.Command(path: context.executable, arguments: ProcessTitle.originalArguments,
                                      environment: environment)
        if !listening.isEmpty {
            var numbers: [CInt] = []
            for (index, fd) in listening.enumerated() {
                guard let fd else { numbers.append(-1); continue }
                let number = CInt(3 + index)
                command.descriptors.append((fd, number))
                numbers.append(number)
            }
            command.environment[ProcessContext.listenKey] = numbers.map(String.init).joined(separator: ",")
        }
        managerPid = try Spawner.spawn(command)
    }

    /// Accepts the workers', task workers' and manager's IPC connections on the first
    /// reactor, and spreads the links over the reactors in turn.
    private func startIPC(_ fd: CInt) throws {
        let core = self.core!
        let loops = core.reactorGroup.loops
        let maxFrame = settings.maxIPCFrameLength
        let logger = self.logger
        var next = 0
        let listener = EpollListener(fd: fd, loop: loops[0], logger: logger) { connection in
            let loop = loops[next % loops.count]
            next += 1
            loop.execute {
                let link = MasterLink(fd: connection, loop: loop, core: core, maxFrameLength: maxFrame)
                do {
                    try link.start()
                } catch {
                    logger.error("cannot serve an IPC connection: \(error)")
                    Syscall.close(connection)
                }
            }
        }
        try loops[0].submit { try listener.start() }.wait()
        ipcListener = listener
    }

    private func startListener(index: Int, _ listener: ListenerConfig, socket: CInt) throws {
        let core = self.core!
        switch listener.type {
        case .udp:
            let reactor = core.reactors[index % core.reactors.count]
            let stats = core.stats
            let logger = self.logger
            let datagrams = DatagramSocket(fd: socket, loop: core.reactorGroup.loops[reactor.id]) { data, ip, port in
                stats.totalRecvBytes.wrappingIncrement(by: data.readableBytes, ordering: .relaxed)
                reactor.dispatchPacket(listener: index, address: ip, port: port, data: data)
            } failed: { error in
                logger.warning("UDP listener \(index): \(error)")
            }
            try reactor.loop.submit { try datagrams.start() }.wait()
            core.datagramSockets.withLockedValue { $0[index] = datagrams }
        case .tcp, .unixStream:
            streamListeners.append((socket, index))
        }
    }

    /// Wraps an accepted connection in a channel on the least loaded reactor.
    private func adopt(_ fd: CInt, listener index: Int) {
        let core = self.core!
        let open = core.reactorGroup.load.reduce(0) { $0 + $1.load(ordering: .relaxed) }
        if open >= settings.maxConn {
            core.host.refuse(fd)
            return
        }
        let reactorIndex = core.reactorGroup.leastLoaded()
        let reactor = core.reactors[reactorIndex]
        let sequence = core.connectionSequence.wrappingIncrementThenLoad(ordering: .relaxed)
        let id = sequence * UInt64(core.reactors.count) + UInt64(reactorIndex)
        reactor.adopt(fd, id: id, sequence: sequence, listener: index, serverPort: boundPorts[index]) {
            core.reactorGroup.load[reactorIndex].wrappingDecrement(ordering: .relaxed)
        }
    }

    // MARK: The main thread

    private func mainLoop() {
        while state != .stopped {
            var timeout: Int32 = -1
            if let deadline = shutdownDeadline {
                timeout = Int32(max(0, (deadline - .now()).nanoseconds / 1_000_000))
            }
            let events = pump.wait(timeoutMs: timeout)
            for signal in events.signals { handle(signal: signal) }
            for work in events.work { work() }
            if let deadline = shutdownDeadline, deadline <= .now(), !managerExited {
                logger.warning("the manager did not stop in time; killing it")
                Syscall.kill(managerPid, SIGKILL)
                shutdownDeadline = .now() + .seconds(2)
            }
        }
    }

    private func handle(signal: CInt) {
        switch signal {
        case SIGTERM, SIGINT:
            beginShutdown(reason: signal == SIGTERM ? "SIGTERM" : "SIGINT")
        case SIGUSR1:
            requestReloadNow(taskWorkersOnly: false)
        case SIGUSR2:
            requestReloadNow(taskWorkersOnly: true)
        case SIGCHLD:
            reapChildren()
        case SIGWINCH:
            reopenLogs()
        default:
            break
        }
    }

    private func reapChildren() {
        while let exit = Syscall.reapChild() {
            guard exit.pid == managerPid else { continue }
            managerExited = true
            if state == .stopping {
                finishShutdown()
            } else {
                logger.error("the manager (pid \(exit.pid)) exited unexpectedly (exit code \(exit.exitCode), signal \(exit.signal)); shutting down")
                beginShutdown(reason: "manager exited")
            }
        }
    }

    func requestReload(taskWorkersOnly: Bool, done: (@Sendable (Bool?) -> Void)? = nil) {
        pump.post { self.requestReloadNow(taskWorkersOnly: taskWorkersOnly, done: done) }
    }

    private func requestReloadNow(taskWorkersOnly: Bool, done: (@Sendable (Bool?) -> Void)? = nil) {
        guard state == .running else {
            done?(nil)
            return
        }
        core.stats.reloadCount.wrappingIncrement(ordering: .relaxed)
        logger.info("reloading \(taskWorkersOnly ? "the task workers" : "all workers")")
        core.reloadRequested(done: done)
        // A message rather than a signal: two signals sent close together can merge into
        // one, and the reload waiters count on one reload per request.
        if !core.sendToManager(.reload(taskWorkersOnly: taskWorkersOnly)) {
            Syscall.kill(managerPid, taskWorkersOnly ? SIGUSR2 : SIGUSR1)
        }
    }

    /// SIGWINCH: every process reopens its log file, so that logrotate can move it away.
    /// The master reopens its own and tells the manager, which tells each worker.
    private func reopenLogs() {
        for error in LogSink.reopenAll() { logger.error("cannot reopen the log: \(error)") }
        if settings.logFile != nil { logger.info("log file reopened") }
        if managerPid > 0 && !managerExited { Syscall.kill(managerPid, SIGWINCH) }
    }

    func requestShutdown(reason: String = "shutdown()") {
        pump.post { self.beginShutdown(reason: reason) }
    }

    // MARK: MasterEvents

    func allWorkersReady() {
        pump.post {
            guard self.state == .running else { return }
            if let path = self.settings.pidFile {
                do {
                    try PidFile(path: path).write(getpid())
                } catch {
                    self.logger.error("cannot write the pid file: \(error)")
                    if let handshake = Daemon.Handshake.current, handshake.isPending {
                        // A daemon nobody can find is not started: say so, and stop.
                        handshake.failed(ServerError.invalidSetting(name: "pidFile", reason: "cannot write \(path): \(error)"))
                        self.beginShutdown(reason: "the pid file cannot be written")
                        return
                    }
                }
            }
            self.server.handlers.start?(self.server)
            Daemon.Handshake.current?.ready(pid: getpid())
        }
    }

    func managerLinkLost() {
        pump.post {
            guard self.state == .running else { return }
            self.logger.error("lost the connection to the manager; shutting down")
            self.beginShutdown(reason: "manager link lost")
        }
    }

    func reload(taskWorkersOnly: Bool) { requestReload(taskWorkersOnly: taskWorkersOnly) }
    func shutdown() { requestShutdown() }
}

extension Master: ControlActions {
    func controlStatus() -> ServerStatus {
        let stats = core.statsSnapshot()
        return ServerStatus(
            masterPid: getpid(), managerPid: managerPid, startTime: stats.start_time,
            uptime: Date().timeIntervalSince1970 - Double(stats.start_time),
            reloading: core.reloads.withLockedValue { $0.expected > 0 },
            swoopVersion: SwoopVersion.current, stats: stats)
    }

    func controlReload(taskWorkersOnly: Bool, done: @escaping @Sendable (Bool?) -> Void) {
        requestReload(taskWorkersOnly: taskWorkersOnly, done: done)
    }

    func controlStop() { requestShutdown(reason: "stop request on the control socket") }

    func controlReopenLogs() { pump.post { self.reopenLogs() } }

    // MARK: Stopping

    /// Stops accepting, asks the manager to stop the workers (they finish what they hold,
    /// within maxWaitTime) and waits for it; clients keep receiving replies meanwhile.
    private func beginShutdown(reason: String) {
        guard state == .running || state == .starting else { return }
        state = .stopping
        logger.info("shutting down (\(reason))")
        acceptor?.stop()
        if managerExited {
            finishShutdown()
            return
        }
        Syscall.kill(managerPid, SIGTERM)
        shutdownDeadline = .now() + .milliseconds(Int64((2 * settings.maxWaitTime + 1) * 1000))
    }

    private func finishShutdown() {
        shutdownDeadline = nil
        metricsTask?.cancel()
        for done in core.reloads.withLockedValue({ $0.cancelAll() }) { done(nil) }
        try? controlChannel?.close().wait()
        try? controlGroup?.syncShutdownGracefully()
        if let ipcListener { try? core.reactors[0].loop.submit { ipcListener.close() }.wait() }
        for datagrams in core.datagramSockets.withLockedValue({ Array($0.values) }) {
            try? datagrams.loop.submit { datagrams.close() }.wait()
        }
        core.closeEverything()
        core.reactorGroup.shutdown()
        // Workers of a manager that died were re-parented to the master (a subreaper): they
        // die with their parent (PR_SET_PDEATHSIG), and the master reaps them.
        Syscall.reapAllChildren(within: .seconds(2))
        server.handlers.shutdown?(server)
        if let path = settings.pidFile { PidFile(path: path).remove(ifHolding: getpid()) }
        logger.info("server stopped")
        state = .stopped
    }
}
