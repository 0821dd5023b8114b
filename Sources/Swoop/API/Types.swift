import NIOCore

/// A client connection, unique for the life of a server: ids are never reused, so a late
/// `send` can never reach another client that happens to get the same descriptor.
public struct ConnectionID: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// The id's number; its remainder by `reactorNum` is the reactor that owns it.
    public let rawValue: UInt64
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }
    public var description: String { String(rawValue) }
    public static func < (a: ConnectionID, b: ConnectionID) -> Bool { a.rawValue < b.rawValue }
}

/// The kind of socket a listener serves.
public enum SocketType: Sendable, Equatable {
    /// TCP, with the listener's framing.
    case tcp
    /// UDP: datagrams reach `onPacket`.
    case udp
    /// A Unix stream socket at a path.
    case unixStream
}

/// Where a UDP datagram came from; pass it back to `sendto`.
public struct ClientAddress: Sendable, Hashable, CustomStringConvertible {
    /// The IP address, as text.
    public var address: String
    /// The port.
    public var port: Int
    /// The index of the listener that received it (0 is the main one).
    public var serverSocket: Int
    public init(address: String, port: Int, serverSocket: Int = 0) {
        self.address = address
        self.port = port
        self.serverSocket = serverSocket
    }
    public var description: String { "\(address):\(port)" }
}

/// What the master knows of a connection (Swoole's `getClientInfo`).
public struct ClientInfo: Sendable, Codable, Equatable {
    public var remoteIP: String
    public var remotePort: Int
    public var reactorId: Int
    public var serverPort: Int
    /// Seconds since 1970 when it was accepted.
    public var connectTime: Double
    /// Seconds since 1970 when it last sent bytes.
    public var lastReceiveTime: Double
}

/// The server's counters (Swoole's `stats()`), names as in Swoole.
public struct ServerStats: Sendable, Codable, Equatable {
    public var start_time: Int
    public var connection_num: Int
    public var accept_count: Int
    public var close_count: Int
    public var abort_count: Int
    /// Connections refused because `maxConn` were open.
    public var reject_count: Int = 0
    public var request_count: Int
    public var dispatch_count: Int
    public var total_recv_bytes: Int
    public var total_send_bytes: Int
    public var worker_num: Int
    public var task_worker_num: Int
    public var reload_count: Int
    /// Tasks a task worker is running.
    public var tasking_num: Int
    /// Tasks waiting for a free task worker.
    public var task_queue_num: Int
    /// Workers that hold no request right now.
    public var idle_worker_num: Int
    /// Task workers that hold no task right now.
    public var task_idle_worker_num: Int
    /// Each worker and task worker in service, by id.
    public var workers: [WorkerStats]
}

/// One worker's or task worker's figures in ``ServerStats``: the process now serving the slot.
public struct WorkerStats: Sendable, Codable, Equatable {
    /// The worker id (task workers follow the workers).
    public var worker_id: Int
    /// The process serving it.
    public var pid: Int32
    /// `"worker"` or `"task_worker"`.
    public var type: String
    /// Requests (for a task worker: tasks) this process has finished.
    public var request_count: Int
    /// Requests (tasks) it holds now.
    public var in_flight: Int
}

/// Errors of the server's API; each says what to do.
/// Codable so that a daemonized server can hand its start-up error to the command that launched it.
public enum ServerError: Error, CustomStringConvertible, Equatable, Codable {
    /// A setting is out of range; the name is the setting's.
    case invalidSetting(name: String, reason: String)
    /// A listener could not bind.
    case bindFailed(host: String, port: Int, reason: String)
    /// The call is only possible in a worker process (the API that talks to clients).
    case notInWorker(String)
    /// `start()` was called twice.
    case alreadyStarted
    /// No worker with that id.
    case noSuchWorker(Int)
    /// The master is gone, so the call could not be sent.
    case masterUnreachable
    /// A payload larger than the server takes (`packageMaxLength`).
    case payloadTooLarge(size: Int, max: Int)
    /// A live server holds the pid file: stop it first, or use another pid file.
    case alreadyRunning(pid: Int32, pidFile: String)
    /// The log file cannot be opened for appending.
    case logFileUnwritable(path: String, reason: String)
    /// The daemonized server did not become ready (it exited, or took too long).
    case daemonFailed(reason: String)
    /// The HTTP response has already ended: nothing more can be written to it.
    case responseEnded
    /// `sendfile` could not open or read the file.
    case fileNotReadable(String)
    /// `sendfile`'s range lies outside the file.
    case invalidRange(path: String, offset: Int, length: Int, size: Int)

    public var description: String {
        switch self {
        case let .invalidSetting(name, reason): return "invalid setting \(name): \(reason)"
        case let .bindFailed(host, port, reason): return "cannot listen on \(host):\(port): \(reason)"
        case let .notInWorker(call): return "\(call) can only be called in a worker process"
        case .alreadyStarted: return "the server was already started"
        case let .noSuchWorker(id): return "there is no worker \(id)"
        case .masterUnreachable: return "the master process cannot be reached"
        case let .payloadTooLarge(size, max): return "payload of \(size) bytes exceeds the limit of \(max)"
        case let .alreadyRunning(pid, pidFile):
            return "a server is already running (master pid \(pid), pid file \(pidFile)); stop it first or use another pid file"
        case let .logFileUnwritable(path, reason): return "cannot open the log file \(path): \(reason)"
        case let .daemonFailed(reason): return "the daemon did not start: \(reason)"
        case .responseEnded: return "the HTTP response has already ended"
        case let .fileNotReadable(path): return "cannot read the file \(path)"
        case let .invalidRange(path, offset, length, size):
            return "the range \(offset)+\(length) lies outside \(path) (\(size) bytes)"
        }
    }
}
