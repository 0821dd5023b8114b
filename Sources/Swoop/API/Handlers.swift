import NIOCore

/// A user handler that may be synchronous (the fast path: it runs on the worker's event
/// loop as the packet arrives) or asynchronous (it runs as a task, and the worker goes on
/// serving its other connections while it awaits).
enum Callback<Event: Sendable>: Sendable {
    case sync(@Sendable (Event) throws -> Void)
    case async(@Sendable (Event) async throws -> Void)
}

/// `onReceive`'s handler as the user gave it. The worker calls it directly, as it calls
/// `onRequest`'s: a closure around it, taking an event, would be one more async frame per
/// packet, and one more executor check when it returns (Benchmarks/README.md).
enum ReceiveHandler: Sendable {
    case sync(@Sendable (Server, ConnectionID, _ reactorId: Int, ByteBuffer) throws -> Void)
    case async(_ body: AsyncReceiveBody)
}

/// `onRequest`'s handler as the user gave it (see ``ReceiveHandler``).
enum RequestHandler: Sendable {
    case sync(@Sendable (Request, Response) throws -> Void)
    case async(_ body: AsyncRequestBody)
}

/// The async hot handlers run on their caller's executor (`nonisolated(nonsending)`): the
/// worker's runner, on its loop. A plain nonisolated async function switches to the generic
/// executor on entry, and with the loop as the task's executor preference each switch looks
/// the preference up under the task's status-record lock (about 250 instructions a packet).
/// Where they resume after an await is the same either way: the worker's loop.
typealias AsyncReceiveBody =
    nonisolated(nonsending) @Sendable (Server, ConnectionID, _ reactorId: Int, ByteBuffer) async throws -> Void
typealias AsyncRequestBody = nonisolated(nonsending) @Sendable (Request, Response) async throws -> Void

/// The events a worker's handlers receive.
struct ConnectEvent: Sendable { var connection: ConnectionID; var reactorId: Int }
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
    var receive: ReceiveHandler?
    var close: Callback<ConnectEvent>?
    var packet: Callback<PacketEvent>?
    var pipeMessage: Callback<PipeMessageEvent>?
    var request: RequestHandler?
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
