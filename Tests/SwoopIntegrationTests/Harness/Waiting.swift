import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Seconds on the monotonic clock. Used for every deadline in the harness so that
/// wall-clock adjustments can never stretch or shorten a timeout.
func monotonicNow() -> TimeInterval {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return TimeInterval(ts.tv_sec) + TimeInterval(ts.tv_nsec) / 1_000_000_000
}

/// A point in time on the monotonic clock, `seconds` from its creation.
///
/// Every blocking step of the harness takes one, so a hung server fails the test
/// instead of hanging the suite.
struct Deadline: Sendable {
    /// The monotonic time at which the deadline passes.
    let end: TimeInterval

    /// A deadline `seconds` from now.
    init(_ seconds: TimeInterval) {
        end = monotonicNow() + seconds
    }

    /// Seconds left, never negative.
    var remaining: TimeInterval { max(0, end - monotonicNow()) }

    /// Whether the deadline has passed.
    var hasPassed: Bool { monotonicNow() >= end }

    /// Milliseconds left, rounded up, as `poll(2)` wants them (0 once passed).
    var remainingMillis: Int32 {
        let ms = (remaining * 1000).rounded(.up)
        return Int32(min(ms, Double(Int32.max)))
    }
}

/// Blocks the calling thread for `seconds`.
///
/// Only for polling loops and for the rare places where there is no observable event
/// to wait for (each such call site says why).
func pause(_ seconds: TimeInterval) {
    guard seconds > 0 else { return }
    var request = timespec(tv_sec: Int(seconds), tv_nsec: Int((seconds - seconds.rounded(.down)) * 1_000_000_000))
    var remaining = timespec()
    while nanosleep(&request, &remaining) == -1 && errno == EINTR { request = remaining }
}

/// Polls `condition` every `poll` seconds until it returns true or `timeout` seconds passed.
///
/// - Returns: true if the condition became true in time (it is always evaluated at least
///   once, and once more after the deadline), false otherwise.
@discardableResult
func waitUntil(
    timeout: TimeInterval,
    poll: TimeInterval = 0.05,
    _ condition: () throws -> Bool
) rethrows -> Bool {
    let deadline = Deadline(timeout)
    while true {
        if try condition() { return true }
        if deadline.hasPassed { return false }
        pause(min(poll, deadline.remaining))
    }
}

/// Checks that `condition` stays true for `duration` seconds, polling every `poll` seconds.
///
/// This is the one legitimate "sleep" of the suite: asserting that something does NOT
/// happen (e.g. worker pids do not change after SIGUSR2) can only be done by watching
/// for a while.
///
/// - Returns: false as soon as the condition is false once.
func holds(
    for duration: TimeInterval,
    poll: TimeInterval = 0.05,
    _ condition: () throws -> Bool
) rethrows -> Bool {
    let deadline = Deadline(duration)
    while true {
        if !(try condition()) { return false }
        if deadline.hasPassed { return true }
        pause(min(poll, deadline.remaining))
    }
}

/// The error thrown by the harness: a plain message meant to be read in a test log.
struct HarnessError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A printable description of an `errno` value, e.g. "ECONNREFUSED (111: Connection refused)".
func errnoDescription(_ code: Int32) -> String {
    "\(code): \(String(cString: strerror(code)))"
}
