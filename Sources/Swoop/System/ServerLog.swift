#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOConcurrencyHelpers

/// Log lines of every Swoop process, appended to one file (or standard error).
///
/// Each line is written with a single `write` on a descriptor opened with O_APPEND, so lines
/// of different processes never interleave mid-line. Every line carries the time, level,
/// role, worker id and pid: `2026-11-28 21:03:04.512 INFO [worker 1 pid=4242] onWorkerStart`.
enum ServerLog {
    static func makeLogger(settings: ServerSettings, context: ProcessContext) -> Logger {
        let sink = LogSink.shared(path: settings.logFile)
        let role: String
        switch context.role {
        case .master: role = "master"
        case .manager: role = "manager"
        case .worker: role = "worker \(context.workerId)"
        case .taskWorker: role = "task worker \(context.workerId)"
        }
        var logger = Logger(label: "swoop") { _ in LineLogHandler(sink: sink, role: role) }
        logger.logLevel = Logger.Level(settings.logLevel)
        return logger
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
final class LogSink: Sendable {
    let fd: CInt

    private static let cache = NIOLockedValueBox<[String: LogSink]>([:])

    static func shared(path: String?) -> LogSink {
        let key = path ?? ""
        return cache.withLockedValue { cache in
            if let sink = cache[key] { return sink }
            var fd: CInt = 2
            if let path {
                let opened = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o640)
                if opened >= 0 { fd = opened }
            }
            let sink = LogSink(fd: fd)
            cache[key] = sink
            return sink
        }
    }

    private init(fd: CInt) { self.fd = fd }

    func write(_ line: String) {
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
        sink.write("\(Self.timestamp()) \(level.rawValue.uppercased()) [\(role) pid=\(getpid())] \(message)\(details)\n")
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
