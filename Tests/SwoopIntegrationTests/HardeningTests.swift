import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Faults and limits: the watchdog kills a stuck worker and fails only what it held;
/// `maxConn` refuses cleanly; running out of descriptors backs off instead of spinning; a
/// client that does not read is closed at the output bound while the others are served.
class HardeningTests: SwoopTestCase {
    func testWatchdogKillsAWorkerStuckOnARequestAndFailsOnlyThatRequest() throws {
        try XCTSkipIf(serverMode == "base", "base mode: the connections die with the worker (testWatchdogInBaseMode)")
        let server = try startServer(["--worker-num", "2", "--dispatch-mode", "2", "--request-timeout", "1"])
        var byWorker: [Int: [LineClient]] = [:]
        for _ in 0..<6 {
            let client = try connect(server)
            byWorker[try whoami(client).worker, default: []].append(client)
        }
        let holders = try XCTUnwrap(byWorker[0])
        let stuckPid = try XCTUnwrap(server.workerPids()[0])
        let started = Date()
        try holders[0].send("hang")
        XCTAssertTrue(holders[0].isClosedByPeer(timeout: 10), "the client of the stuck request is closed")
        let elapsed = Date().timeIntervalSince(started)
        XCTAssertGreaterThan(elapsed, 0.9, "not before requestTimeout")
        XCTAssertLessThan(elapsed, 5, "soon after requestTimeout")
        try eventually("the stuck worker is replaced") { (server.workerPids()[0] ?? stuckPid) != stuckPid }
        for client in holders.dropFirst() + (byWorker[1] ?? []) {
            XCTAssertEqual(try client.request("ping", timeout: 10), "pong", "every other connection stays open and is served")
        }
        XCTAssertTrue(server.readLog().contains { $0.contains("(requestTimeout); killing it") }, "the kill is logged")
        assertMasterAndManagerUnchanged(server)
    }

    func testWatchdogAnswers503ForAStuckHTTPRequestAndTheConnectionGoesOn() throws {
        try XCTSkipIf(serverMode == "base", "base mode: the connections die with the worker (testWatchdogInBaseMode)")
        let server = try startServer(["--worker-num", "1", "--http-port", "0", "--request-timeout", "1"])
        let client = try RawHTTPClient(port: server.httpPort)
        defer { client.close() }
        let before = try XCTUnwrap(WhoAmI.parseTCP(try client.get("/whoami").text))
        XCTAssertEqual(try client.get("/hang").status, 503)
        let after = try XCTUnwrap(WhoAmI.parseTCP(try client.get("/whoami").text), "the same connection goes on")
        XCTAssertNotEqual(after.pid, before.pid)
        XCTAssertEqual(after.conn, before.conn)
    }

    func testWatchdogInBaseMode() throws {
        let server = try startServer(["--mode", "base", "--worker-num", "1", "--request-timeout", "1"])
        let client = try connect(server)
        let before = try whoami(client)
        try client.send("hang")
        XCTAssertTrue(client.isClosedByPeer(timeout: 10), "the stuck worker is killed, and its connections with it")
        try eventually("a new connection is served by the replacement", timeout: 15) {
            let fresh = try connect(server)
            return try whoami(fresh).pid != before.pid
        }
        XCTAssertTrue(server.readLog().contains { $0.contains("(workerTimeout); killing it") }, "the kill is logged")
    }

    func testMaxConnRefusesCleanlyAndCounts() throws {
        let server = try startServer(["--worker-num", "1", "--max-conn", "3"])
        let open = try (0..<3).map { _ in try connect(server) }
        for client in open { XCTAssertEqual(try client.request("ping"), "pong") }
        let refused = try connect(server)
        XCTAssertTrue(refused.isClosedByPeer(timeout: 5), "a connection over maxConn is closed at once")
        XCTAssertGreaterThanOrEqual(try stats(open[0]).int("reject_count") ?? 0, 1, "and counted")
        open[1].close()
        try eventually("a slot frees up for a new connection") {
            let again = try connect(server)
            return (try? again.request("ping", timeout: 2)) == "pong"
        }
        XCTAssertEqual(try open[0].request("ping"), "pong")
        assertMasterAndManagerUnchanged(server)
    }

    func testRunningOutOfDescriptorsBacksOffAndRecovers() throws {
        // The whole tree starts with 64 descriptors at most (prlimit execs swoop-demo).
        let demo = try DemoBinary.path("swoop-demo")
        let server = try startServer(["--nofile=64:64", "--", demo, "--worker-num", "1"], binary: "/usr/bin/prlimit")
        var clients: [LineClient] = []
        defer { clients.forEach { $0.close() } }
        for _ in 0..<100 { clients.append(try connect(server)) }
        // The accepts the master could not make wait in the backlog; it must not spin.
        let cpuBefore = try cpuSeconds(server.masterPid)
        Thread.sleep(forTimeInterval: 1)
        let cpuUsed = try cpuSeconds(server.masterPid) - cpuBefore
        XCTAssertLessThan(cpuUsed, 0.5, "the master backs off instead of spinning on EMFILE")
        XCTAssertTrue(server.readLog().contains { $0.contains("pausing accepts") }, "EMFILE is logged")
        clients.forEach { $0.close() }
        clients.removeAll()
        try eventually("accepts resume once descriptors free up", timeout: 15) {
            let fresh = try connect(server)
            return (try? fresh.request("ping", timeout: 2)) == "pong"
        }
    }

    func testAClientThatDoesNotReadIsClosedAndOthersAreServed() throws {
        let server = try startServer(["--worker-num", "2", "--buffer-output-size", "65536"])
        let reader = try connect(server)
        let rssBefore = try residentKiB(server.masterPid)
        var slow: [LineClient] = []
        for _ in 0..<2 {
            let client = try connect(server)
            // 12 MiB each, never read: more than the kernel buffers on both sides take.
            try client.send("flood 12000")
            slow.append(client)
        }
        for client in slow {
            XCTAssertTrue(client.isResetByPeer(timeout: 60), "a client over bufferOutputSize is reset")
        }
        XCTAssertEqual(try reader.request("ping", timeout: 10), "pong")
        let grown = try residentKiB(server.masterPid) - rssBefore
        XCTAssertLessThan(grown, 32 * 1024, "the master did not buffer the floods (grew \(grown) KiB)")
        assertMasterAndManagerUnchanged(server)
    }

    func testAThousandClientsThatDoNotReadLeaveTheMasterBounded() throws {
        try XCTSkipIf(serverMode == "base", "the same output bound in the workers; 30 s once is enough")
        try skipUnderAddressSanitizer()
        let server = try startServer(["--worker-num", "2", "--buffer-output-size", "65536"])
        let reader = try connect(server)
        let rssBefore = try residentKiB(server.masterPid)
        var slow: [LineClient] = []
        defer { slow.forEach { $0.close() } }
        for _ in 0..<1000 {
            let client = try connect(server)
            try client.send("flood 256")  // 256 KiB each, never read
            slow.append(client)
        }
        XCTAssertEqual(try reader.request("ping", timeout: 30), "pong", "the others are served meanwhile")
        // The floods (256 MiB in all) pass through the master for a while: its peak counts.
        var peak = 0
        for _ in 0..<40 {
            peak = max(peak, try residentKiB(server.masterPid))
            Thread.sleep(forTimeInterval: 0.2)
        }
        let grown = peak - rssBefore
        // At most bufferOutputSize per client (64 MiB in all) may be held; most sits in the
        // kernel's socket buffers, and a client over the bound is reset.
        XCTAssertLessThan(grown, 96 * 1024, "the master's memory stays bounded (grew \(grown) KiB)")
        slow.forEach { $0.close() }
        slow.removeAll()
        try eventually("the connections are released", timeout: 30) {
            (try stats(reader).int("connection_num") ?? -1) == 1
        }
        assertMasterAndManagerUnchanged(server)
    }

    func testAPipelinedFloodIsAnsweredInOrderWithBoundedMemory() throws {
        try skipUnderAddressSanitizer()
        let server = try startServer(["--worker-num", "2", "--http-port", "0"])
        let client = try RawHTTPClient(port: server.httpPort)
        defer { client.close() }
        let rssBefore = try residentKiB(server.masterPid)
        let count = 5000
        var burst = ""
        for i in 0..<count { burst += "GET /status?code=\(200 + i % 2) HTTP/1.1\r\nHost: t\r\n\r\n" }
        try client.send(burst)
        for i in 0..<count {
            let reply = try client.readResponse(timeout: 30)
            XCTAssertEqual(reply.status, 200 + i % 2, "response \(i) answers request \(i)")
            if reply.status != 200 + i % 2 { break }
        }
        let grown = try residentKiB(server.masterPid) - rssBefore
        XCTAssertLessThan(grown, 32 * 1024, "the master reads one request at a time (grew \(grown) KiB)")
        XCTAssertEqual(try client.get("/").text, "Hello, World!")
    }

    /// The memory bounds are for the server as built: AddressSanitizer's quarantine keeps
    /// freed memory resident (up to 256 MiB), and its shadow memory grows with the heap
    /// (`Scripts/sanitizers.sh` exports ASAN_OPTIONS).
    private func skipUnderAddressSanitizer() throws {
        try XCTSkipIf(ProcessInfo.processInfo.environment["ASAN_OPTIONS"] != nil,
                      "resident memory is not the server's own under AddressSanitizer")
    }

    private func residentKiB(_ pid: pid_t) throws -> Int {
        let value = try XCTUnwrap(ProcFS.statusField(pid, "VmRSS:"), "no VmRSS for \(pid)")
        return Int(value.split(separator: " ").first ?? "") ?? 0
    }

    private func cpuSeconds(_ pid: pid_t) throws -> Double {
        try XCTUnwrap(ProcFS.cpuSeconds(pid), "no /proc/\(pid)/stat")
    }
}
