#if canImport(Glibc)
import Glibc
#endif
import Atomics
import Logging
import NIOConcurrencyHelpers

/// Log lines of every Swoop process, appended to one file (or standard error).
///
/// Each line is written with a single `write` on a descriptor opened with O_APPEND, so lines
/// of different processes never interleave mid-line. Every line carries the time, level,
/// role, worker id and pid: `2026-11-28 21:03:04.512 INFO [worker 1 pid=4242] onWorkerStart`.
///
/// Logging goes through swift-log: `start()` bootstraps `LoggingSystem` with the same handler
/// (see ``ServerSettings/bootstrapLogging``), so the program's own `Logger`s created from
/// then on land in the same file, with the same stamps and their label:
/// `... INFO [worker 1 pid=4242] app: cache warmed`.
enum ServerLog {
    /// The role as log lines show it.
    static func roleName(_ context: ProcessContext) -> String {
        switch context.role {
        case .master: return "master"
        case .manager: return "manager"
        case .worker: return "worker \(context.workerId)"
        case .taskWorker: return "task worker \(context.workerId)"
        }
    }

    /// The sink for `settings`: in the master an unwritable log file fails the start; the
    /// other processes were started by a master that could open it, and fall back to
    /// standard error should it have become unwritable since.
    static func sink(settings: ServerSettings, context: ProcessContext) throws -> LogSink {
        do {
            return try LogSink.shared(path: settings.logFile, rotation: settings.logRotation)
        } catch ServerError.logFileUnwritable where context.role != .master {
            return try LogSink.shared(path: nil, rotation: .single)
        }
    }

    static func makeLogger(settings: ServerSettings, context: ProcessContext) throws -> Logger {
        let sink = try sink(settings: settings, context: context)
        let role = roleName(context)
        var logger = Logger(label: "swoop") { _ in LineLogHandler(sink: sink, role: role) }
        logger.logLevel = Logger.Level(settings.logLevel)
        return logger
    }

    /// Points swift-log at the log, unless the program chose its own handler: a new
    /// `Logger` that still gets swift-log's default handler means nobody bootstrapped it
    /// (bootstrapping twice traps, and swift-log offers no other way to ask).
    static func bootstrapIfNeeded(settings: ServerSettings, context: ProcessContext) throws {
        guard settings.bootstrapLogging, Logger(label: "swoop.probe").handler is StreamLogHandler else { return }
        let sink = try sink(settings: settings, context: context)
        let role = roleName(context)
        let level = Logger.Level(settings.logLevel)
        LoggingSystem.bootstrap { label in
            var handler = LineLogHandler(sink: sink, role: role, label: label)
            handler.logLevel = level
            return handler
        }
    }
}

extension Logger.Level {
    init(_ level: LogLevel) {
        switch level {
        case .trace: self = .trace
        case .debug: self = .debug
        case .info: self = .info
        case .notice: self = .notice
        case .warning: self = .warning
        case .error: self = .error
        case .critical: self = .critical
        }
    }
}

/// The descriptor log lines go to.
///
/// Its number never changes: reopening (SIGWINCH) and daily rotation open the new file and
/// `dup3` it over the same number, so threads writing meanwhile reach the old file or the
/// new one, never a closed or reused descriptor, and writing takes no lock.
final class LogSink: @unchecked Sendable {
    let fd: CInt
    /// The configured file; nil for standard error.
    let path: String?
    let rotation: LogRotation
    private let lock = NIOLock()
    /// When a rotated log moves to the next file (seconds since 1970; Int.max: never).
    private let nextSwitch = ManagedAtomic(Int.max)

    private static let cache = NIOLockedValueBox<[String: LogSink]>([:])
    /// Who owns the log files this process creates (the workers' user), set before start.
    nonisolated(unsafe) static var fileOwner: Credentials?

    /// The one sink of this process for `path`.
    /// Opens a log file for appending; failure is the typed error `start()` reports.
    private static func openForAppending(_ file: String) throws -> CInt {
        do {
            let fd = try Syscall.open(file, O_WRONLY | O_CREAT | O_APPEND, mode: 0o640)
            // Workers that run as `settings.user` open the same file: a file the master
            // (root) creates is handed to that user. Elsewhere it fails harmlessly.
            if let owner = fileOwner, geteuid() == 0 { _ = fchown(fd, owner.uid, owner.gid) }
            return fd
        } catch let error as SystemError {
            throw ServerError.logFileUnwritable(path: file, reason: String(cString: strerror(error.errno)))
        }
    }

    static func shared(path: String?, rotation: LogRotation) throws -> LogSink {
        try cache.withLockedValue { cache in
            let key = path ?? ""
            if let sink = cache[key] { return sink }
            let sink: LogSink
            if let path {
                let now = time(nil)
                let file = rotation.path(base: path, at: now)
                let fd = try openForAppending(file)
                sink = LogSink(fd: fd, path: path, rotation: rotation)
                sink.scheduleSwitch(after: now)
            } else {
                sink = LogSink(fd: 2, path: nil, rotation: .single)
            }
            cache[key] = sink
            return sink
        }
    }

    /// Reopens every log file of this process (SIGWINCH), so that a file moved away by
    /// logrotate is left alone and a new one is created at the configured path.
    static func reopenAll() -> [Error] {
        let sinks = cache.withLockedValue { Array($0.values) }
        var errors: [Error] = []
        for sink in sinks {
            do { try sink.reopen() } catch { errors.append(error) }
        }
        return errors
    }

    private init(fd: CInt, path: String?, rotation: LogRotation) {
        self.fd = fd
        self.path = path
        self.rotation = rotation
    }

    private func scheduleSwitch(after now: Int) {
        guard rotation != .single else { return }
        var seconds = now
        var parts = tm()
        localtime_r(&seconds, &parts)
        parts.tm_mday += 1
        parts.tm_hour = 0
        parts.tm_min = 0
        parts.tm_sec = 0
        parts.tm_isdst = -1
        nextSwitch.store(mktime(&parts), ordering: .relaxed)
    }

    /// Opens the file for now and points the sink's descriptor at it. Standard output and
    /// error that refer to the old file (a daemon's do) follow it, so that what handlers
    /// print also reaches the new file.
    func reopen() throws {
        guard let path else { return }
        try lock.withLock {
            let now = time(nil)
            let file = rotation.path(base: path, at: now)
            let fresh = try Self.openForAppending(file)
            defer { Syscall.close(fresh) }
            if let old = Syscall.fileIdentity(fd) {
                for standard: CInt in [1, 2] {
                    if let identity = Syscall.fileIdentity(standard), identity == old {
                        try Syscall.replace(standard, with: fresh, closeOnExec: false)
                    }
                }
            }
            try Syscall.replace(fd, with: fresh, closeOnExec: true)
            scheduleSwitch(after: now)
        }
    }

    func write(_ line: String) {
        if time(nil) >= nextSwitch.load(ordering: .relaxed) {
            // The first line of a new day moves the sink to that day's file; a failure
            // keeps writing to the old one rather than losing lines.
            try? reopen()
        }
        var line = line
        line.withUTF8 { bytes in
            _ = try? Syscall.writeAll(fd, UnsafeRawBufferPointer(bytes))
        }
    }
}

/// A swift-log handler that writes one stamped line per message.
struct LineLogHandler: LogHandler {
    let sink: LogSink
    let role: String
    /// The logger's label, shown before the message unless it is Swoop's own.
    var label: String = "swoop"
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .info

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var all = metadata
        if let extra = event.metadata { all.merge(extra) { $1 } }
        let level = event.level
        let message = event.message
        let details = all.isEmpty ? "" : " " + all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        let source = label == "swoop" ? "" : "\(label): "
        sink.write("\(Self.timestamp()) \(level.rawValue.uppercased()) [\(role) pid=\(getpid())] \(source)\(message)\(details)\n")
    }

    static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var seconds = now.tv_sec
        var parts = tm()
        localtime_r(&seconds, &parts)
        func pad(_ value: Int32, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        return "\(parts.tm_year + 1900)-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2)) "
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2)).\(pad(Int32(now.tv_nsec / 1_000_000), 3))"
    }
}
