// One load thread: an epoll loop over its share of the connections.
//
// Raw epoll rather than SwiftNIO: the servers measured do their I/O through NIO, and a client
// on the same stack would spend about as much CPU per request as they do, so on a core of its
// own it could set the pace instead of the server. Here a request costs one read, one write
// and a few byte comparisons, with no allocation, reference counting or String on the way.
import CEpoll

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Nanoseconds on the monotonic clock (a vDSO call, not a syscall).
@inline(__always)
func monotonicNanoseconds() -> Int64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
}

/// What the requests ask for, and so how their replies are checked.
enum LoadMode: String, CaseIterable, Sendable {
    /// `echo c<conn>-<seq>` → exactly `c<conn>-<seq>`.
    case echo
    /// `taskwait c<conn>-<seq>` → `taskwait-done … C<CONN>-<SEQ>`: client → worker → task
    /// worker → worker → client.
    case taskwait
}

/// When the connections count and when they stop: the same for every thread, fixed once every
/// connection is open. Times are on ``monotonicNanoseconds()``.
struct LoadPlan: Sendable {
    var mode: LoadMode
    /// Requests in flight per connection.
    var depth: Int
    /// Replies that arrive from here on are counted.
    var measureStart: Int64
    /// Replies that arrive from here on are not; the threads stop here.
    var measureEnd: Int64
    /// A request unanswered for this long is an error.
    var timeout: Int64
}

/// What a thread counted.
struct LoadReport: Sendable {
    /// Right replies that arrived in the measured window.
    var requests = 0
    /// Replies that were not the one expected, including any reply nobody asked for and a line
    /// too long to be any reply.
    var wrongReplies = 0
    /// Connections the server closed, or that failed, before the end.
    var closed = 0
    /// Requests left unanswered longer than the timeout.
    var timeouts = 0
    /// The latency of each request counted in `requests`.
    var latencies = LatencyHistogram()

    var errors: Int { wrongReplies + closed + timeouts }

    mutating func merge(_ other: LoadReport) {
        requests += other.requests
        wrongReplies += other.wrongReplies
        closed += other.closed
        timeouts += other.timeouts
        latencies.merge(other.latencies)
    }
}

/// A fixed block of bytes with a fill level: the buffers of a connection. Allocated once, so
/// the request path never allocates.
struct ByteBlock {
    let base: UnsafeMutablePointer<UInt8>
    let capacity: Int
    /// Bytes before this are already consumed (sent, or parsed).
    var start = 0
    /// Bytes before this are filled.
    var end = 0

    init(capacity: Int) {
        self.capacity = capacity
        base = .allocate(capacity: capacity)
    }

    func deallocate() { base.deallocate() }

    var count: Int { end - start }
    var isEmpty: Bool { start == end }

    /// Moves the unconsumed bytes to the front (when there is anything before them), so that
    /// all the free space is after them. Usually there is nothing left to move.
    mutating func compact() {
        if start == end {
            start = 0
            end = 0
        } else if start > 0 {
            memmove(base, base + start, end - start)
            end -= start
            start = 0
        }
    }

    /// Makes sure `room` bytes fit after the unconsumed ones, moving those only if needed.
    mutating func makeRoom(_ room: Int) {
        if start == end || capacity - end < room { compact() }
        precondition(capacity - end >= room, "a ByteBlock is too small for what it must hold")
    }

    mutating func append(_ byte: UInt8) {
        base[end] = byte
        end += 1
    }

    mutating func append(_ bytes: [UInt8]) {
        bytes.withUnsafeBufferPointer { source in
            (base + end).update(from: source.baseAddress!, count: source.count)
        }
        end += bytes.count
    }

    /// Appends `value` (not negative) as ASCII decimal digits.
    mutating func appendDecimal(_ value: Int) {
        var digits = 1
        var rest = value / 10
        while rest > 0 {
            digits += 1
            rest /= 10
        }
        rest = value
        for position in stride(from: end + digits - 1, through: end, by: -1) {
            base[position] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: rest % 10)
            rest /= 10
        }
        end += digits
    }

    /// Appends the text that makes a request unique: `c<connection>-<sequence>`, or
    /// `C<connection>-<sequence>` as a task worker sends it back uppercased.
    mutating func appendUniqueText(connection: Int, sequence: Int, uppercase: Bool) {
        append(uppercase ? UInt8(ascii: "C") : UInt8(ascii: "c"))
        appendDecimal(connection)
        append(UInt8(ascii: "-"))
        appendDecimal(sequence)
    }
}

/// One client connection, driven by one ``LoadWorker``.
final class LoadConnection {
    /// A request on the wire.
    struct InFlight {
        var sequence: Int
        var sentAt: Int64
    }

    let fd: CInt
    let id: Int
    /// Its index in its worker's connections: what epoll hands back to name it.
    var slot = 0
    var open = true
    /// Whether epoll also watches for writability: only while a write is incomplete.
    var watchesWritable = false
    var nextSequence = 0

    /// The requests in flight, oldest first: a ring of `depth` slots, as a connection never
    /// has more out than that.
    private let ring: UnsafeMutablePointer<InFlight>
    private let ringCapacity: Int
    private var ringHead = 0
    private(set) var inFlightCount = 0

    /// Bytes read and not yet cut into lines.
    var input = ByteBlock(capacity: 16 * 1024)
    /// Requests written into the block and not yet taken by the kernel.
    var output: ByteBlock

    /// The longest request line: "taskwait c<19 digits>-<19 digits>\n".
    static let maximumRequestLength = 64

    init(fd: CInt, id: Int, depth: Int) {
        self.fd = fd
        self.id = id
        ringCapacity = depth
        ring = .allocate(capacity: depth)
        output = ByteBlock(capacity: 2 * depth * Self.maximumRequestLength)
    }

    deinit {
        ring.deallocate()
        input.deallocate()
        output.deallocate()
    }

    var oldestInFlight: InFlight? { inFlightCount > 0 ? ring[ringHead] : nil }

    func pushInFlight(_ request: InFlight) {
        precondition(inFlightCount < ringCapacity, "more requests in flight than the pipeline depth")
        (ring + (ringHead + inFlightCount) % ringCapacity).initialize(to: request)
        inFlightCount += 1
    }

    func popInFlight() -> InFlight? {
        guard inFlightCount > 0 else { return nil }
        let request = ring[ringHead]
        ringHead = (ringHead + 1) % ringCapacity
        inFlightCount -= 1
        return request
    }

    func dropInFlight() {
        ringHead = 0
        inFlightCount = 0
    }
}

/// Drives its connections until the plan's end and counts what it saw.
///
/// Used by exactly one thread (the one that calls ``run()``); its report is read after that
/// thread has been joined.
final class LoadWorker {
    private let plan: LoadPlan
    private let connections: [LoadConnection]
    private(set) var report = LoadReport()

    private let requestPrefix: [UInt8]
    private let replyPrefix: [UInt8]
    /// The reply expected next, or its fixed end.
    private var expected = ByteBlock(capacity: LoadConnection.maximumRequestLength)
    private var epollFD: CInt = -1

    init(plan: LoadPlan, connections: [LoadConnection]) {
        self.plan = plan
        self.connections = connections
        switch plan.mode {
        case .echo:
            requestPrefix = Array("echo ".utf8)
            replyPrefix = []
        case .taskwait:
            requestPrefix = Array("taskwait ".utf8)
            replyPrefix = Array("taskwait-done ".utf8)
        }
    }

    deinit { expected.deallocate() }

    /// Sends, reads and checks until the plan's end; then closes every connection.
    func run() {
        epollFD = epoll_create1(CInt(EPOLL_CLOEXEC))
        precondition(epollFD >= 0, "epoll_create1 failed: errno \(errno)")
        for (slot, connection) in connections.enumerated() {
            connection.slot = slot
            watch(connection, writable: false, operation: EPOLL_CTL_ADD)
        }

        let started = monotonicNanoseconds()
        for connection in connections {
            for _ in 0..<plan.depth { enqueueRequest(on: connection, at: started) }
            flush(connection)
        }

        let eventCapacity = max(16, connections.count)
        let events = UnsafeMutablePointer<epoll_event>.allocate(capacity: eventCapacity)
        defer { events.deallocate() }
        // Timeouts are looked for a few times a second: a stuck request is rare, and scanning
        // every connection after every batch would cost more than the requests.
        let checkEvery: Int64 = min(plan.timeout, 100_000_000)
        var nextCheck = started + checkEvery

        while true {
            var now = monotonicNanoseconds()
            if now >= plan.measureEnd { break }
            // Wake at least every 100 ms, and in time for the end.
            let wait = CInt(min(100, (plan.measureEnd - now) / 1_000_000 + 1))
            let ready = epoll_wait(epollFD, events, CInt(eventCapacity), wait)
            if ready < 0 {
                if errno == EINTR { continue }
                preconditionFailure("epoll_wait failed: errno \(errno)")
            }
            for slot in 0..<Int(ready) {
                let event = events[slot]
                let connection = connections[Int(event.data.u64)]
                guard connection.open else { continue }
                // Hang-ups and errors also show as readable: read() then says what happened.
                if event.events & (EPOLLIN.rawValue | EPOLLERR.rawValue | EPOLLHUP.rawValue) != 0 {
                    readReplies(from: connection)
                }
                if connection.open && event.events & EPOLLOUT.rawValue != 0 {
                    flush(connection)
                }
            }
            now = monotonicNanoseconds()
            if now >= nextCheck {
                nextCheck = now + checkEvery
                for connection in connections where connection.open {
                    if let oldest = connection.oldestInFlight, now - oldest.sentAt > plan.timeout {
                        // The stream is out of step from here on: count once, and stop it.
                        report.timeouts += 1
                        shut(connection)
                    }
                }
            }
        }

        // Requests still in flight at the end are not errors, unless already overdue.
        let end = monotonicNanoseconds()
        for connection in connections where connection.open {
            if let oldest = connection.oldestInFlight, end - oldest.sentAt > plan.timeout {
                report.timeouts += 1
            }
            shut(connection)
        }
        close(epollFD)
    }

    private func watch(_ connection: LoadConnection, writable: Bool, operation: CInt) {
        var event = epoll_event()
        event.events = EPOLLIN.rawValue | (writable ? EPOLLOUT.rawValue : 0)
        event.data.u64 = UInt64(connection.slot)
        let result = epoll_ctl(epollFD, operation, connection.fd, &event)
        precondition(result == 0, "epoll_ctl failed: errno \(errno)")
        connection.watchesWritable = writable
    }

    /// Reads what the socket holds, checks every complete line, and sends the next requests.
    private func readReplies(from connection: LoadConnection) {
        while true {
            connection.input.compact()
            let room = connection.input.capacity - connection.input.end
            if room == 0 {
                // 16 KiB without a "\n" is no reply to anything sent here.
                report.wrongReplies += 1
                fail(connection)
                return
            }
            let count = read(connection.fd, connection.input.base + connection.input.end, room)
            if count > 0 {
                connection.input.end += count
                consumeLines(of: connection, at: monotonicNanoseconds())
                // A short read emptied the socket; epoll (level-triggered) reports anything
                // that arrives later, so no read is spent on EAGAIN.
                if count < room { break }
            } else if count == 0 {
                fail(connection)
                return
            } else {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK { break }
                fail(connection)
                return
            }
        }
        flush(connection)
    }

    /// Checks each complete line in the input against the oldest request in flight.
    private func consumeLines(of connection: LoadConnection, at now: Int64) {
        let base = connection.input.base
        var start = connection.input.start
        let end = connection.input.end
        while start < end, let found = memchr(base + start, CInt(UInt8(ascii: "\n")), end - start) {
            let newline = found.assumingMemoryBound(to: UInt8.self) - base
            check(line: base + start, length: newline + 1 - start, on: connection, at: now)
            start = newline + 1
        }
        connection.input.start = start
    }

    private func check(line: UnsafePointer<UInt8>, length: Int, on connection: LoadConnection, at now: Int64) {
        guard let request = connection.popInFlight() else {
            report.wrongReplies += 1
            return
        }
        if isReply(line, length: length, to: request.sequence, of: connection) {
            if now >= plan.measureStart && now < plan.measureEnd {
                report.requests += 1
                report.latencies.record(nanoseconds: now - request.sentAt)
            }
        } else {
            report.wrongReplies += 1
        }
        // The reply came at `now`, and the next request is written right after; past the end
        // none goes out.
        if now < plan.measureEnd { enqueueRequest(on: connection, at: now) }
    }

    /// Whether the line (with its "\n") is the reply to request `sequence`, byte for byte.
    private func isReply(_ line: UnsafePointer<UInt8>, length: Int, to sequence: Int, of connection: LoadConnection) -> Bool {
        expected.start = 0
        expected.end = 0
        switch plan.mode {
        case .echo:
            // Exactly the text that was sent.
            expected.appendUniqueText(connection: connection.id, sequence: sequence, uppercase: false)
            expected.append(UInt8(ascii: "\n"))
            return length == expected.count && memcmp(line, expected.base, length) == 0
        case .taskwait:
            // "taskwait-done by=<id> pid=<pid> C<conn>-<seq>\n": the fields between name the
            // task worker, which may be any, so only the fixed start and the unique end count.
            expected.append(UInt8(ascii: " "))
            expected.appendUniqueText(connection: connection.id, sequence: sequence, uppercase: true)
            expected.append(UInt8(ascii: "\n"))
            let prefixLength = replyPrefix.count
            // The prefix's last space may be the suffix's first one, but no shorter than that.
            guard length >= prefixLength + expected.count - 1 else { return false }
            let prefixMatches = replyPrefix.withUnsafeBufferPointer { memcmp(line, $0.baseAddress!, prefixLength) == 0 }
            return prefixMatches && memcmp(line + length - expected.count, expected.base, expected.count) == 0
        }
    }

    /// Adds the next request to the connection's output and notes when it leaves.
    private func enqueueRequest(on connection: LoadConnection, at now: Int64) {
        let sequence = connection.nextSequence
        connection.nextSequence += 1
        connection.output.makeRoom(LoadConnection.maximumRequestLength)
        connection.output.append(requestPrefix)
        connection.output.appendUniqueText(connection: connection.id, sequence: sequence, uppercase: false)
        connection.output.append(UInt8(ascii: "\n"))
        connection.pushInFlight(.init(sequence: sequence, sentAt: now))
    }

    /// Writes the pending requests, all of them in one write as a rule.
    private func flush(_ connection: LoadConnection) {
        while !connection.output.isEmpty {
            // MSG_NOSIGNAL: a server that closed the connection makes this fail with EPIPE
            // instead of killing the load generator with SIGPIPE.
            let written = send(
                connection.fd, connection.output.base + connection.output.start, connection.output.count,
                CInt(MSG_NOSIGNAL))
            if written >= 0 {
                connection.output.start += written
            } else if errno == EINTR {
                continue
            } else if errno == EAGAIN || errno == EWOULDBLOCK {
                // The socket buffer is full: finish when epoll says it has room.
                if !connection.watchesWritable { watch(connection, writable: true, operation: EPOLL_CTL_MOD) }
                return
            } else {
                fail(connection)
                return
            }
        }
        connection.output.start = 0
        connection.output.end = 0
        if connection.watchesWritable { watch(connection, writable: false, operation: EPOLL_CTL_MOD) }
    }

    /// The server closed the connection or it broke before the end.
    private func fail(_ connection: LoadConnection) {
        report.closed += 1
        shut(connection)
    }

    private func shut(_ connection: LoadConnection) {
        guard connection.open else { return }
        connection.open = false
        connection.dropInFlight()
        // Closing the descriptor also takes it out of the epoll set.
        close(connection.fd)
    }
}
