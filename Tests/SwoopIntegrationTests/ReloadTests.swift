import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Reload done right: rolling, draining, bounded by maxWaitTime, rolled back when the new
/// workers cannot start, and never costing a request.
final class ReloadTests: SwoopTestCase {
    /// The pids of the workers (by title: a crashing Swift process may briefly have a
    /// `swift-backtrace` child in the tree too).
    private func workerPids(_ server: DemoServer) -> Set<pid_t> {
        Set(server.processTree().filter { $0.title.contains(": worker ") || $0.title.contains(": task worker ") }.map(\.pid))
    }

    func testReloadUnderLoadFailsNoRequest() throws {
        let server = try startServer(["--worker-num", "2", "--task-worker-num", "1"])
        let clients = try (0..<16).map { _ in try connect(server) }
        let stop = Date().addingTimeInterval(3)
        var reloads = 0
        var nextReload = Date().addingTimeInterval(0.3)
        var served = 0
        var round = 0
        // Every client keeps one request in flight; SIGUSR1 arrives every 300 ms meanwhile.
        while Date() < stop {
            for (c, client) in clients.enumerated() { try client.send("echo \(c)-\(round)") }
            for (c, client) in clients.enumerated() {
                XCTAssertEqual(try client.readLine(timeout: 10), "\(c)-\(round)", "client \(c) round \(round)")
                served += 1
            }
            round += 1
            if Date() >= nextReload {
                try server.signal(SIGUSR1)
                reloads += 1
                nextReload = Date().addingTimeInterval(0.3)
            }
        }
        XCTAssertGreaterThanOrEqual(reloads, 5)
        XCTAssertGreaterThan(served, 100)
        let log = server.readLog().joined(separator: "\n")
        XCTAssertTrue(log.contains("reload complete"), log)
        XCTAssertFalse(log.contains("rolled back"), log)
    }

    func testSlowHandlerFinishesThroughAReload() throws {
        let server = try startServer(["--worker-num", "1"])
        let client = try connect(server)
        let before = workerPids(server)
        try client.send("sleep 1200")
        let probe = try connect(server)
        try eventually("the sleep is in flight") { try self.stats(probe).int("request_count") ?? 0 >= 2 }
        try server.signal(SIGUSR1)
        XCTAssertEqual(try client.readLine(timeout: 10), "slept 1200", "the old worker finishes what it holds")
        try eventually("the worker was replaced") { self.workerPids(server).isDisjoint(with: before) && self.workerPids(server).count == 1 }
        XCTAssertEqual(try client.request("ping"), "pong", "the same connection is served by the new worker")
    }

    func testMaxWaitTimeEndsAWorkerThatWillNotFinish() throws {
        let server = try startServer(["--framing", "length", "--worker-num", "1", "--max-wait-time", "1"],
                                     program: "swoop-fixture")
        let stuck = try connect(server)
        let bystander = try connect(server)
        XCTAssertEqual(try bystander.askFramed("hi"), "hi")
        let before = workerPids(server)
        try stuck.sendFramed("sleep 30000")
        try eventually("the sleep is in flight") { server.readLog().contains { $0.contains("sleeping 30000") } }
        let reloadAt = Date()
        try server.signal(SIGUSR1)
        XCTAssertTrue(stuck.isClosedByPeer(timeout: 8), "the request that outlived maxWaitTime fails: its client is closed")
        XCTAssertLessThan(Date().timeIntervalSince(reloadAt), 6)
        try eventually("the old worker is gone") { self.workerPids(server).isDisjoint(with: before) }
        XCTAssertEqual(try bystander.askFramed("still here", timeout: 5), "still here")
        XCTAssertTrue(server.readLog().contains { $0.contains("after maxWaitTime") })
        XCTAssertTrue(server.readLog().contains { $0.contains("onWorkerExit id=0") },
                      "a worker that drains with work in hand calls onWorkerExit")
    }

    func testCrashLoopIsRestartedWithBackOff() throws {
        let flag = NSTemporaryDirectory() + "swoop-crash-\(getpid())-\(UUID().uuidString)"
        defer { unlink(flag) }
        let server = try startServer(["--framing", "length", "--worker-num", "1", "--crash-on-start-file", flag],
                                     program: "swoop-fixture")
        let victim = workerPids(server).first!
        XCTAssertTrue(FileManager.default.createFile(atPath: flag, contents: nil))
        try server.signalProcess(victim, SIGKILL)
        let started = Date()
        Thread.sleep(forTimeInterval: 2)
        let crashes = server.readLog().filter { $0.contains("crashing on start") }.count
        XCTAssertGreaterThanOrEqual(crashes, 3, "it is retried")
        XCTAssertLessThanOrEqual(crashes, 12, "but with back-off, not in a tight loop (\(crashes) starts in \(Date().timeIntervalSince(started)) s)")
        XCTAssertTrue(server.readLog().contains { $0.contains("keeps failing right after start") })
        unlink(flag)
        let client = try connect(server)
        XCTAssertEqual(try client.askFramed("back", timeout: 15), "back", "once it can start, it serves again")
    }

    func testReloadIsRolledBackWhenNewWorkersCannotStart() throws {
        let flag = NSTemporaryDirectory() + "swoop-rollback-\(getpid())-\(UUID().uuidString)"
        defer { unlink(flag) }
        let server = try startServer(["--framing", "length", "--worker-num", "2", "--crash-on-start-file", flag],
                                     program: "swoop-fixture")
        let client = try connect(server)
        XCTAssertEqual(try client.askFramed("before"), "before")
        let before = workerPids(server)
        XCTAssertTrue(FileManager.default.createFile(atPath: flag, contents: nil))
        try server.signal(SIGUSR1)
        try eventually("the reload is rolled back") { server.readLog().contains { $0.contains("reload rolled back") } }
        try eventually("the failed new workers are gone") { self.workerPids(server) == before }
        XCTAssertEqual(try client.askFramed("during"), "during")
        // A later reload, with a build that starts, goes through.
        unlink(flag)
        try server.signal(SIGUSR1)
        try eventually("the second reload replaced the workers: \(self.workerPids(server)) vs \(before)") {
            let now = self.workerPids(server)
            return now.count == 2 && now.isDisjoint(with: before)
        }
        XCTAssertEqual(try client.askFramed("after"), "after")
        // An old worker leaves the process list when it exits; the manager logs the reload's
        // end once it has reaped it, a moment later.
        try eventually("the second reload completes") { server.readLog().contains { $0.contains("onAfterReload") } }
        let log = server.readLog()
        XCTAssertEqual(log.filter { $0.contains("onBeforeReload") }.count, 2)
        XCTAssertEqual(log.filter { $0.contains("onAfterReload") }.count, 1, "only the reload that took effect completes")
    }

    func testReloadSignalDuringAReloadIsQueued() throws {
        let server = try startServer(["--framing", "length", "--worker-num", "1"], program: "swoop-fixture")
        let client = try connect(server)
        XCTAssertEqual(try client.askFramed("x"), "x")
        try client.sendFramed("sleep 800")
        try eventually("the sleep is in flight") { server.readLog().contains { $0.contains("sleeping 800") } }
        try server.signal(SIGUSR1)
        try eventually("the first reload began") { server.readLog().contains { $0.contains("onBeforeReload") } }
        try server.signal(SIGUSR1)
        XCTAssertEqual(try client.readFramed(timeout: 10), "slept 800")
        try eventually("both reloads ran", timeout: 15) {
            server.readLog().filter { $0.contains("onAfterReload") }.count == 2
        }
        XCTAssertTrue(server.readLog().contains { $0.contains("will follow it") })
    }
}

extension ReloadTests {
    func testMaxRequestRecyclesWorkersWithoutFailingARequest() throws {
        let server = try startServer(["--worker-num", "1", "--max-request", "20"])
        let client = try connect(server)
        var pids = Set<Int32>()
        // Paced, because a recycled worker serves on until its successor is up (tens of ms).
        for i in 0..<150 {
            XCTAssertEqual(try client.request("echo r\(i)", timeout: 10), "r\(i)")
            if i % 10 == 0 { pids.insert(try whoami(client).pid) }
            Thread.sleep(forTimeInterval: 0.004)
        }
        // 20 requests plus a random grace of up to 10 each.
        try eventually("the worker was recycled several times") {
            server.readLog().filter { $0.contains("recycling it") }.count >= 3
        }
        XCTAssertGreaterThanOrEqual(pids.count, 3, "successive workers served the same connection: \(pids)")
        XCTAssertNil(logEvent(server, "onWorkerError"), "a recycle is not an error")
    }
}
