// One event loop thread: its own epoll instance, its own SO_REUSEPORT listener, its
// connections, and the task executor its async handlers run on.
import CEpoll
import CNIOLLHTTP
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// What the server speaks.
enum ServerProtocol: String, Sendable {
    case line
    case http
}

/// An async handler for one line in the connection's input bytes `start..<end`.
typealias AsyncLineHandler = @Sendable (Connection, Int, Int) async -> Void
/// An async handler for one HTTP request.
typealias AsyncHTTPHandler = @Sendable (Connection, HTTPRequestFacts) async -> Void

/// Set (before the stop eventfd is written) when the server is to stop.
let stopRequested = Atomic<Bool>(false)

/// epoll tokens that are not connections. A connection's token has its slot in the low 32
/// bits, and slots never come near 2^32 - 3.
private enum Token {
    static let listener: UInt64 = 0xFFFF_FFFF
    static let stop: UInt64 = 0xFFFF_FFFE
    static let jobs: UInt64 = 0xFFFF_FFFD
    static let slotMask: UInt64 = 0xFFFF_FFFF
}

/// Where a connection's output is after a flush.
private enum FlushResult {
    /// All sent.
    case done
    /// The socket is full: the rest waits for the next EPOLLOUT edge.
    case pending
    /// The connection is broken.
    case failed
}

/// One thread's loop (c-ceiling's design, see its main.c):
///
/// - connections registered once, edge-triggered, for EPOLLIN | EPOLLOUT | EPOLLRDHUP: no
///   epoll_ctl per request. A short read has emptied the socket, so a request costs one recv
///   (not a second one to see EAGAIN); all the replies to one read batch go out in one send;
///   a partial send keeps the rest for the next EPOLLOUT edge; while more than
///   `Limits.outputHigh` bytes wait, the connection stops reading.
/// - the listener level-triggered, up to `Limits.acceptBatch` accepts per wake-up.
/// - the loop's task executor drained once per turn, after the turn's events.
///
/// Touched by its own thread alone once `run()` starts (`@unchecked Sendable`: it is created
/// by the main thread and handed to its thread once).
final class EventLoop: @unchecked Sendable {
    let serverProtocol: ServerProtocol
    let executor = LoopExecutor()
    private let epollFD: CInt
    private let listenFD: CInt
    /// Line or HTTP handlers when `--async`; nil: the handlers are called directly.
    private let asyncLine: AsyncLineHandler?
    private let asyncHTTP: AsyncHTTPHandler?
    /// The llhttp callbacks (HTTP only).
    private let httpSettings: UnsafeMutablePointer<llhttp_settings_t>?
    /// HTTP: the Date header and the ready-made `GET /` response.
    let responses = HTTPResponses()

    /// Open connections by slot; a closed connection's slot is reused. Only ever read, or
    /// assigned whole or by one element (see `acceptConnections`), so that every access to it
    /// is instantaneous and goes unchecked (see `IOBuffer`).
    private var connections = [Connection?](repeating: nil, count: 64)
    private var freeSlots = Array((0..<64).reversed())
    private var generation: UInt32 = 0

    init(
        serverProtocol: ServerProtocol, listenFD: CInt, stopFD: CInt,
        asyncLine: AsyncLineHandler?, asyncHTTP: AsyncHTTPHandler?
    ) {
        self.serverProtocol = serverProtocol
        self.listenFD = listenFD
        self.asyncLine = asyncLine
        self.asyncHTTP = asyncHTTP
        httpSettings = serverProtocol == .http ? HTTPProtocol.makeSettings() : nil
        epollFD = epoll_create1(CInt(EPOLL_CLOEXEC))
        guard epollFD >= 0 else { fail("epoll_create1") }
        // Both level-triggered. The stop eventfd is shared by every loop and never read, so
        // each of them sees it; the jobs eventfd is this loop's, read when it fires.
        register(listenFD, events: EPOLLIN.rawValue, token: Token.listener)
        register(stopFD, events: EPOLLIN.rawValue, token: Token.stop)
        register(executor.wakeFD, events: EPOLLIN.rawValue, token: Token.jobs)
        responses.refresh(now: time(nil))
    }

    deinit { close(epollFD) }

    private func register(_ fd: CInt, events: UInt32, token: UInt64) {
        var event = epoll_event()
        event.events = events
        event.data.u64 = token
        guard epoll_ctl(epollFD, EPOLL_CTL_ADD, fd, &event) == 0 else { fail("epoll_ctl") }
    }

    /// Serves until the stop eventfd fires; then closes every connection.
    func run() {
        executor.bindToCurrentThread()
        let events = UnsafeMutablePointer<epoll_event>.allocate(capacity: Limits.eventBatch)
        defer { events.deallocate() }
        var stopping = false
        while !stopping {
            let count = epoll_wait(epollFD, events, CInt(Limits.eventBatch), -1)
            if count < 0 {
                if errno == EINTR { continue }
                fail("epoll_wait")
            }
            if serverProtocol == .http { responses.refresh(now: time(nil)) }
            for index in 0..<Int(count) {
                let token = events[index].data.u64
                let flags = events[index].events
                switch token {
                case Token.listener:
                    acceptConnections()
                case Token.stop:
                    stopping = true
                case Token.jobs:
                    executor.acknowledgeWake()
                default:
                    let slot = Int(truncatingIfNeeded: token & Token.slotMask)
                    // A stale event (its connection closed earlier in this batch) is dropped.
                    guard let connection = connections[slot], connection.token == token else { continue }
                    handle(connection, events: flags)
                }
            }
            executor.runQueuedJobs()
            if stopRequested.load(ordering: .relaxed) { stopping = true }
        }
        for case let connection? in connections { closeConnection(connection) }
    }

    // MARK: Connections

    private func acceptConnections() {
        for _ in 0..<Limits.acceptBatch {
            let fd = accept4(listenFD, nil, nil, CInt(SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue))
            if fd < 0 {
                if errno == EINTR || errno == ECONNABORTED { continue }
                if errno != EAGAIN && errno != EWOULDBLOCK { printError("swift-epoll: accept4: errno \(errno)") }
                return
            }
            // Request/response traffic: Nagle would hold each small reply back.
            var one: CInt = 1
            _ = setsockopt(fd, CInt(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<CInt>.size))
            if freeSlots.isEmpty {
                // Twice the slots. Grown in a copy and assigned back, not appended in place:
                // an `append` on the property would be one long access to it.
                let count = connections.count
                var grown = connections
                grown.append(contentsOf: repeatElement(nil, count: count))
                connections = grown
                freeSlots.append(contentsOf: (count..<2 * count).reversed())
            }
            let slot = freeSlots.removeLast()
            generation &+= 1
            let token = UInt64(generation) << 32 | UInt64(slot)
            var event = epoll_event()
            event.events = EPOLLIN.rawValue | EPOLLOUT.rawValue | EPOLLRDHUP.rawValue | EPOLLET.rawValue
            event.data.u64 = token
            guard epoll_ctl(epollFD, EPOLL_CTL_ADD, fd, &event) == 0 else {
                printError("swift-epoll: epoll_ctl: errno \(errno)")
                close(fd)
                freeSlots.append(slot)
                continue
            }
            connections[slot] = Connection(fd: fd, token: token, loop: self, httpSettings: httpSettings)
        }
    }

    private func closeConnection(_ connection: Connection) {
        let slot = Int(truncatingIfNeeded: connection.token & Token.slotMask)
        connections[slot] = nil
        freeSlots.append(slot)
        close(connection.fd)  // also takes it out of the epoll set
    }

    /// One epoll event for a connection.
    private func handle(_ connection: Connection, events: UInt32) {
        let hangUp = EPOLLRDHUP.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue
        if events & hangUp != 0 { connection.peerClosed = true }
        if events & EPOLLOUT.rawValue != 0 && !connection.output.isEmpty {
            let flushed = flush(connection)
            if flushed == .failed || (flushed == .done && connection.closing) {
                closeConnection(connection)
                return
            }
            if connection.paused && connection.output.count <= Limits.outputHigh {
                // The edge that brought the unread input is spent: read now.
                connection.paused = false
                if !readAndAnswer(connection) { closeConnection(connection) }
                return
            }
        }
        if events & (EPOLLIN.rawValue | hangUp) != 0 {
            if !readAndAnswer(connection) { closeConnection(connection) }
        }
    }

    /// Reads what the socket holds, answers every complete request in it, sends the replies
    /// in one send. Returns false when the connection is to be closed now.
    private func readAndAnswer(_ connection: Connection) -> Bool {
        var want = Limits.inputInitial / 2  // room to read into, at least
        reading: while !connection.closing && !connection.paused {
            if connection.input.room < want { connection.input.reserve(want) }
            let room = connection.input.room
            let got = recv(connection.fd, connection.input.base + connection.input.end, room, 0)
            if got > 0 {
                connection.input.end += got
                // A read that filled the room: a big pipelined batch; read the rest in fewer,
                // bigger reads.
                if got == room && connection.input.capacity < Limits.inputMax { want = connection.input.capacity }
                switch serverProtocol {
                case .line:
                    guard answerLines(connection) else { return false }
                case .http:
                    HTTPProtocol.process(connection)
                }
                if connection.input.isEmpty { connection.input.clear() }
                if connection.output.count > Limits.outputHigh {
                    // Send what can go now; stop reading if too much is still left.
                    if flush(connection) == .failed { return false }
                    if connection.output.count > Limits.outputHigh { connection.paused = true }
                }
                // A short read emptied the socket: the next data raises a new edge. After
                // EPOLLRDHUP, read on to see the EOF, which raises no further edge.
                if got < room && !connection.peerClosed { break reading }
            } else if got == 0 {
                // The peer is gone: send what was answered if it fits, and close (as NIO does).
                _ = flush(connection)
                return false
            } else {
                switch errno {
                case EINTR: continue reading
                case EAGAIN, EWOULDBLOCK: break reading
                default: return false
                }
            }
        }
        switch flush(connection) {
        case .failed: return false
        case .done: return !connection.closing
        case .pending: return true
        }
    }

    /// Sends what waits in the output.
    private func flush(_ connection: Connection) -> FlushResult {
        while !connection.output.isEmpty {
            let sent = send(
                connection.fd, connection.output.base + connection.output.start, connection.output.count,
                CInt(MSG_NOSIGNAL))
            if sent > 0 {
                connection.output.start += sent
            } else if sent < 0 && errno == EINTR {
                continue
            } else if sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                return .pending
            } else {
                return .failed
            }
        }
        connection.output.clear()
        return .done
    }

    // MARK: Requests

    /// Answers every complete line in the input; keeps the incomplete one. Returns false to
    /// close the connection (a line longer than `Limits.maxLine`).
    private func answerLines(_ connection: Connection) -> Bool {
        let base = connection.input.base
        let end = connection.input.end
        var start = connection.input.start
        var from = start + connection.scanned
        while from < end, let newline = memchr(base + from, CInt(UInt8(ascii: "\n")), end - from) {
            let at = UnsafeMutableRawPointer(base).distance(to: newline)
            if let handler = asyncLine {
                startAsync(handler, connection, start, at)
            } else {
                LineProtocol.answer(connection, lineFrom: start, to: at)
            }
            start = at + 1
            from = start
        }
        connection.input.start = start
        connection.scanned = end - start
        return connection.scanned <= Limits.maxLine
    }

    /// Called by the parser's on_message_complete: answers `request`.
    @inline(__always)
    func handle(_ request: HTTPRequestFacts, on connection: Connection) {
        if let handler = asyncHTTP {
            startAsync(handler, connection, request)
        } else {
            HTTPProtocol.respond(connection, to: request)
        }
    }

    /// The async path: the handler runs in a task started with `Task.immediate` on this
    /// thread, with this loop's executor as its preference. A handler that does not suspend
    /// (all of them here) completes before `Task.immediate` returns; one that suspended would
    /// resume on this loop's executor, but its reply could then come after later requests'
    /// and read input bytes that have moved, which this model does not handle: it stops.
    private func startAsync(_ handler: @escaping AsyncLineHandler, _ connection: Connection, _ start: Int, _ end: Int) {
        connection.handlersRunning += 1
        Task.immediate(executorPreference: executor) {
            await handler(connection, start, end)
            connection.handlersRunning -= 1
        }
        precondition(connection.handlersRunning == 0, "swift-epoll: an async handler suspended")
    }

    private func startAsync(_ handler: @escaping AsyncHTTPHandler, _ connection: Connection, _ request: HTTPRequestFacts) {
        connection.handlersRunning += 1
        Task.immediate(executorPreference: executor) {
            await handler(connection, request)
            connection.handlersRunning -= 1
        }
        precondition(connection.handlersRunning == 0, "swift-epoll: an async handler suspended")
    }
}

/// Reports a failed system call and exits 1.
func fail(_ what: String) -> Never {
    printError("swift-epoll: \(what): \(String(cString: strerror(errno)))")
    exit(1)
}

/// Writes a line to standard error.
func printError(_ line: String) {
    var text = line + "\n"
    text.withUTF8 { bytes in _ = write(STDERR_FILENO, bytes.baseAddress, bytes.count) }
}
