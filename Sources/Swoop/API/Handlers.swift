import NIOCore

/// A user handler that may be synchronous (the fast path: it runs on the worker's event
/// loop as the packet arrives) or asynchronous (it runs as a task, and the worker goes on
/// serving its other connections while it awaits).
enum Callback<Event: Sendable>: Sendable {
    case sync(@Sendable (Event) throws -> Void)
    case async(@Sendable (Event) async throws -> Void)
}

/// The events a worker's handlers receive.
struct ConnectEvent: Sendable { var connection: ConnectionID; var reactorId: Int }
struct ReceiveEvent: Sendable { var connection: ConnectionID; var reactorId: Int; var data: ByteBuffer }
struct PacketEvent: Sendable { var data: ByteBuffer; var client: ClientAddress }
struct PipeMessageEvent: Sendable { var from: Int; var data: ByteBuffer }

/// Every handler a server can have, each run in the process where Swoole runs it.
struct Handlers: Sendable {
    // Master.
    var start: (@Sendable (Server) -> Void)?
    var shutdown: (@Sendable (Server) -> Void)?
    // Manager.
    var managerStart: (@Sendable (Server) -> Void)?
    var managerStop: (@Sendable (Server) -> Void)?
    var workerError: (@Sendable (Server, WorkerExit) -> Void)?
    var beforeReload: (@Sendable (Server) -> Void)?
    var afterReload: (@Sendable (Server) -> Void)?
    // Workers and task workers.
    var workerStart: Callback<Int>?
    var workerStop: (@Sendable (Server, Int) -> Void)?
    var workerExit: (@Sendable (Server, Int) -> Void)?
    var connect: Callback<ConnectEvent>?
    var receive: Callback<ReceiveEvent>?
    var close: Callback<ConnectEvent>?
    var packet: Callback<PacketEvent>?
    var pipeMessage: Callback<PipeMessageEvent>?
    var request: Callback<RequestEvent>?
    var task: (@Sendable (ServerTask) async throws -> ByteBuffer?)?
    var finish: Callback<FinishEvent>?
}

/// How a worker or task worker ended, as `onWorkerError` reports it.
public struct WorkerExit: Sendable, Equatable {
    /// The worker's id (task workers follow the workers).
    public var workerId: Int
    /// Its process id.
    public var pid: Int32
    /// Its exit code, when it exited.
    public var exitCode: Int32
    /// The signal that ended it, or 0.
    public var signal: Int32
}
