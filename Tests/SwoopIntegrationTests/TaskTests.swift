import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Task workers through swoop-demo's `task` and `taskwait` commands.
class TaskTests: SwoopTestCase {
    func testTaskAndTaskwaitRoundTrips() throws {
        let server = try startServer(["--worker-num", "2", "--task-worker-num", "2"])
        let client = try connect(server)
        let taskPids = Dictionary(uniqueKeysWithValues: server.workerProcesses().filter { $0.isTaskWorker }.map { ($0.workerId!, $0.pid) })
        for (command, prefix) in [("task", "task-done"), ("taskwait", "taskwait-done")] {
            let reply = try client.request("\(command) hello swoop", timeout: 10)
            let parts = reply.split(separator: " ")
            XCTAssertEqual(parts.first.map(String.init), prefix, reply)
            XCTAssertTrue(reply.hasSuffix(" HELLO SWOOP"), reply)
            let by = Int(parts[1].dropFirst(3))!
            let pid = Int32(parts[2].dropFirst(4))!
            XCTAssertEqual(taskPids[by], pid, "the reply names the task worker that ran it: \(reply)")
        }
    }

    func testFiveHundredTasksFromTwentyConnections() throws {
        let server = try startServer(["--worker-num", "2", "--task-worker-num", "3"])
        let clients = try (0..<20).map { _ in try connect(server) }
        for (c, client) in clients.enumerated() {
            for i in 0..<25 { try client.send("\(i % 2 == 0 ? "task" : "taskwait") c\(c)-\(i)") }
        }
        var usedBy = Set<String>()
        for (c, client) in clients.enumerated() {
            var seen = Set<String>()
            for _ in 0..<25 {
                let reply = try client.readLine(timeout: 20)
                XCTAssertTrue(reply.hasPrefix("task-done ") || reply.hasPrefix("taskwait-done "), reply)
                seen.insert(String(reply.split(separator: " ").last!))
                usedBy.insert(String(reply.split(separator: " ")[1]))
            }
            // `task` replies come from onFinish and may overtake taskwait replies: compare as sets.
            XCTAssertEqual(seen, Set((0..<25).map { "C\(c)-\($0)" }), "client \(c) got exactly its own results")
        }
        XCTAssertGreaterThan(usedBy.count, 1, "tasks were spread over task workers: \(usedBy)")
    }

    func testKilledTaskWorkerFailsItsTasksAtOnce() throws {
        let server = try startServer(["--worker-num", "2", "--task-worker-num", "1"])
        let victim = server.workerProcesses().first { $0.isTaskWorker }!
        let holder = try connect(server)
        try holder.send("taskwait sleep 8000")
        let probe = try connect(server)
        try eventually("the task is running") { try self.stats(probe).int("tasking_num") == 1 }
        // Queued behind it: this one must run on the replacement, not be lost.
        let queued = try connect(server)
        try queued.send("task sleep 200")
        try eventually("the second task is queued") { try self.stats(probe).int("task_queue_num") == 1 }
        let killedAt = Date()
        try server.signalProcess(victim.pid, SIGKILL)
        let failure = try holder.readLine(timeout: 5)
        XCTAssertTrue(failure.hasPrefix("error") && failure.contains("died"), failure)
        XCTAssertLessThan(Date().timeIntervalSince(killedAt), 2, "the caller learns at once, not after a timeout")
        let done = try queued.readLine(timeout: 10)
        XCTAssertTrue(done.hasPrefix("task-done") && done.hasSuffix("SLEEP 200"), done)
        XCTAssertTrue(try probe.request("taskwait again", timeout: 10).hasPrefix("taskwait-done"), "later tasks succeed")
        XCTAssertNotNil(logEvent(server, "onWorkerError", ["id": victim.workerId!, "pid": Int(victim.pid)]))
    }

    func testTaskWithoutTaskWorkersIsAnError() throws {
        let server = try startServer(["--worker-num", "1"])
        let client = try connect(server)
        XCTAssertTrue(try client.request("task x").hasPrefix("error"), "no task workers")
        XCTAssertTrue(try client.request("taskwait x").hasPrefix("error"))
        XCTAssertEqual(try client.request("ping"), "pong")
    }

    func testSIGUSR2WhileTasksAreInFlightLosesNone() throws {
        let server = try startServer(["--worker-num", "2", "--task-worker-num", "2"])
        let before = server.workerPids()
        let clients = try (0..<6).map { _ in try connect(server) }
        for (i, client) in clients.enumerated() { try client.send("taskwait sleep \(300 + 50 * i)") }
        try server.signal(SIGUSR2)
        for (i, client) in clients.enumerated() {
            let reply = try client.readLine(timeout: 15)
            XCTAssertTrue(reply.hasPrefix("taskwait-done"), "task \(i) finished through the reload: \(reply)")
        }
        try eventually("task workers replaced") {
            let now = server.workerPids()
            return now.count == before.count && [2, 3].allSatisfy { now[$0] != nil && now[$0] != before[$0] }
        }
        let now = server.workerPids()
        XCTAssertEqual(now[0], before[0])
        XCTAssertEqual(now[1], before[1])
    }
}

/// Task worker API paths through swoop-fixture (length-framed).
final class FixtureTaskTests: SwoopTestCase {
    private func start(_ extra: [String] = []) throws -> (DemoServer, LineClient) {
        let server = try startServer(["--framing", "length", "--task-worker-num", "2", "--package-max-length", "8388608",
                                      "--buffer-output-size", "16777216"] + extra, program: "swoop-fixture")
        return (server, try connect(server))
    }

    private func ask(_ client: LineClient, _ text: String, timeout: TimeInterval = 20) throws -> String {
        try client.askFramed(text, timeout: timeout)
    }

    func testPayloadsTravelWholeAndOversizeIsRefused() throws {
        let (_, client) = try start()
        for size in [1, 64 * 1024, 4 * 1024 * 1024] {
            XCTAssertEqual(try ask(client, "twsize \(size)"), "ok \(size)")
        }
        let over = try ask(client, "twsize \(9 * 1024 * 1024)")
        XCTAssertTrue(over.hasPrefix("error") && over.contains("exceeds"), over)
        let oversizeResult = try ask(client, "tw oversize \(9 * 1024 * 1024)")
        XCTAssertTrue(oversizeResult.hasPrefix("error") && oversizeResult.contains("exceeds"), oversizeResult)
        XCTAssertEqual(try ask(client, "tw still fine"), "still fine")
    }

    func testHandlerErrorsAndNestedTasksReachTheCaller() throws {
        let (_, client) = try start()
        let thrown = try ask(client, "tw throw")
        XCTAssertTrue(thrown.hasPrefix("error") && thrown.contains("deliberate task failure"), thrown)
        let nested = try ask(client, "tw nested")
        XCTAssertTrue(nested.hasPrefix("nested refused") && nested.contains("task worker cannot create tasks"), nested)
    }

    func testQueueOverflowFailsAtOnce() throws {
        let (_, client) = try start(["--task-queue-limit", "5"])
        let reply = try ask(client, "flood 12")
        XCTAssertTrue(reply.hasPrefix("accepted=5 refused=7 ") && reply.contains("queue is full"), reply)
    }

    func testTaskWaitMultiAndTypeMismatch() throws {
        let (_, client) = try start()
        XCTAssertEqual(try ask(client, "multi 40"), "multi ok=40")
        let mismatch = try ask(client, "mismatch")
        XCTAssertTrue(mismatch.hasPrefix("error type mismatch"), mismatch)
    }

    func testTaskMaxRequestRecyclesWithoutLosingTasks() throws {
        let (server, client) = try start(["--task-max-request", "5"])
        let first = Set(server.processTree().map(\.pid))
        // Each task takes a little while, so that successors have time to start and take over.
        for _ in 0..<40 { XCTAssertEqual(try ask(client, "tw sleep 15"), "sleep 15") }
        try eventually("task workers were recycled more than once") {
            server.readLog().filter { $0.contains("recycling it") }.count >= 3
                && Set(server.processTree().map(\.pid)).subtracting(first).count >= 1
        }
    }
}
