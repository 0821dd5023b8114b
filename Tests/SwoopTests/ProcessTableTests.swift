import NIOCore
import XCTest
@testable import Swoop

/// The manager's decisions, with a fake clock and no processes.
final class ProcessTableTests: XCTestCase {
    private let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000_000)

    func testSlotsAreWorkersThenTaskWorkers() {
        let table = ProcessTable(workerNum: 3, taskWorkerNum: 2)
        XCTAssertEqual(table.slots.map(\.isTaskWorker), [false, false, false, true, true])
    }

    func testACrashIsReplacedInTheSameSlotAtOnce() {
        var table = ProcessTable(workerNum: 2, taskWorkerNum: 0)
        let g = table.nextGeneration(1)
        table.started(1, pid: 100, generation: g, at: t0)
        let outcome = table.exited(pid: 100, at: t0 + .seconds(30))
        XCTAssertEqual(outcome?.slot, 1)
        XCTAssertEqual(outcome?.wasCurrent, true)
        XCTAssertNil(outcome?.backoff)
        XCTAssertNil(table.exited(pid: 100, at: t0 + .seconds(31)), "a pid is reaped once")
    }

    func testACrashLoopBacksOffExponentially() {
        var table = ProcessTable(workerNum: 1, taskWorkerNum: 0)
        var now = t0
        var delays: [TimeAmount?] = []
        for pid in Int32(1)...Int32(5) {
            table.started(0, pid: pid, generation: table.nextGeneration(0), at: now)
            now = now + .milliseconds(10)
            delays.append(table.exited(pid: pid, at: now)?.backoff)
        }
        XCTAssertEqual(delays, [nil, .milliseconds(100), .milliseconds(200), .milliseconds(400), .milliseconds(800)])
        // A worker that lived long enough resets the count.
        table.started(0, pid: 9, generation: table.nextGeneration(0), at: now)
        XCTAssertNil(table.exited(pid: 9, at: now + .seconds(5))?.backoff)
    }

    func testReplacementStopsTheOldGenerationOnlyWhenTheNewOneIsActive() {
        var table = ProcessTable(workerNum: 1, taskWorkerNum: 0)
        table.started(0, pid: 10, generation: table.nextGeneration(0), at: t0)
        table.retireCurrent(0)
        XCTAssertTrue(table.isReplacing(0))
        XCTAssertNil(table.nextDeadline, "the old process serves on, without a deadline, until its successor takes over")
        let g2 = table.nextGeneration(0)
        table.started(0, pid: 11, generation: g2, at: t0)
        XCTAssertEqual(Set(table.livePids), [10, 11])
        XCTAssertEqual(table.stopOlder(0, than: g2 - 1, deadline: t0 + .seconds(4)), [], "an older generation stops nobody")
        XCTAssertEqual(table.stopOlder(0, than: g2, deadline: t0 + .seconds(4)), [10])
        XCTAssertEqual(table.stopOlder(0, than: g2, deadline: t0 + .seconds(4)), [], "each old process is signalled once")
        XCTAssertFalse(table.isReplacing(0))
        let outcome = table.exited(pid: 10, at: t0 + .seconds(1))
        XCTAssertEqual(outcome?.wasCurrent, false)
        XCTAssertEqual(table.livePids, [11])
    }

    func testRollBackGivesTheSlotBackToTheOldProcess() {
        var table = ProcessTable(workerNum: 2, taskWorkerNum: 0)
        let g1 = table.nextGeneration(0)
        table.started(0, pid: 10, generation: g1, at: t0)
        table.retireCurrent(0)
        table.started(0, pid: 11, generation: table.nextGeneration(0), at: t0 + .seconds(1))
        XCTAssertEqual(table.rollBack(0), 11, "the failed successor is to be stopped")
        XCTAssertEqual(table.slots[0].current, 10)
        XCTAssertEqual(table.slots[0].generation, g1)
        XCTAssertFalse(table.isReplacing(0))
        XCTAssertNil(table.exited(pid: 11, at: t0 + .seconds(2)), "the stopped successor belongs to no slot any more")
        XCTAssertNil(table.rollBack(1), "nothing to roll back in a slot that is not being replaced")
    }

    func testARetiredWorkerPastItsDeadlineIsReportedOnce() {
        var table = ProcessTable(workerNum: 1, taskWorkerNum: 0)
        table.started(0, pid: 10, generation: table.nextGeneration(0), at: t0)
        table.retireCurrent(0)
        let g2 = table.nextGeneration(0)
        table.started(0, pid: 11, generation: g2, at: t0)
        _ = table.stopOlder(0, than: g2, deadline: t0 + .seconds(3))
        XCTAssertEqual(table.nextDeadline, t0 + .seconds(3))
        XCTAssertEqual(table.overdueRetired(now: t0 + .seconds(2)), [])
        XCTAssertEqual(table.overdueRetired(now: t0 + .seconds(4)), [10])
        XCTAssertEqual(table.overdueRetired(now: t0 + .seconds(5)), [])
    }

    func testScheduledRespawnsComeDueAndCanBeCancelled() {
        var table = ProcessTable(workerNum: 2, taskWorkerNum: 0)
        table.scheduleRespawn(0, at: t0 + .milliseconds(100))
        table.scheduleRespawn(1, at: t0 + .milliseconds(300))
        XCTAssertEqual(table.dueRespawns(now: t0 + .milliseconds(150)), [0])
        XCTAssertEqual(table.dueRespawns(now: t0 + .milliseconds(150)), [])
        table.cancelRespawns()
        XCTAssertEqual(table.dueRespawns(now: t0 + .seconds(1)), [])
    }
}
