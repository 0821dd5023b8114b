import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Base class of the integration tests: starts servers whose whole process tree is
/// killed by a teardown block (which XCTest runs also when the test failed or threw),
/// and offers the checks that many tests share.
class SwoopTestCase: XCTestCase {
    /// Starts `swoop-demo` with `args` (plus `--host 127.0.0.1 --port 0 --log-file <temp>`
    /// unless given) and registers its teardown. On failure the teardown prints the
    /// server's diagnostics (tree, log and stderr tails) and keeps its temporary files.
    /// The server mode the tests of this class run in (a subclass runs them in the other).
    var serverMode: String { "process" }

    func startServer(_ args: [String] = [], timeout: TimeInterval = 20, program: String = "swoop-demo",
                     binary: String? = nil) throws -> DemoServer {
        let modeArgs = serverMode == "process" || args.contains("--mode") ? [] : ["--mode", serverMode]
        let server = try DemoServer.start(args: args + modeArgs, timeout: timeout, program: program, binary: binary)
        addTeardownBlock { [self] in
            // Not `hasSucceeded`: corelibs XCTest reports false for a run not stopped yet.
            if let run = self.testRun, run.totalFailureCount > 0 {
                server.keepFilesAfterKill()
                print(server.diagnostics())
            }
            server.kill()
        }
        return server
    }

    /// Opens a line client to `server`'s TCP port.
    func connect(_ server: DemoServer, timeout: TimeInterval = 5) throws -> LineClient {
        try LineClient(port: server.port, timeout: timeout)
    }

    /// Waits (polling) until `condition` holds; throws a readable error after `timeout`
    /// seconds. Use it for steps the rest of the test depends on.
    func eventually(
        _ what: @autoclosure () -> String,
        timeout: TimeInterval = 10,
        poll: TimeInterval = 0.05,
        _ condition: () throws -> Bool
    ) throws {
        guard try waitUntil(timeout: timeout, poll: poll, condition) else {
            throw HarnessError("timed out after \(timeout) s waiting for: \(what())")
        }
    }

    /// Sends `whoami` on a TCP connection and parses the exact TCP reply format.
    func whoami(_ client: LineClient, timeout: TimeInterval = 5) throws -> WhoAmI {
        let reply = try client.request("whoami", timeout: timeout)
        guard let parsed = WhoAmI.parseTCP(reply) else {
            throw HarnessError("malformed whoami reply: \"\(reply)\" (want worker=<id> pid=<pid> conn=<id> reactor=<id>)")
        }
        return parsed
    }

    /// Sends `stats` and decodes the JSON reply.
    func stats(_ client: LineClient, timeout: TimeInterval = 5) throws -> Stats {
        try Stats(client.request("stats", timeout: timeout))
    }

    /// `stats`' connection_num (throws if missing).
    func connectionCount(_ client: LineClient) throws -> Int {
        let stats = try stats(client)
        guard let count = stats.int("connection_num") else {
            throw HarnessError("stats lacks a numeric connection_num: \(stats.object)")
        }
        return count
    }

    /// The first log event named `name` whose fields include all of `fields`.
    func logEvent(_ server: DemoServer, _ name: String, _ fields: [String: Int] = [:]) -> LogEvent? {
        server.logEvents().first { event in
            event.name == name && fields.allSatisfy { event.int($0.key) == $0.value }
        }
    }

    /// Waits for a log event named `name` with these fields and returns it.
    func waitForLogEvent(
        _ server: DemoServer, _ name: String, _ fields: [String: Int] = [:], timeout: TimeInterval = 10
    ) throws -> LogEvent {
        var found: LogEvent?
        try eventually("log line \(name) \(fields.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))", timeout: timeout) {
            found = logEvent(server, name, fields)
            return found != nil
        }
        return found!
    }

    /// Asserts that the tree has exactly the workers with ids `0..<workers` and task workers
    /// with ids `workers..<workers+taskWorkers`, all children of the manager, no zombies.
    func assertWorkerSet(
        _ server: DemoServer, workers: Int, taskWorkers: Int,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        let tree = server.processTree()
        let children = tree.filter { $0.ppid == server.managerPid && !$0.isZombie }
        var workerIds: [Int] = []
        var taskIds: [Int] = []
        for child in children {
            switch child.role {
            case .worker(let id): workerIds.append(id)
            case .taskWorker(let id): taskIds.append(id)
            default: XCTFail("unexpected child of the manager: \(child)", file: file, line: line)
            }
        }
        XCTAssertEqual(workerIds.sorted(), Array(0..<workers), "worker ids; tree:\n\(describe(tree))", file: file, line: line)
        XCTAssertEqual(taskIds.sorted(), Array(workers..<(workers + taskWorkers)),
                       "task worker ids; tree:\n\(describe(tree))", file: file, line: line)
        XCTAssertFalse(tree.contains { $0.isZombie }, "zombies in the tree:\n\(describe(tree))", file: file, line: line)
    }

    /// Asserts that master and manager are still the processes announced in the ready line.
    func assertMasterAndManagerUnchanged(_ server: DemoServer, file: StaticString = #filePath, line: UInt = #line) {
        let tree = server.processTree()
        XCTAssertEqual(tree.first?.pid, server.masterPid, "master gone; tree:\n\(describe(tree))", file: file, line: line)
        XCTAssertEqual(tree.first?.role, .master, "master title; tree:\n\(describe(tree))", file: file, line: line)
        let managers = tree.filter { $0.ppid == server.masterPid && !$0.isZombie }
        XCTAssertEqual(managers.map(\.pid), [server.managerPid],
                       "the master's only child must still be manager \(server.managerPid); tree:\n\(describe(tree))",
                       file: file, line: line)
    }

    /// One process per line, for failure messages.
    func describe(_ tree: [ServerProcess]) -> String {
        tree.isEmpty ? "  (empty)" : tree.map { "  \($0)" }.joined(separator: "\n")
    }
}
