// swoop-demo: the example server, and the process tree the integration tests drive.
//
// Every Swoop process runs this file: the master, the manager and each worker parse the
// same arguments and build the same server; `start()` then takes each into its role.
import ArgumentParser
import Foundation
import Logging
import Swoop
import SwoopControl
import Synchronization

/// The demo's version, compiled in; the `version` command and `--version` report it.
enum DemoVersion {
    static let current = "0.1.0"
    static var text: String { "swoop-demo \(current) (swoop \(SwoopVersion.current))" }
}

/// `swoop-demo [start] [flags]` (start is the default), `stop`, `reload`, `status`.
struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "swoop-demo",
        abstract: "A line-protocol server on Swoop's process model.",
        version: DemoVersion.text,
        subcommands: [Start.self] + SwoopControl.commands,
        defaultSubcommand: Start.self)
}

struct Start: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "start",
        abstract: "Start the server (the default command).")

    @Option(help: "The address to listen on.") var host = "127.0.0.1"
    @Option(help: "The TCP port (0: any free port).") var port = 9501
    @Option(name: .customLong("udp-port"), help: "Also serve UDP on this port (0: any free port).") var udpPort: Int?
    @Option(help: "process (the master's reactors hold the connections) or base (each worker accepts and serves its own).") var mode = "process"
    @Option(name: .customLong("reactor-num"), help: "Reactor threads in the master.") var reactorNum: Int?
    @Option(name: .customLong("worker-num"), help: "Worker processes.") var workerNum: Int?
    @Option(name: .customLong("task-worker-num"), help: "Task worker processes.") var taskWorkerNum = 0
    @Option(name: .customLong("dispatch-mode"), help: "1 round robin, 2 fixed, 3 preemptive, 4 ip hash.") var dispatchMode = 2
    @Option(name: .customLong("max-request"), help: "Recycle a worker after N requests (0: never).") var maxRequest = 0
    @Option(name: .customLong("heartbeat-check-interval"), help: "Seconds between idle scans.") var heartbeatCheckInterval: Double = 0
    @Option(name: .customLong("heartbeat-idle-time"), help: "Close connections idle this many seconds.") var heartbeatIdleTime: Double = 0
    @Option(name: .customLong("log-file"), help: "Append log lines here.") var logFile: String?
    @Option(name: .customLong("pid-file"), help: "Write the master's pid here.") var pidFile: String?
    @Option(name: .customLong("log-rotation"), help: "single, or daily (the log file suffixed with .YYYYMMDD).") var logRotation = "single"
    @Option(name: .customLong("max-wait-time"), help: "Seconds a stopping worker may take to finish its work.") var maxWaitTime: Double?
    @Option(name: .customLong("http-port"), help: "Also serve HTTP on this port (0: any free port).") var httpPort: Int?
    @Option(name: .customLong("http-response-timeout"), help: "HTTP: seconds a worker may take to answer before a 504.") var httpResponseTimeout: Double?
    @Option(name: .customLong("http-header-timeout"), help: "HTTP: seconds to receive a request head (and keep-alive idle time).") var httpHeaderTimeout: Double?
    @Option(name: .customLong("http-body-timeout"), help: "HTTP: seconds to receive a request body after its head.") var httpBodyTimeout: Double?
    @Option(name: .customLong("document-root"), help: "HTTP: serve the files of this directory from the reactor.") var documentRoot: String?
    @Flag(name: .customLong("http-compression"), help: "HTTP: gzip text responses for clients that accept it.") var httpCompression = false
    @Option(name: .customLong("package-max-length"), help: "Longest packet or HTTP request body, in bytes.") var packageMaxLength: Int?
    @Option(name: .customLong("request-timeout"), help: "Watchdog: kill a worker stuck on a request this many seconds (0: off).") var requestTimeout: Double = 0
    @Option(name: .customLong("max-conn"), help: "Most client connections open at once; more are refused.") var maxConn: Int?
    @Option(name: .customLong("buffer-output-size"), help: "Most bytes held for a client that does not read; over it, it is closed.") var bufferOutputSize: Int?
    @Option(help: "Run the workers and task workers as this user (the server must start as root).") var user: String?
    @Option(help: "And as this group (default: the user's primary group).") var group: String?
    @OptionGroup var control: StartOptions

    func run() throws {
        var settings = ServerSettings()
        guard let serverMode = ServerMode(rawValue: mode) else {
            throw ValidationError("--mode must be process or base")
        }
        settings.mode = serverMode
        if let reactorNum { settings.reactorNum = reactorNum }
        if let workerNum { settings.workerNum = workerNum }
        settings.taskWorkerNum = taskWorkerNum
        guard let mode = DispatchMode(swooleMode: dispatchMode) else {
            throw ValidationError("--dispatch-mode must be 1, 2, 3 or 4")
        }
        settings.dispatchMode = mode
        settings.maxRequest = maxRequest
        settings.heartbeatCheckInterval = heartbeatCheckInterval
        settings.protocol.heartbeatIdleTime = heartbeatIdleTime
        settings.protocol.openEOFSplit = true
        settings.protocol.packageEOF = Array("\n".utf8)
        if let packageMaxLength { settings.protocol.packageMaxLength = packageMaxLength }
        settings.logFile = logFile
        settings.pidFile = pidFile
        switch logRotation {
        case "single": settings.logRotation = .single
        case "daily": settings.logRotation = .daily
        default: throw ValidationError("--log-rotation must be single or daily")
        }
        if let maxWaitTime { settings.maxWaitTime = maxWaitTime }
        settings.requestTimeout = requestTimeout
        settings.user = user
        settings.group = group
        if let maxConn { settings.maxConn = maxConn }
        if let bufferOutputSize { settings.bufferOutputSize = bufferOutputSize }
        control.apply(to: &settings)

        let server = Server(host: host, port: port, settings: settings)
        if let udpPort { server.addListener(host: host, port: udpPort, type: .udp) }
        let hasUDP = udpPort != nil
        var httpIndex: Int?
        if let httpPort {
            var http = ProtocolSettings()
            http.openHTTPProtocol = true
            http.packageMaxLength = settings.protocol.packageMaxLength
            http.heartbeatIdleTime = heartbeatIdleTime
            if let httpResponseTimeout { http.httpResponseTimeout = httpResponseTimeout }
            if let httpHeaderTimeout { http.httpHeaderTimeout = httpHeaderTimeout }
            if let httpBodyTimeout { http.httpBodyTimeout = httpBodyTimeout }
            http.httpCompression = httpCompression
            if let documentRoot {
                http.documentRoot = documentRoot
                http.enableStaticHandler = true
            }
            httpIndex = server.addListener(host: host, port: httpPort, type: .tcp, protocol: http)
        }

        let httpListener = httpIndex
        server.onStart { server in
            server.logger.info("onStart master=\(server.masterPid)")
            let ports = server.ports
            let line = "swoop-demo ready master=\(server.masterPid) manager=\(server.managerPid) port=\(ports[0]) udp-port=\(hasUDP ? ports[1] : 0) http-port=\(httpListener.map { ports[$0] } ?? 0)\n"
            FileHandle.standardOutput.write(Data(line.utf8))
        }
        server.onShutdown { server in server.logger.info("onShutdown") }
        server.onManagerStart { server in server.logger.info("onManagerStart manager=\(server.workerPid)") }
        server.onManagerStop { server in server.logger.info("onManagerStop") }
        server.onWorkerError { server, id, pid, exitCode, signal in
            server.logger.info("onWorkerError id=\(id) pid=\(pid) exit_code=\(exitCode) signal=\(signal)")
        }
        server.onWorkerStart { server, id in server.logger.info("onWorkerStart id=\(id) pid=\(server.workerPid)") }
        server.onWorkerStop { server, id in server.logger.info("onWorkerStop id=\(id) pid=\(server.workerPid)") }
        // The hot commands are answered before entering the general handler: its async
        // frame, sized for every command, cost about 1k instructions more per packet.
        server.onReceive { server, connection, reactorId, data in
            if let reply = LineCommands.quickReply(data) { return try server.send(connection, reply) }
            try await LineCommands.handle(server, connection, reactorId, data)
        }
        // The same for `GET /`: answered before the general handler, whose async frame is
        // sized for every route.
        server.onRequest { request, response in
            if try HTTPRoutes.quickResponse(request, response) { return }
            try await HTTPRoutes.handle(server, request, response)
        }
        server.onPipeMessage { server, from, message in
            // "relay <connection> <text>" from another worker: answer its client from here.
            let text = String(buffer: message)
            let parts = text.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count == 3, parts[0] == "relay", let id = UInt64(parts[1]) else { return }
            try server.send(ConnectionID(id), "relayed from=\(from) by=\(server.workerId) \(parts[2])\n")
        }
        // Task workers: "task TEXT" and "taskwait TEXT" hand TEXT to one, which answers with
        // it uppercased. A TEXT of the form "sleep MS" makes the task take MS milliseconds.
        server.onTask(DemoJob.self) { server, job, _ in
            let words = job.text.split(separator: " ")
            if words.count == 2, words[0] == "sleep", let ms = Int(words[1]) {
                try await Task.sleep(for: .milliseconds(ms))
            }
            return DemoResult(by: server.workerId, pid: server.workerPid, text: job.text.uppercased())
        }
        server.onFinish { server, taskId, result in
            guard let connection = LineCommands.taskConnections.withLock({ $0.removeValue(forKey: taskId) }) else { return }
            do {
                let done = try result.decode(DemoResult.self)
                try server.send(connection, "task-done by=\(done.by) pid=\(done.pid) \(done.text)\n")
            } catch {
                try server.send(connection, "error \(error)\n")
            }
        }
        server.onPacket { server, data, client in
            let command = String(buffer: data).trimmingCharacters(in: .whitespacesAndNewlines)
            let reply: String
            switch command {
            case "ping": reply = "pong"
            case "whoami": reply = "worker=\(server.workerId) pid=\(server.workerPid)"
            default: reply = "error unknown command"
            }
            try server.sendto(client, ByteBuffer(string: reply + "\n"))
        }
        try server.start()
    }
}

/// The HTTP listener's routes (`--http-port`).
enum HTTPRoutes {
    /// Answers `GET /` and `HEAD /`, the hot route; false for the others.
    static func quickResponse(_ request: Request, _ response: Response) throws -> Bool {
        guard request.path == "/", request.method == .get || request.method == .head else { return false }
        response.headers[.contentType] = "text/plain"
        try response.end("Hello, World!")
        return true
    }

    static func handle(_ server: Server, _ request: Request, _ response: Response) async throws {
        response.headers[.contentType] = "text/plain"
        switch (request.method, request.path) {
        case (.get, "/send"):
            // Raw bytes with Server.send ahead of the response, as Swoole's $server->send on
            // an HTTP connection: the handler takes charge of what the client makes of them.
            try server.send(request.connection, request.query["text"] ?? "raw")
            try response.end("sent")
        case (.get, "/whoami"):
            try response.end("worker=\(server.workerId) pid=\(server.workerPid) conn=\(request.connection) reactor=\(request.reactorId)")
        case (.get, "/sleep"):
            guard let ms = request.query["ms"].flatMap(Int.init), ms >= 0 else {
                response.status = .badRequest
                try response.end("error sleep takes ms=<milliseconds>")
                return
            }
            try await Task.sleep(for: .milliseconds(ms))
            try response.end("slept \(ms)")
        case (.get, "/text"):
            // A compressible body: n lines of text.
            let lines = request.query["lines"].flatMap(Int.init) ?? 100
            try response.end((0..<lines).map { "line \($0) of some compressible text" }.joined(separator: "\n"))
        case (.post, "/echo"):
            if let type = request.headers[.contentType] { response.headers[.contentType] = type }
            try response.end(request.body)
        case (.get, "/task"):
            let text = request.query["text"] ?? ""
            let done = try await server.taskwait(DemoJob(text: text), as: DemoResult.self, timeout: .seconds(10))
            try response.end("taskwait-done by=\(done.by) pid=\(done.pid) \(done.text)")
        case (.get, "/stream"), (.head, "/stream"):
            // Parts sent as they are made, with chunked transfer encoding.
            let parts = request.query["parts"].flatMap(Int.init) ?? 3
            for index in 0..<parts { try response.write("part \(index)\n") }
            try response.end()
        case (.get, "/cookies"):
            // Echoes the request's cookies, sorted, and sets one.
            response.setCookie("visited", "yes please", path: "/", httpOnly: true)
            try response.end(request.cookies.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: "\n"))
        case (.post, "/form"):
            try response.end(request.form.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: "\n"))
        case (.get, "/query"):
            try response.end(request.query.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: "\n"))
        case (.get, "/file"), (.head, "/file"):
            // Only files in the temporary directory: the demo must not serve the machine.
            let path = request.query["path"] ?? ""
            guard path.hasPrefix(NSTemporaryDirectory()), !path.contains("..") else {
                response.status = .forbidden
                try response.end("forbidden")
                return
            }
            response.headers[.contentType] = nil
            try response.sendfile(path, offset: request.query["offset"].flatMap(Int.init) ?? 0,
                                  length: request.query["length"].flatMap(Int.init))
        case (.get, "/status"):
            // Answers with the status asked for (the tests' way to try odd ones).
            response.status = HTTPResponse.Status(code: request.query["code"].flatMap(Int.init) ?? 200)
            try response.end("status \(response.status.code)")
        case (.get, "/throw"):
            throw CocoaError(.featureUnsupported)
        case (.get, "/crash"):
            abort()
        case (.get, "/hang"):
            // As the line command: blocks the worker's thread, for the watchdog.
            while !LineCommands.neverSet.load(ordering: .relaxed) {}
        default:
            response.status = .notFound
            try response.end("not found")
        }
    }
}

/// What the demo's task workers are given, and what they answer.
struct DemoJob: Codable, Sendable { var text: String }
struct DemoResult: Codable, Sendable { var by: Int; var pid: Int32; var text: String }

/// The TCP line protocol.
enum LineCommands {
    /// The demo's own logger, created on first use (after `start()` bootstrapped swift-log).
    static let logger = Logger(label: "swoop-demo")

    /// Which connection each `task` answers, in this worker.
    static let taskConnections = Mutex<[TaskID: ConnectionID]>([:])
    static let neverSet = Atomic<Bool>(false)

    /// Every command; `quickReply` answers the hot ones before this is entered.
    static func handle(_ server: Server, _ connection: ConnectionID, _ reactorId: Int, _ data: ByteBuffer) async throws {
        // Trimmed as bytes: in a Swift String "\r\n" is one Character, so a suffix test for
        // "\n" would miss it.
        var bytes = data.readableBytesView[...]
        if bytes.last == UInt8(ascii: "\n") { bytes = bytes.dropLast() }
        if bytes.last == UInt8(ascii: "\r") { bytes = bytes.dropLast() }
        let line = String(decoding: bytes, as: UTF8.self)
        let (command, argument) = split(line)
        switch command {
        case "ping":
            try server.send(connection, "pong\n")
        case "version":
            try server.send(connection, DemoVersion.text + "\n")
        case "log":
            // The program's own swift-log Logger: Swoop bootstrapped swift-log in start(), so
            // the line lands in the server's log with the same stamps.
            LineCommands.logger.info("\(argument)")
            try server.send(connection, "logged\n")
        case "echo":
            try server.send(connection, argument + "\n")
        case "whoami":
            try server.send(connection, "worker=\(server.workerId) pid=\(server.workerPid) conn=\(connection) reactor=\(reactorId)\n")
        case "sleep":
            guard let ms = Int(argument), ms >= 0 else {
                try server.send(connection, "error sleep takes milliseconds\n")
                return
            }
            try await Task.sleep(for: .milliseconds(ms))
            try server.send(connection, "slept \(ms)\n")
        case "relay":
            let (target, text) = split(argument)
            guard let worker = Int(target) else {
                try server.send(connection, "error relay takes a worker id\n")
                return
            }
            do {
                try server.sendMessage(ByteBuffer(string: "relay \(connection) \(text)"), toWorker: worker)
            } catch {
                try server.send(connection, "error \(error)\n")
            }
        case "stats":
            let stats = try await server.stats()
            let encoder = JSONEncoder()
            encoder.outputFormatting = .sortedKeys
            try server.send(connection, String(decoding: try encoder.encode(stats), as: UTF8.self) + "\n")
        case "task":
            do {
                // The connection is remembered before the task can end, so onFinish finds it.
                try LineCommands.taskConnections.withLock { pending in
                    let id = try server.task(DemoJob(text: argument))
                    pending[id] = connection
                }
            } catch {
                try server.send(connection, "error \(error)\n")
            }
        case "taskwait":
            do {
                let done = try await server.taskwait(DemoJob(text: argument), as: DemoResult.self, timeout: .seconds(10))
                try server.send(connection, "taskwait-done by=\(done.by) pid=\(done.pid) \(done.text)\n")
            } catch {
                try server.send(connection, "error \(error)\n")
            }
        case "crash":
            abort()
        case "hang":
            // Blocks the worker's thread without ever yielding, for the watchdog. The atomic
            // load keeps the compiler from removing the loop.
            while !LineCommands.neverSet.load(ordering: .relaxed) {}
        case "flood":
            // N lines of 1 KiB to this connection, for slow-reader tests.
            guard let count = Int(argument), count >= 0 else {
                try server.send(connection, "error flood takes a line count\n")
                return
            }
            let line = String(repeating: "x", count: 1023) + "\n"
            for _ in 0..<count { try server.send(connection, line) }
        case "close":
            try server.close(connection)
        default:
            try server.send(connection, "error unknown command\n")
        }
    }

    private static let pong = ByteBuffer(string: "pong\n")

    /// `ping` and `echo TEXT`, the commands a load test sends, answered from the packet's
    /// bytes without making a String (the echo is a slice of the packet). A line ending in
    /// "\r\n", or anything else, takes the general path.
    static func quickReply(_ data: ByteBuffer) -> ByteBuffer? {
        // Compared as raw bytes: the generic `starts(with:)` over a ByteBufferView costs
        // about a thousand instructions per packet.
        let kind = data.withUnsafeReadableBytes { bytes -> Int in
            let n = bytes.count
            guard n >= 5, bytes[n - 1] == UInt8(ascii: "\n"), bytes[n - 2] != UInt8(ascii: "\r") else { return 0 }
            if n > 6, bytes[0] == UInt8(ascii: "e"), bytes[1] == UInt8(ascii: "c"), bytes[2] == UInt8(ascii: "h"),
               bytes[3] == UInt8(ascii: "o"), bytes[4] == UInt8(ascii: " ") { return 1 }
            if n == 5, bytes[0] == UInt8(ascii: "p"), bytes[1] == UInt8(ascii: "i"), bytes[2] == UInt8(ascii: "n"),
               bytes[3] == UInt8(ascii: "g") { return 2 }
            return 0
        }
        switch kind {
        case 1: return data.getSlice(at: data.readerIndex + 5, length: data.readableBytes - 5)
        case 2: return pong
        default: return nil
        }
    }

    private static func split(_ text: String) -> (String, String) {
        guard let space = text.firstIndex(of: " ") else { return (text, "") }
        return (String(text[..<space]), String(text[text.index(after: space)...]))
    }
}

Demo.main()
