import CoreMetrics
import Foundation
import Logging
import NIOConcurrencyHelpers
@testable import Swoop
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// The pure parts of operations: reload waiters, log file names and reopening, pid file
/// verdicts, /proc parsing, the daemon's error hand-over, metrics.
final class OperationsUnitTests: XCTestCase {
    // MARK: Reload waiters

    func testAReloadAskedWhileIdleEndsWithTheNextOutcome() {
        var tracker = ReloadTracker<String>()
        tracker.requested("a")
        XCTAssertEqual(tracker.expected, 1)
        XCTAssertEqual(tracker.finished(), ["a"])
        XCTAssertEqual(tracker.expected, 0)
        XCTAssertEqual(tracker.finished(), [], "an outcome nobody asked for (a signal to the manager) is ignored")
    }

    func testAReloadAskedDuringAnotherEndsWithTheQueuedOne() {
        var tracker = ReloadTracker<String>()
        tracker.requested("running")
        tracker.requested("queued")
        tracker.requested("joins the queued one")
        tracker.requested(nil)
        XCTAssertEqual(tracker.expected, 2)
        XCTAssertEqual(tracker.finished(), ["running"])
        XCTAssertEqual(tracker.finished(), ["queued", "joins the queued one"])
        XCTAssertEqual(tracker.expected, 0)
    }

    func testStoppingCancelsTheWaiters() {
        var tracker = ReloadTracker<String>()
        tracker.requested("a")
        tracker.requested("b")
        XCTAssertEqual(tracker.cancelAll(), ["a", "b"])
        XCTAssertEqual(tracker.expected, 0)
        XCTAssertEqual(tracker.finished(), [])
    }

    // MARK: Log files

    func testDailyRotationSuffixesTheLocalDate() {
        var parts = tm()
        parts.tm_year = 2026 - 1900
        parts.tm_mon = 10
        parts.tm_mday = 28
        parts.tm_hour = 23
        parts.tm_min = 59
        parts.tm_isdst = -1
        let lateEvening = mktime(&parts)
        XCTAssertEqual(LogRotation.daily.path(base: "/var/log/app.log", at: lateEvening), "/var/log/app.log.20261128")
        XCTAssertEqual(LogRotation.daily.path(base: "/var/log/app.log", at: lateEvening + 60), "/var/log/app.log.20261129")
        XCTAssertEqual(LogRotation.single.path(base: "/var/log/app.log", at: lateEvening), "/var/log/app.log")
    }

    func testReopenWritesToANewFileAtThePath() throws {
        let directory = try temporaryDirectory()
        let path = directory + "/server.log"
        let sink = try LogSink.shared(path: path, rotation: .single)
        sink.write("first\n")
        XCTAssertEqual(rename(path, path + ".1"), 0)
        sink.write("second, still to the moved file\n")
        XCTAssertTrue(LogSink.reopenAll().isEmpty)
        sink.write("third\n")
        XCTAssertEqual(try String(contentsOfFile: path + ".1", encoding: .utf8), "first\nsecond, still to the moved file\n")
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), "third\n")
        XCTAssertNotEqual(fcntl(sink.fd, F_GETFD) & FD_CLOEXEC, 0, "the reopened descriptor stays close-on-exec")
    }

    func testAnUnwritableLogFileIsATypedError() {
        XCTAssertThrowsError(try LogSink.shared(path: "/nonexistent-swoop-dir/x.log", rotation: .single)) { error in
            guard case let ServerError.logFileUnwritable(path, reason)? = error as? ServerError else {
                return XCTFail("\(error)")
            }
            XCTAssertEqual(path, "/nonexistent-swoop-dir/x.log")
            XCTAssertEqual(reason, "No such file or directory")
        }
    }

    func testUserLoggersShowTheirLabel() throws {
        let path = try temporaryDirectory() + "/labels.log"
        let sink = try LogSink.shared(path: path, rotation: .single)
        LineLogHandler(sink: sink, role: "worker 3").log(event: LogEvent(level: .info, message: "own", metadata: nil, source: "", file: "", function: "", line: 0))
        LineLogHandler(sink: sink, role: "worker 3", label: "app").log(event: LogEvent(level: .warning, message: "user", metadata: ["k": "v"], source: "", file: "", function: "", line: 0))
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
        XCTAssertTrue(lines[0].hasSuffix(" INFO [worker 3 pid=\(getpid())] own"), String(lines[0]))
        XCTAssertTrue(lines[1].hasSuffix(" WARNING [worker 3 pid=\(getpid())] app: user k=v"), String(lines[1]))
    }

    func testSettingsOfTheLog() {
        var settings = ServerSettings()
        settings.logRotation = .daily
        XCTAssertThrowsError(try settings.validate()) { error in
            XCTAssertEqual(error as? ServerError, .invalidSetting(name: "logRotation", reason: "needs a logFile"))
        }
        settings.logFile = ""
        XCTAssertThrowsError(try settings.validate())
        settings.logFile = "x.log"
        settings.pidFile = ""
        XCTAssertThrowsError(try settings.validate())
        settings.pidFile = "x.pid"
        XCTAssertNoThrow(try settings.validate())
    }

    // MARK: Pid file

    func testPidFileVerdicts() throws {
        let directory = try temporaryDirectory()
        let file = PidFile(path: directory + "/server.pid")
        XCTAssertEqual(file.holder(), .nobody)
        try "not a pid\n".write(toFile: file.path, atomically: true, encoding: .utf8)
        guard case .stale(nil, _) = file.holder() else { return XCTFail("\(file.holder())") }
        try file.write(getpid())
        XCTAssertEqual(file.read(), getpid())
        guard case .stale(getpid(), _) = file.holder() else { return XCTFail("our own pid: \(file.holder())") }
        try file.write(getppid())
        guard case let .stale(pid, reason) = file.holder() else { return XCTFail("\(file.holder())") }
        XCTAssertEqual(pid, getppid())
        XCTAssertTrue(reason.contains("not a Swoop master"), reason)
        file.remove(ifHolding: 1)
        XCTAssertTrue(FileManager.default.fileExists(atPath: file.path), "another pid's file is left alone")
        file.remove(ifHolding: getppid())
        XCTAssertEqual(file.holder(), .nobody)
    }

    func testMasterTitles() {
        XCTAssertTrue(PidFile.isMasterTitle("swoop-demo: master"))
        XCTAssertTrue(PidFile.isMasterTitle("my server: master"))
        XCTAssertFalse(PidFile.isMasterTitle("swoop-demo: manager"))
        XCTAssertFalse(PidFile.isMasterTitle("/usr/bin/python3 master.py"))
        XCTAssertFalse(PidFile.isMasterTitle(": master"))
    }

    // MARK: /proc

    func testStatLinesWithAwkwardCommandNames() throws {
        let line = Array("4242 (a (b) c) S 1 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654 0 0\n".utf8)
        let entry = try XCTUnwrap(ProcFS.parseStat(line))
        XCTAssertEqual(entry.pid, 4242)
        XCTAssertEqual(entry.parent, 1)
        XCTAssertEqual(entry.session, 4242)
        XCTAssertEqual(entry.startTime, 987654)
        XCTAssertEqual(entry.state, "S")
        XCTAssertNil(ProcFS.parseStat(Array("garbage".utf8)))
        XCTAssertEqual(ProcFS.parseTitle(Array("swoop-demo: worker 2\0\0\0".utf8)), "swoop-demo: worker 2")
        XCTAssertEqual(ProcFS.tree(root: getpid()).first?.pid, getpid())
    }

    // MARK: The daemon's error

    func testStartErrorsCrossThePipeAsTheyWere() throws {
        for error in [ServerError.bindFailed(host: "127.0.0.1", port: 80, reason: "Address already in use"),
                      .alreadyRunning(pid: 42, pidFile: "/run/x.pid"),
                      .logFileUnwritable(path: "/x", reason: "Permission denied"),
                      .invalidSetting(name: "workerNum", reason: "must be at least 1, got 0")] {
            let decoded = try JSONDecoder().decode(ServerError.self, from: JSONEncoder().encode(error))
            XCTAssertEqual(decoded, error)
        }
    }

    // MARK: Metrics

    func testMetricsFollowTheCountersWithoutDoubleCounting() throws {
        let factory = RecordingMetrics.shared
        let metrics = ServerMetrics()
        var stats = ServerStats(start_time: 1000, connection_num: 3, accept_count: 5, close_count: 2, abort_count: 0,
                                request_count: 10, dispatch_count: 10, total_recv_bytes: 0, total_send_bytes: 0,
                                worker_num: 2, task_worker_num: 0, reload_count: 0, tasking_num: 0, task_queue_num: 0,
                                idle_worker_num: 1, task_idle_worker_num: 0,
                                workers: [WorkerStats(worker_id: 0, pid: 100, type: "worker", request_count: 7, in_flight: 1),
                                          WorkerStats(worker_id: 1, pid: 101, type: "worker", request_count: 3, in_flight: 0)])
        metrics.record(stats)
        metrics.record(stats)
        stats.accept_count = 8
        stats.connection_num = 1
        stats.workers[0].request_count = 9
        stats.workers[1] = WorkerStats(worker_id: 1, pid: 202, type: "worker", request_count: 4, in_flight: 0)
        metrics.record(stats)
        XCTAssertEqual(factory.counter("swoop_accepted_connections_total"), 8)
        XCTAssertEqual(factory.counter("swoop_requests_total"), 10)
        XCTAssertEqual(factory.gauge("swoop_connections"), 1)
        XCTAssertEqual(factory.gauge("swoop_idle_workers"), 1)
        XCTAssertEqual(factory.counter("swoop_worker_requests_total", ["worker": "0"]), 9)
        XCTAssertEqual(factory.counter("swoop_worker_requests_total", ["worker": "1"]), 3 + 4, "a new process in the slot counts on")
    }

    // MARK: Helpers

    private func temporaryDirectory() throws -> String {
        let path = NSTemporaryDirectory() + "swoop-unit-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }
}

/// A metrics backend that remembers totals, bootstrapped once for this test process.
final class RecordingMetrics: MetricsFactory, @unchecked Sendable {
    static let shared: RecordingMetrics = {
        let factory = RecordingMetrics()
        MetricsSystem.bootstrap(factory)
        return factory
    }()

    private let values = NIOLockedValueBox<[String: Double]>([:])

    private static func key(_ label: String, _ dimensions: [(String, String)]) -> String {
        ([label] + dimensions.sorted { $0.0 < $1.0 }.map { "\($0.0)=\($0.1)" }).joined(separator: ",")
    }

    func counter(_ label: String, _ dimensions: [String: String] = [:]) -> Int {
        Int(values.withLockedValue { $0[Self.key(label, dimensions.map { ($0.key, $0.value) })] ?? 0 })
    }

    func gauge(_ label: String) -> Int { counter(label) }

    final class Handler: CounterHandler, RecorderHandler, FloatingPointCounterHandler, TimerHandler, @unchecked Sendable {
        let key: String
        let values: NIOLockedValueBox<[String: Double]>
        init(key: String, values: NIOLockedValueBox<[String: Double]>) { self.key = key; self.values = values }
        func increment(by amount: Int64) { values.withLockedValue { $0[key, default: 0] += Double(amount) } }
        func increment(by amount: Double) { values.withLockedValue { $0[key, default: 0] += amount } }
        func reset() { values.withLockedValue { $0[key] = 0 } }
        func record(_ value: Int64) { values.withLockedValue { $0[key] = Double(value) } }
        func record(_ value: Double) { values.withLockedValue { $0[key] = value } }
        func recordNanoseconds(_ duration: Int64) {}
    }

    func makeCounter(label: String, dimensions: [(String, String)]) -> CounterHandler {
        Handler(key: Self.key(label, dimensions), values: values)
    }
    func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> FloatingPointCounterHandler {
        Handler(key: Self.key(label, dimensions), values: values)
    }
    func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> RecorderHandler {
        Handler(key: Self.key(label, dimensions), values: values)
    }
    func makeTimer(label: String, dimensions: [(String, String)]) -> TimerHandler {
        Handler(key: Self.key(label, dimensions), values: values)
    }
    func destroyCounter(_ handler: CounterHandler) {}
    func destroyFloatingPointCounter(_ handler: FloatingPointCounterHandler) {}
    func destroyRecorder(_ handler: RecorderHandler) {}
    func destroyTimer(_ handler: TimerHandler) {}
}
