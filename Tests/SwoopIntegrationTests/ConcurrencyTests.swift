import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Test 14: many concurrent clients each get exactly their own replies, in order.
class ConcurrencyTests: SwoopTestCase {
    /// 200 connections driven by one poll() loop, each doing 20 `echo <client>-<i>`
    /// round trips interleaved with all the others.
    func testTwoHundredConcurrentClients() throws {
        let server = try startServer(["--worker-num", "4", "--reactor-num", "2"])
        let clientCount = 200
        let requestsPerClient = 20
        let clients = try (0..<clientCount).map { _ in try connect(server) }
        var received = [Int](repeating: 0, count: clientCount)
        var done = [Bool](repeating: false, count: clientCount)
        var failures: [String] = []

        for (c, client) in clients.enumerated() { try client.send("echo client\(c)-0") }
        var pollSet = clients.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
        var remaining = clientCount
        let deadline = Deadline(30)

        while remaining > 0 && !deadline.hasPassed {
            let ready = poll(&pollSet, nfds_t(pollSet.count), deadline.remainingMillis)
            if ready < 0 && errno == EINTR { continue }
            XCTAssertGreaterThanOrEqual(ready, 0, "poll failed: \(errnoDescription(errno))")
            if ready <= 0 { break }
            for c in 0..<clientCount where pollSet[c].revents != 0 && !done[c] {
                let lines: [String]
                do {
                    lines = try clients[c].readAvailableLines()
                } catch {
                    failures.append("client \(c): \(error) after \(received[c]) replies")
                    done[c] = true
                    remaining -= 1
                    pollSet[c].fd = -1 // poll() ignores negative fds
                    continue
                }
                for line in lines where !done[c] {
                    let expected = "client\(c)-\(received[c])"
                    if line != expected {
                        failures.append("client \(c): got \"\(line)\", expected \"\(expected)\"")
                        done[c] = true
                    } else {
                        received[c] += 1
                        if received[c] == requestsPerClient {
                            done[c] = true
                        } else {
                            try clients[c].send("echo client\(c)-\(received[c])")
                        }
                    }
                    if done[c] {
                        remaining -= 1
                        pollSet[c].fd = -1
                    }
                }
            }
        }

        XCTAssertTrue(failures.isEmpty, "\(failures.count) client failures, first: \(failures.prefix(5))")
        let incomplete = (0..<clientCount).filter { received[$0] != requestsPerClient }
        XCTAssertTrue(incomplete.isEmpty,
                      "\(incomplete.count) clients incomplete, e.g. \(incomplete.prefix(5).map { "client \($0): \(received[$0])/\(requestsPerClient)" })")
        // No stray extra replies.
        for (c, client) in clients.enumerated().prefix(20) {
            XCTAssertEqual(try client.readAvailableLines(), [], "client \(c) got extra replies")
        }
        // Every client connection is counted.
        let monitor = try connect(server)
        XCTAssertEqual(try connectionCount(monitor), clientCount + 1)
    }
}
