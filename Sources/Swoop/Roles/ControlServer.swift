#if canImport(Glibc)
import Glibc
#endif
import CSwoop
import Foundation
import Logging
import NIOCore
import NIOPosix

/// What the control socket asks of the master; the master answers on its main thread.
protocol ControlActions: AnyObject, Sendable {
    func controlStatus() -> ServerStatus
    /// Starts a reload; `done` gets its outcome (nil: it could not start or never ended).
    func controlReload(taskWorkersOnly: Bool, done: @escaping @Sendable (Bool?) -> Void)
    func controlStop()
    func controlReopenLogs()
}

/// The master's control socket: an abstract Unix socket named after the master's pid
/// (`@swoop-control.<pid>`), so that a command that read the pid file finds it without a
/// socket file to create, clean up or protect. Only processes of the master's user (or
/// root) may talk to it: each peer's uid is checked with SO_PEERCRED when it connects.
///
/// The protocol is one request line, one JSON reply line (``ControlReply``):
/// `status`, `stop`, `reload`, `reload task-workers`, `reopen-logs`. A reload is answered
/// once it has completed or rolled back, so the client learns its outcome.
final class ControlServer {
    static func socketName(masterPid: pid_t) -> String { "swoop-control.\(masterPid)" }

    /// Binds the socket and serves it on `loop`.
    static func start(on loop: EventLoop, actions: ControlActions, logger: Logger) throws -> Channel {
        let fd = try Syscall.listenAbstract(socketName(masterPid: getpid()), backlog: 16)
        let uid = geteuid()
        return try ServerBootstrap(group: loop)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        ByteToMessageHandler(EOFFramer(eof: Array("\n".utf8), maxLength: 4096)))
                    try channel.pipeline.syncOperations.addHandler(
                        ControlHandler(actions: actions, logger: logger, uid: uid))
                }
            }
            .withBoundSocket(fd).wait()
    }
}

/// One control connection.
final class ControlHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let actions: ControlActions
    private let logger: Logger
    private let uid: uid_t
    /// Set once the peer's uid was checked; lines before that wait.
    private var trusted = false
    private var early: [ByteBuffer] = []

    init(actions: ControlActions, logger: Logger, uid: uid_t) {
        self.actions = actions
        self.logger = logger
        self.uid = uid
    }

    func channelActive(context: ChannelHandlerContext) {
        context.fireChannelActive()
        guard let provider = context.channel as? SocketOptionProvider else {
            context.close(promise: nil)
            return
        }
        let credentials: EventLoopFuture<cswoop_ucred> = provider.unsafeGetSocketOption(
            level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(SO_PEERCRED))
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        credentials.whenComplete { result in
            let (handler, context) = loopBound.value
            handler.admit(result, context: context)
        }
    }

    private func admit(_ result: Result<cswoop_ucred, Error>, context: ChannelHandlerContext) {
        guard case let .success(peer) = result, peer.uid == uid || peer.uid == 0 else {
            if case let .success(peer) = result {
                logger.warning("control socket: refused pid \(peer.pid) of uid \(peer.uid) (only uid \(uid) and root may control this server)")
            }
            context.close(promise: nil)
            return
        }
        trusted = true
        for line in early { handle(line, context: context) }
        early.removeAll()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let line = unwrapInboundIn(data)
        if trusted { handle(line, context: context) } else { early.append(line) }
    }

    private func handle(_ line: ByteBuffer, context: ChannelHandlerContext) {
        let text = String(buffer: line).trimmingCharacters(in: .whitespacesAndNewlines)
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        let loop = context.eventLoop
        let reply: @Sendable (ControlReply) -> Void = { reply in
            loop.execute { ControlHandler.send(reply, context: loopBound.value) }
        }
        switch text {
        case "status":
            reply(ControlReply(ok: true, status: actions.controlStatus()))
        case "stop":
            // The pids let the client wait until every process is gone.
            let status = actions.controlStatus()
            actions.controlStop()
            reply(ControlReply(ok: true, status: status))
        case "reload", "reload task-workers":
            actions.controlReload(taskWorkersOnly: text != "reload") { outcome in
                switch outcome {
                case true?: reply(ControlReply(ok: true))
                case false?: reply(ControlReply(ok: false, error: "the reload was rolled back: a new worker failed to start; the old workers keep serving (the log says why)"))
                case nil: reply(ControlReply(ok: false, error: "the server is not running, or stopped before the reload completed"))
                }
            }
        case "reopen-logs":
            actions.controlReopenLogs()
            reply(ControlReply(ok: true))
        default:
            reply(ControlReply(ok: false, error: "unknown request \"\(text)\""))
        }
    }

    private static func send(_ reply: ControlReply, context: ChannelHandlerContext) {
        guard context.channel.isActive, var json = try? JSONEncoder().encode(reply) else { return }
        json.append(UInt8(ascii: "\n"))
        context.writeAndFlush(NIOAny(ByteBuffer(bytes: json)), promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}

/// Waiters for the outcome of reloads, in the order the master asked the manager for them.
///
/// The manager runs one reload at a time; one asked for meanwhile waits, and further ones
/// join it (they would replace the same workers), and it reports each reload it ran with one
/// `reloadDone`. So the master expects at most two outcomes: the running reload's and the
/// queued one's, and a waiter's reload is the next outcome when none was expected, else
/// the second. Reloads asked of the manager directly (a signal to its pid) are not counted.
struct ReloadTracker<Waiter> {
    /// Outcomes still expected: 0 idle, 1 a reload running, 2 one running and one queued.
    private(set) var expected = 0
    private var waiters: [(remaining: Int, waiter: Waiter)] = []

    /// A reload was asked of the manager.
    mutating func requested(_ waiter: Waiter?) {
        expected = min(expected + 1, 2)
        if let waiter { waiters.append((expected, waiter)) }
    }

    /// The manager reported an outcome; returns the waiters it belongs to.
    mutating func finished() -> [Waiter] {
        guard expected > 0 else { return [] }
        expected -= 1
        var done: [Waiter] = []
        waiters = waiters.compactMap { entry in
            if entry.remaining <= 1 {
                done.append(entry.waiter)
                return nil
            }
            return (entry.remaining - 1, entry.waiter)
        }
        return done
    }

    /// The server stops: no outcome will come.
    mutating func cancelAll() -> [Waiter] {
        defer { waiters.removeAll(); expected = 0 }
        return waiters.map(\.waiter)
    }
}
