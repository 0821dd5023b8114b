#if canImport(Glibc)
import Glibc
#endif
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import XCTest

@testable import Swoop

final class EpollLoopTests: XCTestCase {
    private var loop: EpollLoop!

    override func setUpWithError() throws {
        loop = try EpollLoop.start(name: "epoll-test")
    }

    override func tearDownWithError() throws {
        try loop.syncShutdownGracefully()
        loop = nil
    }

    /// A connected pair of non-blocking stream sockets (the test closes both).
    private func socketPair() throws -> (CInt, CInt) {
        var pair: [CInt] = [0, 0]
        guard socketpair(AF_UNIX, CInt(SOCK_STREAM.rawValue) | CInt(SOCK_NONBLOCK.rawValue), 0, &pair) == 0 else {
            throw SystemError(call: "socketpair", errno: errno)
        }
        return (pair[0], pair[1])
    }

    func testTasksFromOtherThreadsRunOnTheLoopInOrder() throws {
        let seen = NIOLockedValueBox<[Int]>([])
        let done = loop.makePromise(of: Void.self)
        for index in 0..<1000 {
            loop.execute { [loop] in
                XCTAssertTrue(loop!.inEventLoop)
                seen.withLockedValue { $0.append(index) }
                if index == 999 { done.succeed() }
            }
        }
        try done.futureResult.wait()
        XCTAssertEqual(seen.withLockedValue { $0 }, Array(0..<1000))
        XCTAssertFalse(loop.inEventLoop)
    }

    /// Tasks the loop posts to itself, from a task or while it handles I/O, run in order
    /// without waking it through the eventfd: it is awake, and runs them after the turn's I/O.
    func testTasksPostedByTheLoopItselfRunWithoutAWakeUp() throws {
        let (ours, theirs) = try socketPair()
        defer { close(ours); close(theirs) }
        let loop = self.loop!
        let seen = NIOLockedValueBox<[Int]>([])
        // Not a promise: waiting on one from this thread posts a task to the loop.
        let done = DispatchSemaphore(value: 0)
        /// On each arrival, posts a chain of tasks, each posting the next.
        final class Poster: EpollWatcher, @unchecked Sendable {
            let fd: CInt
            let loop: EpollLoop
            let seen: NIOLockedValueBox<[Int]>
            let done: DispatchSemaphore
            init(fd: CInt, loop: EpollLoop, seen: NIOLockedValueBox<[Int]>, done: DispatchSemaphore) {
                self.fd = fd
                self.loop = loop
                self.seen = seen
                self.done = done
            }
            func ready(_ events: UInt32) {
                var byte: UInt8 = 0
                while read(fd, &byte, 1) > 0 {}
                post(0)
            }
            func post(_ index: Int) {
                loop.execute { [self] in
                    seen.withLockedValue { $0.append(index) }
                    if index == 99 { done.signal() } else { post(index + 1) }
                }
            }
        }
        let poster = Poster(fd: ours, loop: loop, seen: seen, done: done)
        try loop.submit { try loop.watch(ours, events: EpollLoop.readable, poster) }.wait()
        // Wait for the loop to fall asleep, so that the I/O event wakes it: the state in which
        // the inbox still says "asleep" while the loop handles the event.
        let asleepBy = Date().addingTimeInterval(10)
        while !loop.isAsleepForTesting {
            guard Date() < asleepBy else { return XCTFail("the loop never went to sleep") }
            sched_yield()
        }
        let before = loop.wakeUpsForTesting
        var byte: UInt8 = 1
        XCTAssertEqual(write(theirs, &byte, 1), 1)
        XCTAssertEqual(done.wait(timeout: .now() + 10), .success)
        XCTAssertEqual(seen.withLockedValue { $0 }, Array(0..<100))
        XCTAssertEqual(loop.wakeUpsForTesting, before, "the loop's own posts wrote the eventfd")
        try loop.submit { loop.unwatch(ours) }.wait()
    }

    func testTimersFireInDeadlineOrderAndCancelledOnesDoNot() throws {
        let order = NIOLockedValueBox<[String]>([])
        let late = loop.scheduleTask(in: .milliseconds(60)) { order.withLockedValue { $0.append("late") } }
        let cancelled = loop.scheduleTask(in: .milliseconds(30)) { order.withLockedValue { $0.append("cancelled") } }
        let early = loop.scheduleTask(in: .milliseconds(10)) { order.withLockedValue { $0.append("early") } }
        cancelled.cancel()
        try early.futureResult.wait()
        try late.futureResult.wait()
        XCTAssertThrowsError(try cancelled.futureResult.wait()) { error in
            XCTAssertEqual(error as? EventLoopError, .cancelled)
        }
        XCTAssertEqual(order.withLockedValue { $0 }, ["early", "late"])
        // Cancelling one that already ran leaves its result alone.
        early.cancel()
        XCTAssertNoThrow(try early.futureResult.wait())
    }

    func testManyCancelledTimersDoNotStayUntilTheirDeadline() throws {
        // Every request's timeout cancelled: a minute-long deadline each, none may pile up.
        for _ in 0..<10_000 {
            loop.scheduleTask(in: .seconds(60)) {}.cancel()
        }
        let soon = loop.scheduleTask(in: .milliseconds(5)) { 42 }
        XCTAssertEqual(try soon.futureResult.wait(), 42)
        let loop = self.loop!
        // At most the few cancelled since the last purge (64), not the 10,000.
        XCTAssertLessThanOrEqual(try loop.submit { loop.pendingTimersForTesting }.wait(), 65)
    }

    func testAWatchedPipeIsReportedReadable() throws {
        let (ours, theirs) = try socketPair()
        defer { close(ours); close(theirs) }
        let loop = self.loop!
        final class Reader: EpollWatcher, @unchecked Sendable {
            let fd: CInt
            let firstHalf: EventLoopPromise<Void>
            let whole: EventLoopPromise<[UInt8]>
            var bytes: [UInt8] = []
            init(fd: CInt, loop: EventLoop) {
                self.fd = fd
                firstHalf = loop.makePromise()
                whole = loop.makePromise()
            }
            func ready(_ events: UInt32) {
                var chunk = [UInt8](repeating: 0, count: 16)
                while true {   // edge-triggered: until EAGAIN
                    let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                    if n <= 0 { break }
                    bytes += chunk[0..<n]
                }
                if bytes.count >= 20 { firstHalf.succeed() }
                if bytes.count >= 40 { whole.succeed(bytes) }
            }
        }
        let reader = Reader(fd: ours, loop: loop)
        try loop.submit { try loop.watch(ours, events: EpollLoop.readable, reader) }.wait()
        let message = [UInt8]((0..<40).map { UInt8($0) })
        XCTAssertEqual(message.withUnsafeBytes { write(theirs, $0.baseAddress, 20) }, 20)
        // Two arrivals, the second after the first was read to EAGAIN: it must be reported again.
        try reader.firstHalf.futureResult.wait()
        XCTAssertEqual(message.withUnsafeBytes { write(theirs, $0.baseAddress! + 20, 20) }, 20)
        XCTAssertEqual(try reader.whole.futureResult.wait(), message)
        try loop.submit { loop.unwatch(ours) }.wait()
    }

    func testAsyncWorkPreferringTheLoopResumesOnIt() async throws {
        let executor = LoopTaskExecutor(loop)
        let loop = self.loop!
        let onLoop = try await Task(executorPreference: executor) { () -> [Bool] in
            var seen = [loop.inEventLoop]
            await Task.yield()
            seen.append(loop.inEventLoop)
            try await Task.sleep(for: .milliseconds(5))
            seen.append(loop.inEventLoop)
            return seen
        }.value
        XCTAssertEqual(onLoop, [true, true, true])
    }

    func testShutdownRunsWhatWasPostedFirstAndFailsTimersNotDue() throws {
        let ran = NIOLockedValueBox(false)
        loop.execute { ran.withLockedValue { $0 = true } }
        let notDue = loop.scheduleTask(in: .seconds(60)) {}
        // Observed from a callback registered before the shutdown: a finished loop runs
        // nothing more, so waiting on its future afterwards would wait forever.
        let failure = NIOLockedValueBox<Error?>(nil)
        notDue.futureResult.whenFailure { error in failure.withLockedValue { $0 = error } }
        try loop.syncShutdownGracefully()
        XCTAssertTrue(ran.withLockedValue { $0 })
        XCTAssertEqual(failure.withLockedValue { $0 } as? EventLoopError, .shutdown)
        loop = try EpollLoop.start(name: "epoll-test")   // for tearDown
    }
}
