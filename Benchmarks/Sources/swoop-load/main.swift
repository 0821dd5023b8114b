// swoop-load: the benchmark's load generator.
//
// Opens N connections to a line server, keeps `--pipeline` requests in flight on each, checks
// every reply byte for byte, and times every request. After the warm-up it counts for
// `--duration` seconds and prints one machine-readable line:
//
//     msgs_per_s=<n> p50_us=<n> p99_us=<n> errors=<n> requests=<n> load_cpu_pct=<n>
//
// It runs on SwiftNIO event loops (one per `--threads`), so a single core drives all the
// connections without a thread per connection, and it does no String work per request:
// requests and expected replies are written as bytes.
import ArgumentParser
import LineBench
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// What the requests ask for, and so how their replies are checked.
enum LoadMode: String, ExpressibleByArgument, CaseIterable, Sendable {
    /// `echo c<conn>-<seq>` → exactly `c<conn>-<seq>`.
    case echo
    /// `taskwait c<conn>-<seq>` → `taskwait-done … C<CONN>-<SEQ>`: client → worker → task worker
    /// → worker → client.
    case taskwait
}

/// When the connections count, and when they stop. The same for all of them, fixed once every
/// connection is open.
struct LoadPlan: Sendable {
    /// Replies that arrive from here on are counted.
    var measureStart: NIODeadline
    /// Replies that arrive from here on are not; each connection stops here.
    var measureEnd: NIODeadline
    /// A request unanswered for this long is an error.
    var timeout: TimeAmount
}

/// The user event that sets a connection going.
struct StartLoad: Sendable {
    var plan: LoadPlan
}

/// What one connection counted.
struct ConnectionReport: Sendable {
    /// Right replies that arrived in the measured window.
    var requests = 0
    /// Replies that were not the one expected (including any reply nobody asked for).
    var wrongReplies = 0
    /// The server closed the connection, or it failed, before the end.
    var closed = 0
    /// Requests left unanswered longer than the timeout.
    var timeouts = 0
    /// The latency of each request counted in `requests`.
    var latencies = LatencyHistogram()

    var errors: Int { wrongReplies + closed + timeouts }

    mutating func merge(_ other: ConnectionReport) {
        requests += other.requests
        wrongReplies += other.wrongReplies
        closed += other.closed
        timeouts += other.timeouts
        latencies.merge(other.latencies)
    }
}

/// One client connection: sends requests, checks and times the replies.
///
/// Replies come back in request order (both servers answer a connection's lines one after
/// another), so the oldest request in flight is the one each reply answers.
final class LoadConnection: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum State { case waiting, running, finished }

    /// A request on the wire.
    private struct InFlight {
        var sequence: Int
        var sentAt: NIODeadline
    }

    private let id: Int
    private let mode: LoadMode
    private let depth: Int
    private let report: EventLoopPromise<ConnectionReport>

    private var state = State.waiting
    private var plan: LoadPlan?
    private var counts = ConnectionReport()
    private var nextSequence = 0
    private var inFlight = CircularBuffer<InFlight>(initialCapacity: 16)
    private var watchdog: Scheduled<Void>?
    private var stopTimer: Scheduled<Void>?

    /// Requests made while handling one read batch, sent with one write and one flush at its
    /// end (the way a server answers a batch). Reused: once the previous write has gone out,
    /// `clear()` finds the storage unshared and keeps it.
    private var outbound: ByteBuffer
    /// Scratch space for the reply expected next; never leaves this handler.
    private var expected: ByteBuffer
    /// The fixed parts of requests and replies.
    private let requestPrefix: ByteBuffer
    private let replyPrefix: ByteBuffer

    init(id: Int, mode: LoadMode, depth: Int, allocator: ByteBufferAllocator, report: EventLoopPromise<ConnectionReport>) {
        self.id = id
        self.mode = mode
        self.depth = depth
        self.report = report
        outbound = allocator.buffer(capacity: 64 * depth)
        expected = allocator.buffer(capacity: 64)
        switch mode {
        case .echo:
            requestPrefix = allocator.buffer(string: "echo ")
            replyPrefix = allocator.buffer(string: "")
        case .taskwait:
            requestPrefix = allocator.buffer(string: "taskwait ")
            replyPrefix = allocator.buffer(string: "taskwait-done ")
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard let start = event as? StartLoad else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        guard state == .waiting else { return }
        state = .running
        plan = start.plan
        for _ in 0..<depth { enqueueRequest() }
        sendEnqueued(context: context)

        let loop = context.eventLoop.assumeIsolated()
        stopTimer = loop.scheduleTask(deadline: start.plan.measureEnd) { self.finish(context: context) }
        scheduleWatchdog(context: context)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard state == .running, let plan else { return }
        let now = NIODeadline.now()
        let line = unwrapInboundIn(data)
        guard let request = inFlight.popFirst() else {
            counts.wrongReplies += 1
            return
        }
        if !isReply(line, to: request.sequence) {
            counts.wrongReplies += 1
        } else if now >= plan.measureStart && now < plan.measureEnd {
            counts.requests += 1
            counts.latencies.record(nanoseconds: (now - request.sentAt).nanoseconds)
        }
        // Past the end no new request goes out; the stop timer is about to close this.
        if now < plan.measureEnd { enqueueRequest() }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        sendEnqueued(context: context)
        context.fireChannelReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        // Closed by the server (or the kernel) before the end: the requests on it are lost.
        if state != .finished { counts.closed += 1 }
        finish(context: context)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if state != .finished { counts.closed += 1 }
        finish(context: context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        // However the pipeline goes away, the report must be delivered, or main waits forever.
        finish(context: context)
    }

    /// Appends the next request to `outbound` and notes when it left.
    private func enqueueRequest() {
        let sequence = nextSequence
        nextSequence += 1
        outbound.writeImmutableBuffer(requestPrefix)
        writeUniqueText(of: sequence, into: &outbound, uppercase: false)
        outbound.writeInteger(UInt8(ascii: "\n"))
        // Stamped before the write reaches the socket (at the end of this read batch): the
        // few microseconds between are the same for every server measured.
        inFlight.append(InFlight(sequence: sequence, sentAt: .now()))
    }

    private func sendEnqueued(context: ChannelHandlerContext) {
        guard outbound.readableBytes > 0, state == .running else { return }
        context.writeAndFlush(wrapOutboundOut(outbound), promise: nil)
        outbound.clear()
    }

    /// The text that makes a request unique: `c<connection>-<sequence>` (uppercased in the
    /// replies of task workers).
    private func writeUniqueText(of sequence: Int, into buffer: inout ByteBuffer, uppercase: Bool) {
        buffer.writeInteger(uppercase ? UInt8(ascii: "C") : UInt8(ascii: "c"))
        buffer.writeDecimal(id)
        buffer.writeInteger(UInt8(ascii: "-"))
        buffer.writeDecimal(sequence)
    }

    /// Whether `line` (with its "\n") is the reply to request `sequence`, byte for byte.
    private func isReply(_ line: ByteBuffer, to sequence: Int) -> Bool {
        expected.clear()
        switch mode {
        case .echo:
            // Exactly the text that was sent.
            writeUniqueText(of: sequence, into: &expected, uppercase: false)
            expected.writeInteger(UInt8(ascii: "\n"))
            return line == expected
        case .taskwait:
            // "taskwait-done by=<id> pid=<pid> C<conn>-<seq>\n": the fields between name the
            // task worker, which any may be, so only the fixed start and the unique end count.
            expected.writeInteger(UInt8(ascii: " "))
            writeUniqueText(of: sequence, into: &expected, uppercase: true)
            expected.writeInteger(UInt8(ascii: "\n"))
            // The prefix's last space may be the suffix's first one, but no less than that.
            return line.readableBytes >= replyPrefix.readableBytes + expected.readableBytes - 1
                && line.hasPrefix(replyPrefix) && line.hasSuffix(expected)
        }
    }

    /// Looks for a request that has waited too long, often enough to notice within a fraction
    /// of the timeout. One stuck request means the stream is out of step: count it and close.
    private func scheduleWatchdog(context: ChannelHandlerContext) {
        guard let plan else { return }
        let period = min(plan.timeout, .milliseconds(250))
        watchdog = context.eventLoop.assumeIsolated().scheduleTask(in: period) {
            guard self.state == .running else { return }
            if let oldest = self.inFlight.first, NIODeadline.now() - oldest.sentAt > plan.timeout {
                self.counts.timeouts += 1
                self.finish(context: context)
                return
            }
            self.scheduleWatchdog(context: context)
        }
    }

    /// Stops this connection and hands over its report, once.
    private func finish(context: ChannelHandlerContext) {
        guard state != .finished else { return }
        let wasRunning = state == .running
        state = .finished
        watchdog?.cancel()
        stopTimer?.cancel()
        if wasRunning, let plan {
            // Requests still in flight at the end are not errors unless already overdue.
            let now = NIODeadline.now()
            counts.timeouts += inFlight.lazy.filter { now - $0.sentAt > plan.timeout }.count
        }
        inFlight.removeAll()
        report.succeed(counts)
        context.close(promise: nil)
    }
}

/// The command line.
struct Load: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "swoop-load",
        abstract: "Drives a line server (swoop-demo, nio-baseline) and checks every reply.",
        discussion: """
            Prints one line: msgs_per_s=<n> p50_us=<n> p99_us=<n> errors=<n> requests=<n> \
            load_cpu_pct=<n>. Exits 0, or 1 when any reply was wrong, late or lost.
            """)

    @Option(help: "The server's address.") var host = "127.0.0.1"
    @Option(help: "The server's TCP port.") var port: Int
    @Option(help: "Client connections.") var connections = 64
    @Option(help: "Seconds to measure, after the warm-up.") var duration: Double = 10
    @Option(help: "Seconds of load before measuring.") var warmup: Double = 2
    @Option(help: "Requests in flight per connection.") var pipeline = 1
    @Option(help: "echo or taskwait.") var mode = LoadMode.echo
    @Option(help: "Event loop threads.") var threads = 1
    @Option(help: "Seconds a request may go unanswered before it is an error.") var timeout: Double = 5

    func validate() throws {
        guard (1...65535).contains(port) else { throw ValidationError("--port must be 1...65535") }
        guard connections >= 1 else { throw ValidationError("--connections must be at least 1") }
        guard duration > 0 else { throw ValidationError("--duration must be more than 0") }
        guard warmup >= 0 else { throw ValidationError("--warmup must not be negative") }
        guard pipeline >= 1 else { throw ValidationError("--pipeline must be at least 1") }
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
        guard timeout > 0 else { throw ValidationError("--timeout must be more than 0") }
    }

    func run() throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        defer { try? group.syncShutdownGracefully() }

        // Open every connection before the clock starts, so the warm-up is load, not set-up.
        var opened: [EventLoopFuture<Channel>] = []
        var reports: [EventLoopFuture<ConnectionReport>] = []
        for id in 0..<connections {
            // Each connection lives on one loop; its report is completed there.
            let loop = group.next()
            let report = loop.makePromise(of: ConnectionReport.self)
            reports.append(report.futureResult)
            let (mode, depth) = (mode, pipeline)
            let channel = ClientBootstrap(group: loop)
                .channelOption(.tcpOption(.tcp_nodelay), value: 1)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandlers(
                            ByteToMessageHandler(LineSplitter()),
                            LoadConnection(id: id, mode: mode, depth: depth, allocator: channel.allocator, report: report)
                        )
                    }
                }
                .connect(host: host, port: port)
            // A connection that never opened reports nothing; fail its report so none leaks.
            channel.whenFailure { report.fail($0) }
            opened.append(channel)
        }
        let channels: [Channel]
        do {
            channels = try EventLoopFuture.whenAllSucceed(opened, on: group.any()).wait()
        } catch {
            printError("swoop-load: cannot connect to \(host):\(port): \(error)")
            throw ExitCode(2)
        }

        let cpuBefore = processCPUSeconds()
        let start = NIODeadline.now()
        let measureStart = start + .nanoseconds(Int64(warmup * 1e9))
        let plan = LoadPlan(
            measureStart: measureStart,
            measureEnd: measureStart + .nanoseconds(Int64(duration * 1e9)),
            timeout: .nanoseconds(Int64(timeout * 1e9)))
        for channel in channels {
            channel.pipeline.fireUserInboundEventTriggered(StartLoad(plan: plan))
        }

        // Every connection reports by itself at the end of the window (or sooner, if it broke).
        var total = ConnectionReport()
        for report in try EventLoopFuture.whenAllSucceed(reports, on: group.any()).wait() {
            total.merge(report)
        }
        let wall = Double((NIODeadline.now() - start).nanoseconds) / 1e9
        let cpuShare = (processCPUSeconds() - cpuBefore) / wall * 100

        let p50 = (total.latencies.value(atQuantile: 0.50) ?? 0) / 1000
        let p99 = (total.latencies.value(atQuantile: 0.99) ?? 0) / 1000
        let rate = Double(total.requests) / duration
        print(
            "msgs_per_s=\(fixed(rate, 0)) p50_us=\(fixed(p50, 1)) p99_us=\(fixed(p99, 1))"
                + " errors=\(total.errors) requests=\(total.requests) load_cpu_pct=\(fixed(cpuShare, 0))")
        printError(
            "swoop-load: \(mode.rawValue) connections=\(connections) pipeline=\(pipeline) "
                + "wrong_replies=\(total.wrongReplies) closed=\(total.closed) timeouts=\(total.timeouts)")
        if total.errors > 0 { throw ExitCode(1) }
    }
}

/// `value` with `digits` decimals (0 or more), without Foundation's formatter.
func fixed(_ value: Double, _ digits: Int) -> String {
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let scaled = Int((value * scale).rounded())
    guard digits > 0 else { return String(scaled) }
    let whole = scaled / Int(scale)
    var fraction = String(scaled % Int(scale))
    while fraction.count < digits { fraction = "0" + fraction }
    return "\(whole).\(fraction)"
}

/// CPU seconds (user and system) this process has used: whether the load generator itself
/// was the bottleneck shows as a share near 100 % of its core.
func processCPUSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    func seconds(_ time: timeval) -> Double { Double(time.tv_sec) + Double(time.tv_usec) / 1e6 }
    return seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// Writes a line to standard error, where the human-readable notes go.
func printError(_ line: String) {
    var text = line + "\n"
    text.withUTF8 { bytes in _ = write(STDERR_FILENO, bytes.baseAddress, bytes.count) }
}

Load.main()
