import NIOCore

/// A task's id, unique for the life of a server: the high 32 bits name the worker process
/// that created it (its generation), the low 32 bits count that process's tasks.
public struct TaskID: Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt64
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }
    public var description: String { String(rawValue) }
}

/// A task as a task worker receives it in `onTask`.
public struct ServerTask: Sendable {
    /// The task's id.
    public let id: TaskID
    /// The worker that created it.
    public let sourceWorkerId: Int
    /// The payload.
    public let data: ByteBuffer

    /// Decodes a payload that was sent as a `Codable` value with ``Server/task(_:to:)-(Encodable,_)``.
    public func decode<T: Decodable>(_ type: T.Type) throws -> T {
        do {
            return try BinaryDecoder().decode(type, from: data)
        } catch {
            throw TaskError.typeMismatch("task \(id) does not hold a \(T.self): \(error)")
        }
    }
}

/// Why a task has no result. Every task ends with exactly one result or one of these.
public enum TaskError: Error, Equatable, CustomStringConvertible {
    /// `taskwait` gave up waiting.
    case timeout
    /// The task worker died (a crash, a kill) while it held the task.
    case workerDied(String)
    /// This worker already has `taskQueueLimit` tasks waiting or running.
    case queueFull(limit: Int)
    /// Task workers cannot create tasks (as in Swoole); use `sendMessage`.
    case notAllowedInTaskWorker
    /// The server has no task workers (`taskWorkerNum` is 0), or no such task worker.
    case noTaskWorker(String)
    /// The payload is larger than `packageMaxLength`.
    case payloadTooLarge(size: Int, max: Int)
    /// The `onTask` handler threw; its description.
    case failed(String)
    /// The payload or the result is not of the type asked for.
    case typeMismatch(String)
    /// The server stopped before the task ran.
    case shutdown

    public var description: String {
        switch self {
        case .timeout: return "the task timed out"
        case let .workerDied(reason): return "the task worker died: \(reason)"
        case let .queueFull(limit): return "the task queue is full (\(limit) tasks waiting or running in this worker)"
        case .notAllowedInTaskWorker: return "a task worker cannot create tasks; use sendMessage"
        case let .noTaskWorker(reason): return "no task worker: \(reason)"
        case let .payloadTooLarge(size, max): return "the task payload of \(size) bytes exceeds packageMaxLength (\(max))"
        case let .failed(reason): return "the task failed: \(reason)"
        case let .typeMismatch(reason): return "type mismatch: \(reason)"
        case .shutdown: return "the server is stopping"
        }
    }
}

/// What `onTask` ends with.
enum TaskOutcome: Sendable { case result(ByteBuffer), error(String) }

/// The event `onFinish` receives.
struct FinishEvent: Sendable { var id: TaskID; var result: Result<ByteBuffer, TaskError> }

extension Result where Success == ByteBuffer, Failure == TaskError {
    /// Decodes a result that `onTask` returned as a `Codable` value.
    public func decode<T: Decodable>(_ type: T.Type) throws -> T {
        let data = try get()
        do {
            return try BinaryDecoder().decode(type, from: data)
        } catch {
            throw TaskError.typeMismatch("the task result is not a \(T.self): \(error)")
        }
    }
}

extension Server {
    /// Runs in a task worker for each task; what it returns (or passes to
    /// ``finish(_:)``) reaches the worker that asked, in `onFinish` or as `taskwait`'s value.
    /// A handler that throws sends the error instead.
    public func onTask(_ handler: @escaping @Sendable (Server, ServerTask) async throws -> ByteBuffer?) {
        handlers.task = { [unowned self] task in try await handler(self, task) }
    }

    /// Typed form: the payload is decoded as `T`, and the returned value is encoded back.
    ///
    /// ```swift
    /// server.onTask(ResizeImage.self) { server, job, task in
    ///     Thumbnail(pixels: resize(job))
    /// }
    /// ```
    public func onTask<T: Decodable & Sendable, R: Encodable & SendableMetatype>(
        _ type: T.Type, _ handler: @escaping @Sendable (Server, T, ServerTask) async throws -> R
    ) {
        handlers.task = { [unowned self] task in
            let value = try task.decode(T.self)
            return try BinaryEncoder().encode(try await handler(self, value, task))
        }
    }

    /// Runs in the worker that created a task with ``task(_:to:)-(ByteBuffer,_)`` when it ends.
    public func onFinish(_ handler: @escaping @Sendable (Server, TaskID, Result<ByteBuffer, TaskError>) throws -> Void) {
        handlers.finish = .sync { [unowned self] event in try handler(self, event.id, event.result) }
    }

    /// Runs in the worker that created a task when it ends; may await.
    public func onFinish(_ handler: @escaping @Sendable (Server, TaskID, Result<ByteBuffer, TaskError>) async throws -> Void) {
        handlers.finish = .async { [unowned self] event in try await handler(self, event.id, event.result) }
    }

    /// Hands `data` to a task worker (the one with the fewest tasks in hand, or `to`) and
    /// returns at once; the result arrives in `onFinish`.
    @discardableResult
    public func task(_ data: ByteBuffer, to taskWorkerId: Int? = nil) throws -> TaskID {
        try requireTaskCaller().submitTask(data, to: taskWorkerId, waiter: nil)
    }

    /// Hands a `Codable` value to a task worker; decode it there with ``ServerTask/decode(_:)``.
    @discardableResult
    public func task<T: Encodable>(_ value: T, to taskWorkerId: Int? = nil) throws -> TaskID {
        try task(try BinaryEncoder().encode(value), to: taskWorkerId)
    }

    /// Runs a task and waits for its result. Only the calling handler waits: the worker goes
    /// on serving its other connections.
    public func taskwait(_ data: ByteBuffer, timeout: Duration = .seconds(10), to taskWorkerId: Int? = nil) async throws -> ByteBuffer {
        try await requireTaskCaller().waitForTask(data, timeout: timeout, to: taskWorkerId)
    }

    /// Typed form of ``taskwait(_:timeout:to:)-(ByteBuffer,_,_)``.
    public func taskwait<T: Encodable, R: Decodable>(_ value: T, as resultType: R.Type, timeout: Duration = .seconds(10),
                                                     to taskWorkerId: Int? = nil) async throws -> R {
        let data = try await taskwait(try BinaryEncoder().encode(value), timeout: timeout, to: taskWorkerId)
        return try Result<ByteBuffer, TaskError>.success(data).decode(R.self)
    }

    /// Runs several tasks at once and returns their results in order; `timeout` bounds the
    /// whole, and a task without a result by then ends with ``TaskError/timeout``.
    public func taskWaitMulti(_ tasks: [ByteBuffer], timeout: Duration = .seconds(10)) async throws -> [Result<ByteBuffer, TaskError>] {
        let caller = try requireTaskCaller()
        return await withTaskGroup(of: (Int, Result<ByteBuffer, TaskError>).self) { group in
            for (index, data) in tasks.enumerated() {
                group.addTask {
                    do {
                        return (index, .success(try await caller.waitForTask(data, timeout: timeout, to: nil)))
                    } catch let error as TaskError {
                        return (index, .failure(error))
                    } catch {
                        return (index, .failure(.failed("\(error)")))
                    }
                }
            }
            var results = [Result<ByteBuffer, TaskError>](repeating: .failure(.timeout), count: tasks.count)
            for await (index, result) in group { results[index] = result }
            return results
        }
    }

    /// In `onTask`: sends the result now (the handler's return value is then ignored).
    public func finish(_ data: ByteBuffer) throws {
        guard let worker, isTaskWorker, let id = WorkerRuntime.currentTask else {
            throw ServerError.notInWorker("finish (inside onTask)")
        }
        worker.finishTask(id, .result(data))
    }

    private func requireTaskCaller() throws -> WorkerRuntime {
        guard let worker else { throw ServerError.notInWorker("task") }
        if isTaskWorker { throw TaskError.notAllowedInTaskWorker }
        if settings.taskWorkerNum == 0 { throw TaskError.noTaskWorker("taskWorkerNum is 0") }
        return worker
    }
}
