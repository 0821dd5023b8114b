import Foundation
import XCTest

/// Test 5: the four dispatch modes, observed through `whoami`.
final class DispatchModeTests: SwoopTestCase {
    /// Mode 1, round robin per packet: successive requests on ONE connection alternate
    /// between the two workers.
    func testMode1RoundRobinPerPacket() throws {
        let server = try startServer(["--worker-num", "2", "--dispatch-mode", "1"])
        let client = try connect(server)
        var answers: [WhoAmI] = []
        for _ in 0..<8 { answers.append(try whoami(client)) }
        let ids = answers.map(\.worker)
        XCTAssertTrue(zip(ids, ids.dropFirst()).allSatisfy { $0 != $1 }, "successive packets must alternate workers: \(ids)")
        XCTAssertEqual(Set(ids), [0, 1], "\(ids)")
        XCTAssertEqual(Set(answers.compactMap(\.conn)).count, 1, "one connection, one connection id: \(answers)")
    }

    /// Mode 2, fixed per connection (also the default): each connection always gets the
    /// same worker; different connections are spread over the workers.
    func testMode2FixedPerConnection() throws {
        try checkFixedPerConnection(["--worker-num", "3", "--dispatch-mode", "2"])
    }

    /// Mode 2 is the default when no --dispatch-mode is given.
    func testDefaultDispatchModeIsFixedPerConnection() throws {
        try checkFixedPerConnection(["--worker-num", "3"])
    }

    private func checkFixedPerConnection(_ args: [String], file: StaticString = #filePath, line: UInt = #line) throws {
        let server = try startServer(args)
        let clients = try (0..<6).map { _ in try connect(server) } // all open at once
        var workerOf: [Int] = []
        for (index, client) in clients.enumerated() {
            let ids = try (0..<4).map { _ in try whoami(client).worker }
            XCTAssertEqual(Set(ids).count, 1, "connection \(index) moved between workers: \(ids)", file: file, line: line)
            workerOf.append(ids[0])
        }
        XCTAssertGreaterThanOrEqual(Set(workerOf).count, 2,
                                    "6 connections should spread over the 3 workers, got \(workerOf)", file: file, line: line)
    }

    /// Mode 3, preemptive: while one worker is busy in `sleep 1500`, requests on other
    /// connections go promptly to the idle worker. With 2 workers that means every such
    /// request is answered by the same (idle) worker, on every connection — which
    /// neither round robin (alternates) nor fixed dispatch (spreads connections) does.
    func testMode3PreemptiveAvoidsBusyWorker() throws {
        let server = try startServer(["--worker-num", "2", "--dispatch-mode", "3", "--reactor-num", "1"])
        let sleeper = try connect(server)
        XCTAssertEqual(try sleeper.request("ping"), "pong")
        let probes = try (0..<4).map { _ in try connect(server) }

        let start = monotonicNow()
        try sleeper.send("sleep 1500")
        // There is no observable event for "the sleep request reached a worker"; give the
        // (single) reactor a moment to read and dispatch it before probing.
        pause(0.2)

        var ids: [Int] = []
        for probe in probes {
            for _ in 0..<2 {
                let t0 = monotonicNow()
                let me = try whoami(probe, timeout: 2)
                let elapsed = monotonicNow() - t0
                XCTAssertLessThan(elapsed, 0.5, "whoami took \(elapsed) s while one worker was busy")
                ids.append(me.worker)
            }
        }
        XCTAssertLessThan(monotonicNow() - start, 1.4, "probing must finish while the sleeper is still busy")
        XCTAssertFalse(sleeper.hasInput(), "the sleeper got its reply too early")
        XCTAssertEqual(Set(ids).count, 1, "all requests during the sleep should go to the one idle worker: \(ids)")

        XCTAssertEqual(try sleeper.readLine(timeout: 5), "slept 1500")
    }

    /// Mode 4, client IP hash: every connection from 127.0.0.1 lands on the same worker.
    func testMode4IPHash() throws {
        let server = try startServer(["--worker-num", "3", "--dispatch-mode", "4"])
        let clients = try (0..<6).map { _ in try connect(server) }
        var ids: [Int] = []
        for client in clients {
            ids.append(try whoami(client).worker)
            ids.append(try whoami(client).worker)
        }
        XCTAssertEqual(Set(ids).count, 1, "all connections from one IP must hit one worker: \(ids)")
    }
}
