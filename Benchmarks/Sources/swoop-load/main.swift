// swoop-load: the benchmark's load generator.
//
// Opens N connections to a line server (swoop-demo, nio-baseline), keeps `--pipeline`
// requests in flight on each, checks every reply byte for byte, and times every request.
// After the warm-up it counts for `--duration` seconds, stops by itself and prints one
// machine-readable line:
//
//     msgs_per_s=<n> p50_us=<n> p99_us=<n> max_us=<n> errors=<n> requests=<n> load_cpu_pct=<n>
//
// load_cpu_pct is the CPU this process used over the run, in % of one core: near 100 × the
// thread count, the load generator itself was the limit and the figures say little about the
// server.
import ArgumentParser

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension LoadMode: ExpressibleByArgument {}

/// The command line.
struct Load: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "swoop-load",
        abstract: "Drives a line server (swoop-demo, nio-baseline) and checks every reply.",
        discussion: """
            Prints one line: msgs_per_s=<n> p50_us=<n> p99_us=<n> max_us=<n> errors=<n> requests=<n> \
            load_cpu_pct=<n>. Exits 0; 1 when any reply was wrong, late or lost; 2 when it \
            could not connect.
            """)

    @Option(help: "The server's address.") var host = "127.0.0.1"
    @Option(help: "The server's TCP port.") var port: Int
    @Option(help: "Client connections.") var connections = 64
    @Option(help: "Seconds to measure, after the warm-up.") var duration: Double = 10
    @Option(help: "Seconds of load before measuring.") var warmup: Double = 2
    @Option(help: "Requests in flight per connection.") var pipeline = 1
    @Option(help: "echo or taskwait.") var mode = LoadMode.echo
    @Option(help: "Load threads, each with its own epoll loop and share of the connections.") var threads = 1
    @Option(help: "Seconds a request may go unanswered before it is an error.") var timeout: Double = 5

    func validate() throws {
        guard (1...65535).contains(port) else { throw ValidationError("--port must be 1...65535") }
        guard connections >= 1 else { throw ValidationError("--connections must be at least 1") }
        guard duration > 0 else { throw ValidationError("--duration must be more than 0") }
        guard warmup >= 0 else { throw ValidationError("--warmup must not be negative") }
        guard pipeline >= 1 else { throw ValidationError("--pipeline must be at least 1") }
        guard (1...connections).contains(threads) else {
            throw ValidationError("--threads must be 1...connections")
        }
        guard timeout > 0 else { throw ValidationError("--timeout must be more than 0") }
    }

    func run() throws {
        // Open every connection before the clock starts, so the warm-up is load, not set-up.
        var shares = [[LoadConnection]](repeating: [], count: threads)
        for id in 0..<connections {
            let fd: CInt
            do {
                fd = try connectSocket(host: host, port: port)
            } catch {
                printError("swoop-load: cannot connect to \(host):\(port): \(error)")
                for share in shares { for connection in share { close(connection.fd) } }
                throw ExitCode(2)
            }
            shares[id % threads].append(LoadConnection(fd: fd, id: id, depth: pipeline))
        }

        let started = monotonicNanoseconds()
        let measureStart = started + Int64(warmup * 1e9)
        let plan = LoadPlan(
            mode: mode, depth: pipeline,
            measureStart: measureStart,
            measureEnd: measureStart + Int64(duration * 1e9),
            timeout: Int64(timeout * 1e9))
        let workers = shares.map { LoadWorker(plan: plan, connections: $0) }
        let cpuBefore = processCPUSeconds()
        runOnThreads(workers)
        let wall = Double(monotonicNanoseconds() - started) / 1e9
        let cpuShare = (processCPUSeconds() - cpuBefore) / wall * 100

        var total = LoadReport()
        for worker in workers { total.merge(worker.report) }
        let p50 = (total.latencies.value(atQuantile: 0.50) ?? 0) / 1000
        let p99 = (total.latencies.value(atQuantile: 0.99) ?? 0) / 1000
        let slowest = (total.latencies.value(atQuantile: 1) ?? 0) / 1000
        let rate = Double(total.requests) / duration
        print(
            "msgs_per_s=\(fixed(rate, 0)) p50_us=\(fixed(p50, 1)) p99_us=\(fixed(p99, 1)) max_us=\(fixed(slowest, 1))"
                + " errors=\(total.errors) requests=\(total.requests) load_cpu_pct=\(fixed(cpuShare, 0))")
        printError(
            "swoop-load: \(mode.rawValue) connections=\(connections) pipeline=\(pipeline) threads=\(threads) "
                + "wrong_replies=\(total.wrongReplies) closed=\(total.closed) timeouts=\(total.timeouts)")
        if total.errors > 0 { throw ExitCode(1) }
    }
}

/// A socket error, with the call that failed.
struct SocketError: Error, CustomStringConvertible {
    var call: String
    var code: CInt
    var description: String { "\(call): \(String(cString: strerror(code)))" }
}

/// Connects a TCP socket (blocking, which is quick on loopback), then makes it non-blocking
/// for the epoll loop.
func connectSocket(host: String, port: Int) throws -> CInt {
    var hints = addrinfo()
    hints.ai_socktype = CInt(SOCK_STREAM.rawValue)
    hints.ai_flags = AI_NUMERICSERV
    var found: UnsafeMutablePointer<addrinfo>?
    let status = getaddrinfo(host, String(port), &hints, &found)
    guard status == 0, let address = found else {
        throw SocketError(call: "getaddrinfo: \(String(cString: gai_strerror(status)))", code: 0)
    }
    defer { freeaddrinfo(found) }

    let fd = socket(address.pointee.ai_family, address.pointee.ai_socktype | CInt(SOCK_CLOEXEC.rawValue), address.pointee.ai_protocol)
    guard fd >= 0 else { throw SocketError(call: "socket", code: errno) }
    // Request/response traffic: Nagle would hold each small request back.
    var on: CInt = 1
    setsockopt(fd, CInt(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<CInt>.size))
    while connect(fd, address.pointee.ai_addr, address.pointee.ai_addrlen) != 0 {
        if errno == EINTR { continue }
        let code = errno
        close(fd)
        throw SocketError(call: "connect", code: code)
    }
    _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    return fd
}

/// Runs each worker's loop on a thread of its own (the first on this one) and returns when
/// all have finished.
func runOnThreads(_ workers: [LoadWorker]) {
    var threads: [pthread_t] = []
    for worker in workers.dropFirst() {
        var thread = pthread_t()
        // The worker goes to the thread as a retained pointer; the thread releases it.
        let context = Unmanaged.passRetained(worker).toOpaque()
        let result = pthread_create(&thread, nil, { context in
            Unmanaged<LoadWorker>.fromOpaque(context!).takeRetainedValue().run()
            return nil
        }, context)
        precondition(result == 0, "pthread_create failed: \(result)")
        threads.append(thread)
    }
    workers.first?.run()
    // Joining orders each thread's writes to its report before main reads them.
    for thread in threads { pthread_join(thread, nil) }
}

/// `value` with `digits` decimals (0 or more), without Foundation's formatter.
func fixed(_ value: Double, _ digits: Int) -> String {
    var scale = 1
    for _ in 0..<digits { scale *= 10 }
    let scaled = Int((value * Double(scale)).rounded())
    guard digits > 0 else { return String(scaled) }
    var fraction = String(scaled % scale)
    while fraction.count < digits { fraction = "0" + fraction }
    return "\(scaled / scale).\(fraction)"
}

/// CPU seconds (user and system) this process has used.
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
