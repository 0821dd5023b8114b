// swoop-fixture: a server for the integration tests of API paths that swoop-demo's fixed
// contract does not reach — length framing, a throwing handler, clientInfo and friends,
// custom dispatch, a Unix-socket listener. Not an example; see swoop-demo for that.
import ArgumentParser
import Foundation
import Swoop

struct Fixture: ParsableCommand {
    @Option var host = "127.0.0.1"
    @Option var port = 0
    @Option(name: .customLong("worker-num")) var workerNum = 2
    /// eof, length or raw.
    @Option var framing = "length"
    @Option(name: .customLong("unix-path")) var unixPath: String?
    /// Octal, e.g. 600.
    @Option(name: .customLong("unix-mode")) var unixMode: String?
    @Option(name: .customLong("unix-group")) var unixGroup: String?
    @Option(name: .customLong("package-max-length")) var packageMaxLength = 2 * 1024 * 1024
    @Option(name: .customLong("buffer-output-size")) var bufferOutputSize = 2 * 1024 * 1024
    /// Route every packet to the worker named by its first byte (a digit).
    @Flag(name: .customLong("custom-dispatch")) var customDispatch = false
    @Option(name: .customLong("log-file")) var logFile: String?
    @Option(name: .customLong("task-worker-num")) var taskWorkerNum = 0
    @Option(name: .customLong("max-wait-time")) var maxWaitTime: Double = 3
    @Option(name: .customLong("worker-start-timeout")) var workerStartTimeout: Double = 10
    /// While this file exists, every worker aborts in onWorkerStart (a build that cannot boot).
    @Option(name: .customLong("crash-on-start-file")) var crashOnStartFile: String?
    @Option(name: .customLong("task-max-request")) var taskMaxRequest = 0
    @Option(name: .customLong("task-queue-limit")) var taskQueueLimit = 1024
    /// process or base.
    @Option var mode = "process"
    @Option var user: String?
    @Option var group: String?

    func run() throws {
        var settings = ServerSettings()
        settings.workerNum = workerNum
        settings.reactorNum = min(2, workerNum)
        guard let serverMode = ServerMode(rawValue: mode) else { throw ValidationError("--mode must be process or base") }
        settings.mode = serverMode
        settings.user = user
        if let unixMode { settings.unixSocketMode = Int(unixMode, radix: 8) ?? -1 }
        settings.unixSocketGroup = unixGroup
        settings.group = group
        settings.logFile = logFile
        settings.bufferOutputSize = bufferOutputSize
        settings.protocol.packageMaxLength = packageMaxLength
        settings.taskWorkerNum = taskWorkerNum
        settings.maxWaitTime = maxWaitTime
        settings.workerStartTimeout = workerStartTimeout
        settings.taskMaxRequest = taskMaxRequest
        settings.taskQueueLimit = taskQueueLimit
        switch framing {
        case "length":
            settings.protocol.openLengthCheck = true
            settings.protocol.packageLengthType = .uint32BE
            settings.protocol.packageLengthOffset = 0
            settings.protocol.packageBodyOffset = 4
        case "eof":
            settings.protocol.openEOFSplit = true
            settings.protocol.packageEOF = Array("\r\n".utf8)
        default:
            break
        }
        if customDispatch {
            settings.dispatchMode = .custom { context in
                Int(context.data.getInteger(at: context.data.readerIndex + 4, as: UInt8.self) ?? 48) - 48
            }
        }
        let server = Server(host: host, port: port, settings: settings)
        if let unixPath { server.addListener(host: unixPath, port: 0, type: .unixStream) }
        let lengthFraming = framing == "length"

        let crashFile = crashOnStartFile
        server.onWorkerStart { server, workerId in
            if let crashFile, FileManager.default.fileExists(atPath: crashFile) {
                server.logger.info("worker \(workerId) crashing on start (\(crashFile) exists)")
                abort()
            }
        }
        server.onBeforeReload { server in server.logger.info("onBeforeReload") }
        server.onWorkerExit { server, workerId in server.logger.info("onWorkerExit id=\(workerId)") }
        server.onAfterReload { server in server.logger.info("onAfterReload") }
        server.onStart { server in
            FileHandle.standardOutput.write(Data("swoop-fixture ready master=\(server.masterPid) manager=\(server.managerPid) port=\(server.ports[0]) udp-port=0 http-port=0\n".utf8))
        }
        // Task workers echo the payload, except: "sleep MS" waits first, "throw" throws,
        // "nested" tries to create a task (which a task worker may not do), "oversize N"
        // answers with N bytes.
        server.onTask { server, task in
            let text = String(buffer: task.data.getSlice(at: task.data.readerIndex, length: min(task.data.readableBytes, 64))!)
            if text.hasPrefix("sleep "), let ms = Int(text.dropFirst(6)) {
                try await Task.sleep(for: .milliseconds(ms))
            } else if text == "throw" {
                struct TaskFailure: Error, CustomStringConvertible { var description: String { "deliberate task failure" } }
                throw TaskFailure()
            } else if text == "nested" {
                do {
                    try server.task(ByteBuffer(string: "inner"))
                    return ByteBuffer(string: "nested task accepted")
                } catch {
                    return ByteBuffer(string: "nested refused: \(error)")
                }
            } else if text.hasPrefix("oversize "), let n = Int(text.dropFirst(9)) {
                return ByteBuffer(repeating: UInt8(ascii: "z"), count: n)
            }
            return task.data
        }
        server.onReceive { server, connection, _, data in
            var body = data
            if lengthFraming { body.moveReaderIndex(forwardBy: 4) }
            let text = String(buffer: body)
            func reply(_ payload: ByteBuffer) throws {
                if lengthFraming {
                    var framed = ByteBuffer()
                    framed.writeInteger(UInt32(payload.readableBytes))
                    framed.writeImmutableBuffer(payload)
                    try server.send(connection, framed)
                } else {
                    try server.send(connection, payload)
                }
            }
            switch text {
            case "throw":
                struct Deliberate: Error {}
                throw Deliberate()
            case "info":
                let info = try await server.clientInfo(connection)
                let exists = try await server.exists(connection)
                let gone = try await server.exists(ConnectionID(1 << 60))
                let all = try await server.connections()
                let line = "exists=\(exists) gone=\(gone) connections=\(all.count) remote=\(info?.remoteIP ?? "-") reactor=\(info?.reactorId ?? -1) server_port=\(info?.serverPort ?? -1)"
                try reply(ByteBuffer(string: line))
            case "threads":
                // Where the handler runs: as called, after an await, and in a plain async
                // function it calls (which switches to the generic executor on entry).
                let called = FixtureThread.name()
                try await Task.sleep(for: .milliseconds(5))
                let resumed = FixtureThread.name()
                let callee = await FixtureThread.nameInAsyncFunction()
                try reply(ByteBuffer(string: "called=\(called) resumed=\(resumed) callee=\(callee)"))
            case let other where other.hasPrefix("sleep "):
                let ms = Int(other.dropFirst(6)) ?? 0
                // Logged so that tests can wait for the request to be in a worker's hands.
                server.logger.info("sleeping \(ms) on connection \(connection)")
                try await Task.sleep(for: .milliseconds(ms))
                try reply(ByteBuffer(string: "slept \(ms)"))
            case "signal-master":
                // Whether this worker may signal the master (signal 0 only checks): with
                // --user it must not.
                let result = kill(server.masterPid, 0) == 0 ? "allowed" : "errno=\(errno)"
                try reply(ByteBuffer(string: result))
            case "reload":
                try server.reload()
                try reply(ByteBuffer(string: "reloading"))
            case "shutdown":
                try reply(ByteBuffer(string: "stopping"))
                try server.shutdown()
            case let other where other.hasPrefix("tw "):
                do {
                    try reply(try await server.taskwait(ByteBuffer(string: String(other.dropFirst(3))), timeout: .seconds(10)))
                } catch {
                    try reply(ByteBuffer(string: "error \(error)"))
                }
            case let other where other.hasPrefix("twsize "):
                let n = Int(other.dropFirst(7)) ?? 0
                // A pattern, so that a shifted or truncated copy cannot compare equal.
                var payload = ByteBuffer(repeating: 0, count: n)
                payload.withUnsafeMutableReadableBytes { bytes in
                    for i in stride(from: 0, to: bytes.count, by: 4096) { bytes[i] = UInt8(truncatingIfNeeded: i / 4096 &+ 1) }
                }
                do {
                    let back = try await server.taskwait(payload, timeout: .seconds(20))
                    try reply(ByteBuffer(string: back == payload ? "ok \(back.readableBytes)" : "error corrupted \(back.readableBytes)"))
                } catch {
                    try reply(ByteBuffer(string: "error \(error)"))
                }
            case let other where other.hasPrefix("flood "):
                var accepted = 0
                var refused: [String] = []
                for _ in 0..<(Int(other.dropFirst(6)) ?? 0) {
                    do {
                        try server.task(ByteBuffer(string: "sleep 300"))
                        accepted += 1
                    } catch {
                        refused.append("\(error)")
                    }
                }
                try reply(ByteBuffer(string: "accepted=\(accepted) refused=\(refused.count) \(refused.first ?? "")"))
            case let other where other.hasPrefix("multi "):
                let n = Int(other.dropFirst(6)) ?? 0
                let results = try await server.taskWaitMulti((0..<n).map { ByteBuffer(string: "m\($0)") }, timeout: .seconds(10))
                let good = results.enumerated().filter { (try? $0.element.get()) == ByteBuffer(string: "m\($0.offset)") }.count
                try reply(ByteBuffer(string: "multi ok=\(good)"))
            case "mismatch":
                struct Sent: Codable, Sendable { var name: String }
                struct Expected: Codable, Sendable { var count: [Int] }
                do {
                    let wrong = try await server.taskwait(Sent(name: "x"), as: Expected.self)
                    try reply(ByteBuffer(string: "decoded \(wrong.count)"))
                } catch {
                    try reply(ByteBuffer(string: "error \(error)"))
                }
            case "whoami":
                try reply(ByteBuffer(string: "worker=\(server.workerId) pid=\(server.workerPid)"))
            case let other where other.hasPrefix("big "):
                try reply(ByteBuffer(repeating: UInt8(ascii: "x"), count: Int(other.dropFirst(4)) ?? 0))
            default:
                try reply(body)
            }
        }
        try server.start()
    }
}

Fixture.main()

/// The name of the calling thread (the worker's loop is "worker loop").
enum FixtureThread {
    static func name() -> String {
        let comm = (try? String(contentsOfFile: "/proc/thread-self/comm", encoding: .utf8)) ?? "?"
        return comm.trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: " ", with: "_")
    }

    static func nameInAsyncFunction() async -> String {
        await Task.yield()
        return name()
    }
}
