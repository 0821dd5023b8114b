import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// API paths that swoop-demo's fixed line protocol does not reach, through swoop-fixture:
/// length framing, a throwing handler, clientInfo/exists/connections, custom dispatch,
/// a Unix-socket listener and the output buffer bound.
class FixtureTests: SwoopTestCase {
    private func frame(_ text: String) -> [UInt8] {
        let n = UInt32(text.utf8.count)
        return [UInt8(n >> 24), UInt8(n >> 16 & 0xff), UInt8(n >> 8 & 0xff), UInt8(n & 0xff)] + Array(text.utf8)
    }

    private func readFrame(_ client: LineClient) throws -> String { try client.readFramed(timeout: 5) }

    private func ask(_ client: LineClient, _ text: String) throws -> String { try client.askFramed(text, timeout: 5) }

    func testLengthFramingSplitAndCoalescedPackets() throws {
        let server = try startServer(["--framing", "length"], program: "swoop-fixture")
        let client = try connect(server)
        XCTAssertEqual(try ask(client, "hello"), "hello")
        // Three packets in one write, and one packet cut into single bytes.
        try client.sendRaw(frame("a") + frame("bb") + frame(""))
        XCTAssertEqual(try readFrame(client), "a")
        XCTAssertEqual(try readFrame(client), "bb")
        XCTAssertEqual(try readFrame(client), "")
        for byte in frame("slow") { try client.sendRaw([byte]) }
        XCTAssertEqual(try readFrame(client), "slow")
    }

    func testLengthOverPackageMaxLengthClosesThatConnectionOnly() throws {
        let server = try startServer(["--framing", "length", "--package-max-length", "65536"], program: "swoop-fixture")
        let bystander = try connect(server)
        let offender = try connect(server)
        // The header alone announces 1 MiB: the connection is closed without waiting for the body.
        try offender.sendRaw([0, 0x10, 0, 0])
        XCTAssertTrue(offender.isClosedByPeer(timeout: 5))
        XCTAssertEqual(try ask(bystander, "still here"), "still here")
        let log = server.readLog().joined(separator: "\n")
        XCTAssertTrue(log.contains("closing it"), "the oversized packet is logged:\n\(log)")
    }

    func testThrowingHandlerClosesOnlyThatConnection() throws {
        let server = try startServer(["--framing", "length"], program: "swoop-fixture")
        let bystander = try connect(server)
        let client = try connect(server)
        try client.sendRaw(frame("throw"))
        XCTAssertTrue(client.isClosedByPeer(timeout: 5))
        XCTAssertEqual(try ask(bystander, "ok"), "ok")
        let log = server.readLog().joined(separator: "\n")
        XCTAssertTrue(log.contains("onReceive handler threw"), log)
        XCTAssertEqual(server.processTree().count, 4, "the worker survives a throwing handler")
    }

    /// An async handler runs on its worker's loop thread: when called, after an await, and in
    /// the async functions it calls (in base mode too: `FixtureBaseModeTests`). The hot
    /// handlers run on their caller's executor; the loop is the task's executor preference.
    func testAsyncHandlersRunOnTheWorkersLoopThread() throws {
        let server = try startServer(["--framing", "length"], program: "swoop-fixture")
        let client = try connect(server)
        XCTAssertEqual(try ask(client, "threads"), "called=worker_loop resumed=worker_loop callee=worker_loop")
    }

    func testClientInfoExistsAndConnections() throws {
        let server = try startServer(["--framing", "length"], program: "swoop-fixture")
        let other = try connect(server)
        _ = try ask(other, "x")
        let client = try connect(server)
        let info = try ask(client, "info")
        XCTAssertTrue(info.hasPrefix("exists=true gone=false connections=2 remote=127.0.0.1 reactor="), info)
        XCTAssertTrue(info.hasSuffix("server_port=\(server.port)"), info)
    }

    func testCustomDispatchFunction() throws {
        try XCTSkipIf(serverMode == "base", "base mode: the worker that accepted a connection serves it; no dispatch")
        let server = try startServer(["--framing", "length", "--worker-num", "3", "--custom-dispatch"],
                                     program: "swoop-fixture")
        let client = try connect(server)
        // The fixture's dispatch function routes by the first body byte.
        for target in [2, 0, 1, 2, 1, 0] {
            XCTAssertEqual(try ask(client, "\(target)whoami-ignored"), "\(target)whoami-ignored")
        }
        for target in [0, 1, 2] {
            try client.sendRaw(frame("\(target)"))
            XCTAssertEqual(try readFrame(client), "\(target)")
        }
    }

    func testUnixSocketListener() throws {
        let path = NSTemporaryDirectory() + "swoop-fixture-\(getpid()).sock"
        defer { unlink(path) }
        let server = try startServer(["--framing", "length", "--unix-path", path], program: "swoop-fixture")
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        XCTAssertGreaterThanOrEqual(fd, 0)
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in path.utf8.enumerated() { raw[i] = byte }
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        XCTAssertEqual(connected, 0, "connect to \(path)")
        let request = frame("over unix")
        XCTAssertEqual(request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }, request.count)
        var reply = [UInt8](repeating: 0, count: 64)
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var got = 0
        while got < 4 + 9 {
            let n = reply.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + got, $0.count - got, 0) }
            guard n > 0 else { break }
            got += n
        }
        XCTAssertEqual(String(decoding: reply[4..<got], as: UTF8.self), "over unix")
        _ = server
    }

    func testClientThatDoesNotReadIsClosedAtTheOutputBound() throws {
        let server = try startServer(["--framing", "length", "--buffer-output-size", "262144"], program: "swoop-fixture")
        let bystander = try connect(server)
        let slow = try connect(server)
        var size: Int32 = 4096
        setsockopt(slow.fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        // Ask for 64 KiB replies and never read them: the master must close this client once
        // it holds more than bufferOutputSize for it, not buffer without end.
        // The master may close it before the last request is written; that is the bound working.
        var closedWhileSending = false
        for _ in 0..<64 where !closedWhileSending {
            do {
                try slow.sendRaw(frame("big 65536"))
            } catch let error as SocketError where error.kind == .closed {
                closedWhileSending = true
            }
        }
        XCTAssertTrue(closedWhileSending || slow.isClosedByPeer(timeout: 10) || eventuallyReset(slow))
        XCTAssertEqual(try ask(bystander, "fine"), "fine")
    }

    private func eventuallyReset(_ client: LineClient) -> Bool {
        (try? client.sendRaw(frame("x"), timeout: 2)) == nil
    }
}

extension FixtureTests {
    func testReloadAndShutdownFromAWorker() throws {
        let server = try startServer(["--framing", "length"], program: "swoop-fixture")
        let client = try connect(server)
        let before = try ask(client, "whoami")
        let oldPids = Set(server.processTree().map(\.pid)).subtracting([server.masterPid, server.managerPid])
        XCTAssertEqual(try ask(client, "reload"), "reloading")
        try eventually("every worker replaced", timeout: 10) {
            let now = Set(server.processTree().map(\.pid)).subtracting([server.masterPid, server.managerPid])
            return now.count == 2 && now.isDisjoint(with: oldPids)
        }
        // Base mode: the reload closed the old workers' connections; a new one is served.
        let next = serverMode == "base" ? try connect(server) : client
        XCTAssertNotEqual(try ask(next, "whoami"), before, "the connection is served by a new process")
        XCTAssertEqual(try ask(next, "shutdown"), "stopping")
        let status = server.waitForExit(timeout: 10)
        XCTAssertEqual(status, .exited(0))
    }
}
