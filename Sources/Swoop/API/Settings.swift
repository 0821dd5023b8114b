#if canImport(Glibc)
import Glibc
#endif
import Foundation
import NIOCore

/// How the master chooses the worker that gets a packet (Swoole's `dispatch_mode`).
public struct DispatchMode: Sendable, CustomStringConvertible {
    enum Kind: Sendable {
        case roundRobin, fixed, preemptive, ipHash
        case custom(@Sendable (DispatchContext) -> Int)
    }
    let kind: Kind

    /// 1: each packet goes to the next worker in turn.
    public static let roundRobin = DispatchMode(kind: .roundRobin)
    /// 2: every packet of a connection goes to the same worker (the default).
    public static let fixed = DispatchMode(kind: .fixed)
    /// 3: an idle worker first; among equally busy ones, the next in turn.
    public static let preemptive = DispatchMode(kind: .preemptive)
    /// 4: by a hash of the client's IP address.
    public static let ipHash = DispatchMode(kind: .ipHash)
    /// A function of the connection that returns a worker id (taken modulo `workerNum`).
    public static func custom(_ choose: @escaping @Sendable (DispatchContext) -> Int) -> DispatchMode {
        DispatchMode(kind: .custom(choose))
    }

    /// Swoole's number for the mode: 1, 2, 3 or 4; `nil` for an unknown number.
    public init?(swooleMode: Int) {
        switch swooleMode {
        case 1: self = .roundRobin
        case 2: self = .fixed
        case 3: self = .preemptive
        case 4: self = .ipHash
        default: return nil
        }
    }

    init(kind: Kind) { self.kind = kind }

    public var description: String {
        switch kind {
        case .roundRobin: return "1 (round robin)"
        case .fixed: return "2 (fixed)"
        case .preemptive: return "3 (preemptive)"
        case .ipHash: return "4 (ip hash)"
        case .custom: return "custom"
        }
    }
}

/// What a custom dispatch function sees of a packet.
public struct DispatchContext: Sendable {
    /// The connection, or 0 for a UDP datagram.
    public var connection: ConnectionID
    /// The client's IP address.
    public var remoteAddress: String
    /// The first bytes of the packet (at most 8 KiB), for protocols that route by content.
    public var data: ByteBuffer
}

/// How a listener cuts its byte stream into packets. Swoole's `open_eof_split`,
/// `open_length_check` and their companions.
public struct ProtocolSettings: Sendable {
    /// Deliver one packet per `packageEOF` (the packet includes it).
    public var openEOFSplit: Bool = false
    /// The byte string that ends a packet, at most 8 bytes.
    public var packageEOF: [UInt8] = Array("\r\n\r\n".utf8)
    /// Deliver length-prefixed packets.
    public var openLengthCheck: Bool = false
    /// The type of the length field.
    public var packageLengthType: PackageLengthType = .uint32BE
    /// Where the length field starts.
    public var packageLengthOffset: Int = 0
    /// Where the body starts; the packet is `packageBodyOffset + length` bytes long
    /// (with 0, the length counts the whole packet).
    public var packageBodyOffset: Int = 4
    /// A packet longer than this closes the connection (2 MiB, as in Swoole).
    public var packageMaxLength: Int = 2 * 1024 * 1024
    /// Close connections idle (no bytes received) for longer than this many seconds; 0: never.
    public var heartbeatIdleTime: Double = 0

    /// Serve HTTP/1.1 on this listener (Swoole's `open_http_protocol`): the reactor parses
    /// requests and writes responses, and the workers' `onRequest` answers them. A request
    /// body may be up to `packageMaxLength` bytes (over it: 413 and close). Not combined with
    /// `openEOFSplit` or `openLengthCheck`.
    ///
    /// ```swift
    /// var http = ProtocolSettings()
    /// http.openHTTPProtocol = true
    /// server.addListener(host: "0.0.0.0", port: 8080, type: .tcp, protocol: http)
    /// server.onRequest { request, response in try response.end("Hello, World!") }
    /// ```
    public var openHTTPProtocol: Bool = false
    /// HTTP: seconds a client may take to send a whole request head, counted from the moment
    /// the connection can take a request (accepted, or the previous response sent). It also
    /// bounds how long an idle keep-alive connection stays open. Over it, the connection is closed.
    public var httpHeaderTimeout: Double = 60
    /// HTTP: seconds a client may take to send a request's body after its head. Over it:
    /// 408 and close.
    public var httpBodyTimeout: Double = 60
    /// HTTP: seconds a worker may take to begin its response. Over it the master answers 504
    /// itself; the connection stays open and the worker's late answer is dropped.
    public var httpResponseTimeout: Double = 60
    /// HTTP: gzip (or deflate) text responses for clients that accept it (Swoole's
    /// `http_compression`): `text/*`, JSON, JavaScript, XML and SVG bodies of at least
    /// `httpCompressionMinLength` bytes, and streamed ones. The reactor compresses, so the
    /// workers' code needs no change.
    public var httpCompression: Bool = false
    /// HTTP: the smallest body worth compressing, in bytes (Swoole's `http_compression_min_length`).
    public var httpCompressionMinLength: Int = 20
    /// HTTP: the directory whose files the reactor serves when `enableStaticHandler` is set
    /// (Swoole's `document_root`).
    public var documentRoot: String? = nil
    /// HTTP: answer GET and HEAD requests for files under `documentRoot` in the reactor,
    /// without a worker hop (Swoole's `enable_static_handler`): Content-Type, Last-Modified,
    /// If-Modified-Since, ETag and Range, sent with sendfile. A target that tries to leave the
    /// root (`..`, encoded separators, symlinks out) gets 403; a file that does not exist goes
    /// to `onRequest`, as in Swoole.
    public var enableStaticHandler: Bool = false
    /// HTTP: the files tried for a target ending in `/` (Swoole's `http_index_files`).
    public var httpIndexFiles: [String] = ["index.html"]

    public init() {}
}

/// Where client connections live (Swoole's `SWOOLE_PROCESS` and `SWOOLE_BASE`).
public enum ServerMode: String, Sendable, CaseIterable {
    /// The master's reactor threads own every connection and hand each packet to a worker
    /// over IPC: a worker that crashes or reloads loses no connection.
    case process
    /// Each worker accepts on the shared listening sockets and serves its connections
    /// itself, with no hop through the master: faster for short requests, but a worker's
    /// connections close when it is reloaded or dies. The master keeps the signals, the
    /// control socket and the routing of tasks and messages; `reactorNum` does not apply.
    case base
}

/// The server's settings, named as Swoole names them, in Swift case.
///
/// ```swift
/// var settings = ServerSettings()
/// settings.workerNum = 4
/// settings.protocol.openEOFSplit = true
/// settings.protocol.packageEOF = Array("\n".utf8)
/// ```
/// Invalid values make ``Server/start()`` throw ``ServerError/invalidSetting(name:reason:)``.
public struct ServerSettings: Sendable {
    /// Process mode (the default) or base mode: see ``ServerMode``.
    public var mode: ServerMode = .process
    /// Reactor threads in the master (default: the number of CPU cores, at most `workerNum`).
    public var reactorNum: Int = System.coreCount
    /// Worker processes (default: the number of CPU cores).
    public var workerNum: Int = System.coreCount
    /// Task worker processes (default 0).
    public var taskWorkerNum: Int = 0
    /// How packets are spread over workers (default ``DispatchMode/fixed``).
    public var dispatchMode: DispatchMode = .fixed
    /// Recycle a worker after about this many requests (plus a random grace of up to half,
    /// so that workers do not all restart at once); 0: never.
    public var maxRequest: Int = 0
    /// Recycle a task worker after this many tasks; 0: never.
    public var taskMaxRequest: Int = 0
    /// Tasks one task worker runs at once (1: one after another, as in Swoole).
    public var taskWorkerConcurrency: Int = 1
    /// The most tasks one worker may have waiting or running; `task()` beyond it throws
    /// ``TaskError/queueFull(limit:)`` at once, so memory stays bounded under any load.
    public var taskQueueLimit: Int = 1024
    /// How long a stopping worker may take to finish what it holds, in seconds (3, as in Swoole).
    public var maxWaitTime: Double = 3
    /// How long a new worker of a reload may take to become ready before the reload is
    /// rolled back and the old workers keep serving, in seconds.
    public var workerStartTimeout: Double = 10
    /// Seconds between two heartbeat scans; 0 with a `heartbeatIdleTime` means idle/2.
    public var heartbeatCheckInterval: Double = 0
    /// The framing of the main listener; `addListener` may give other ports their own.
    public var `protocol` = ProtocolSettings()
    /// The most client connections open at once; one more is closed as soon as it is
    /// accepted and counted in `reject_count` (in base mode: per worker). Default: the
    /// process's descriptor limit (`ulimit -n`), as in Swoole.
    public var maxConn: Int = System.descriptorLimit
    /// Base mode: after each event-loop turn in which a worker read from its clients, it
    /// yields the CPU (`sched_yield`), so that when workers outnumber the CPUs they take
    /// turns a batch at a time rather than a scheduler time slice at a time: the latency
    /// tail is then bounded by a batch (measured on one CPU with two workers: p99 4.5 ms →
    /// 1.1–2 ms, throughput unchanged within the noise). With a CPU of its own, a worker's
    /// yield returns at once (one system call per turn). Process mode does not yield: its
    /// reactor threads and workers already hand over to each other every turn.
    public var yieldAfterTurn: Bool = true
    /// The watchdog: a worker that has not finished a request within this many seconds is
    /// killed and replaced; the client of that request gets a 503 (HTTP) or a close, every
    /// other connection stays open. 0: off. In base mode, where the master does not see
    /// requests, it arms the liveness check instead (see `workerTimeout`).
    public var requestTimeout: Double = 0
    /// The watchdog's liveness check: a worker whose event loop has not answered the
    /// master's probe within this many seconds (a handler that blocks its thread) is killed
    /// and replaced. 0: off (or `requestTimeout` in base mode).
    public var workerTimeout: Double = 0
    /// The user the workers and task workers run as (Swoole's `user`); the master and the
    /// manager keep the user that started the server, which must then be root. The master
    /// binds the ports first, so a privileged port works. nil: no change.
    public var user: String? = nil
    /// Their group (default: the user's primary group); supplementary groups are dropped.
    public var group: String? = nil
    /// The permissions of Unix-socket listeners' files (connecting needs write permission).
    public var unixSocketMode: Int = 0o660
    /// The owner and group given to Unix-socket listeners' files (nil: the master's).
    public var unixSocketUser: String? = nil
    public var unixSocketGroup: String? = nil
    /// The most bytes the master holds for one client that does not read (2 MiB).
    public var bufferOutputSize: Int = 2 * 1024 * 1024
    /// The listen() backlog.
    public var backlog: Int = 512
    /// Where every process appends its log lines; nil: standard error. Start-up fails with
    /// ``ServerError/logFileUnwritable(path:reason:)`` when it cannot be opened. SIGWINCH to
    /// the master reopens it in every process (for logrotate).
    public var logFile: String? = nil
    /// The lowest level that is logged.
    public var logLevel: LogLevel = .info
    /// `.daily`: write to `logFile` suffixed with the day (`server.log.20261128`), switching
    /// at midnight, as Swoole's `log_rotation` does. Needs `logFile`.
    public var logRotation: LogRotation = .single
    /// Whether `start()` points swift-log at Swoop's log (`LoggingSystem.bootstrap`), so that
    /// your own `Logger`s write to the same file with the same stamps. It does so only while
    /// swift-log still has its default handler; set this to false when you bootstrap swift-log
    /// with `StreamLogHandler` yourself.
    public var bootstrapLogging: Bool = true
    /// Where the master writes its pid once ready; removed on stop. A start fails with
    /// ``ServerError/alreadyRunning(pid:pidFile:)`` while a live master holds it, and
    /// replaces a stale one.
    public var pidFile: String? = nil
    /// Run in the background, detached from the terminal: see ``Server/start()``.
    ///
    /// ```swift
    /// settings.daemonize = true
    /// settings.logFile = "/var/log/app/server.log"   // standard output and errors go here
    /// settings.pidFile = "/run/app/server.pid"
    /// try server.start()   // the launching process exits 0 once the daemon is ready
    /// ```
    public var daemonize: Bool = false
    /// The largest `packageMaxLength` of the listeners' own protocol settings, set by
    /// `start()`: an HTTP request or packet of any listener must fit in one IPC frame.
    var listenersPackageMaxLength = 0

    public init() {}

    /// Swoole's shortcut: with only `heartbeatIdleTime` set, scan every idle/2 seconds.
    var effectiveHeartbeatInterval: Double {
        if heartbeatCheckInterval > 0 { return heartbeatCheckInterval }
        return `protocol`.heartbeatIdleTime > 0 ? `protocol`.heartbeatIdleTime / 2 : 0
    }

    /// Throws for the first invalid setting, naming it.
    func validate() throws {
        func fail(_ name: String, _ reason: String) -> ServerError { .invalidSetting(name: name, reason: reason) }
        if workerNum < 1 { throw fail("workerNum", "must be at least 1, got \(workerNum)") }
        if workerNum > 1000 * System.coreCount { throw fail("workerNum", "at most \(1000 * System.coreCount)") }
        if reactorNum < 1 { throw fail("reactorNum", "must be at least 1, got \(reactorNum)") }
        if taskWorkerNum < 0 { throw fail("taskWorkerNum", "must not be negative, got \(taskWorkerNum)") }
        if maxRequest < 0 { throw fail("maxRequest", "must not be negative, got \(maxRequest)") }
        if taskMaxRequest < 0 { throw fail("taskMaxRequest", "must not be negative, got \(taskMaxRequest)") }
        if taskWorkerConcurrency < 1 { throw fail("taskWorkerConcurrency", "must be at least 1, got \(taskWorkerConcurrency)") }
        if taskQueueLimit < 1 { throw fail("taskQueueLimit", "must be at least 1, got \(taskQueueLimit)") }
        if !(maxWaitTime > 0) { throw fail("maxWaitTime", "must be positive, got \(maxWaitTime)") }
        if !(workerStartTimeout > 0) { throw fail("workerStartTimeout", "must be positive, got \(workerStartTimeout)") }
        if heartbeatCheckInterval < 0 { throw fail("heartbeatCheckInterval", "must not be negative") }
        if bufferOutputSize < 1 { throw fail("bufferOutputSize", "must be positive") }
        if !(0...0o777).contains(unixSocketMode) { throw fail("unixSocketMode", "must be a permission mode (0 to 0o777)") }
        if maxConn < 1 { throw fail("maxConn", "must be at least 1, got \(maxConn)") }
        if !(requestTimeout >= 0) { throw fail("requestTimeout", "must not be negative") }
        if !(workerTimeout >= 0) { throw fail("workerTimeout", "must not be negative") }
        if backlog < 1 { throw fail("backlog", "must be positive") }
        if logFile?.isEmpty == true { throw fail("logFile", "must not be empty (nil: standard error)") }
        if pidFile?.isEmpty == true { throw fail("pidFile", "must not be empty") }
        if logRotation != .single && logFile == nil { throw fail("logRotation", "needs a logFile") }
        try `protocol`.validate(prefix: "protocol.")
    }
}

extension ProtocolSettings {
    func validate(prefix: String) throws {
        func fail(_ name: String, _ reason: String) -> ServerError {
            .invalidSetting(name: prefix + name, reason: reason)
        }
        if openEOFSplit && openLengthCheck {
            throw fail("openEOFSplit", "cannot be combined with openLengthCheck")
        }
        if openEOFSplit && (packageEOF.isEmpty || packageEOF.count > 8) {
            throw fail("packageEOF", "must be 1 to 8 bytes, got \(packageEOF.count)")
        }
        if packageMaxLength < 1 { throw fail("packageMaxLength", "must be positive, got \(packageMaxLength)") }
        if openLengthCheck {
            if packageLengthOffset < 0 { throw fail("packageLengthOffset", "must not be negative") }
            if packageBodyOffset < 0 { throw fail("packageBodyOffset", "must not be negative") }
            if packageBodyOffset > 0 && packageBodyOffset < packageLengthOffset + packageLengthType.size {
                throw fail("packageBodyOffset", "must lie after the length field")
            }
        }
        if heartbeatIdleTime < 0 { throw fail("heartbeatIdleTime", "must not be negative") }
        if openHTTPProtocol && (openEOFSplit || openLengthCheck) {
            throw fail("openHTTPProtocol", "cannot be combined with openEOFSplit or openLengthCheck")
        }
        if !(httpHeaderTimeout > 0) { throw fail("httpHeaderTimeout", "must be positive, got \(httpHeaderTimeout)") }
        if !(httpBodyTimeout > 0) { throw fail("httpBodyTimeout", "must be positive, got \(httpBodyTimeout)") }
        if enableStaticHandler {
            var isDirectory: ObjCBool = false
            guard let root = documentRoot, FileManager.default.fileExists(atPath: root, isDirectory: &isDirectory),
                  isDirectory.boolValue else {
                throw fail("documentRoot", "enableStaticHandler needs an existing directory, got \(documentRoot ?? "nil")")
            }
        }
        if httpCompressionMinLength < 0 { throw fail("httpCompressionMinLength", "must not be negative") }
        if !(httpResponseTimeout > 0) { throw fail("httpResponseTimeout", "must be positive, got \(httpResponseTimeout)") }
    }
}

/// How the log file is split over time (Swoole's `log_rotation`).
public struct LogRotation: Sendable, Equatable, CustomStringConvertible {
    enum Kind: Sendable, Equatable { case single, daily }
    let kind: Kind

    /// One file, `logFile` itself (rotate it with logrotate and SIGWINCH).
    public static let single = LogRotation(kind: .single)
    /// One file per day: `logFile` suffixed with `.YYYYMMDD`, local time.
    public static let daily = LogRotation(kind: .daily)

    /// The file written during the day that `time` (seconds since 1970) falls in.
    func path(base: String, at time: Int) -> String {
        switch kind {
        case .single:
            return base
        case .daily:
            var seconds = time
            var parts = tm()
            localtime_r(&seconds, &parts)
            let day = Int(parts.tm_year + 1900) * 10000 + Int(parts.tm_mon + 1) * 100 + Int(parts.tm_mday)
            return "\(base).\(day)"
        }
    }

    public var description: String { kind == .single ? "single" : "daily" }
}

/// Log levels, lowest first.
public enum LogLevel: Int, Sendable, Comparable, CaseIterable {
    case trace, debug, info, notice, warning, error, critical
    public static func < (a: LogLevel, b: LogLevel) -> Bool { a.rawValue < b.rawValue }
}

/// Facts about the machine.
public enum System {
    /// The number of CPU cores this process may run on.
    public static var coreCount: Int { NIOCore.System.coreCount }

    /// The most descriptors this process may open (the soft `RLIMIT_NOFILE`).
    public static var descriptorLimit: Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < (1 << 30) else { return 1 << 20 }
        return Int(limit.rlim_cur)
    }
}

extension ServerSettings {
    /// The longest IPC frame a process accepts: the largest packet or reply plus room for
    /// the header. Anything longer can only be a bug, and closes that IPC connection.
    var maxIPCFrameLength: Int {
        max(`protocol`.packageMaxLength, listenersPackageMaxLength, bufferOutputSize, 16 * 1024 * 1024) + 64 * 1024
    }
}
