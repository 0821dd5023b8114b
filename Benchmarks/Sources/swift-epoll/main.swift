// swift-epoll: c-ceiling's design (Sources/c-ceiling/main.c) in Swift.
//
// The measurement behind one decision: what an event loop of Swoop's own on raw epoll, in
// Swift, would cost per request next to SwiftNIO's channel pipeline (nio-baseline) and next to
// the same loop in C (c-ceiling). It speaks what they speak, byte for byte:
//
//   --protocol line   `echo TEXT\n` → `TEXT\n`, `ping\n` → `pong\n`, any other line →
//                     `error unknown command\n` (a "\r" before the "\n" is not content); a
//                     connection that sends 64 KiB without a "\n" is closed.
//   --protocol http   HTTP/1.1 keep-alive, pipelined requests answered in order, parsed by
//                     llhttp as SwiftNIO vendors it (CNIOLLHTTP, NIOHTTP1's parser) through its
//                     callbacks; `GET /` (and `HEAD /`) → the same 130 bytes as nio-baseline and
//                     c-ceiling, anything else → 404 `not found`; no keep-alive →
//                     `Connection: close` and close; a malformed request → NIOHTTP1's 400, close.
//
// `--async`: every request's handler is an async closure, started with
// `Task.immediate(executorPreference:)` on the loop's own task executor, as Swoop runs user
// handlers; the handlers never suspend, so each completes inline. Without it the handler is a
// plain function call.
//
// It prints `swift-epoll ready protocol=<line|http> port=<p>` once every listener is listening
// (and, with --async, every loop's executor has run a job sent from the main thread), and
// exits 0 on SIGTERM or SIGINT.
import ArgumentParser
import BenchSupport
import CEpoll
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension ServerProtocol: ExpressibleByArgument {}

struct SwiftEpoll: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "swift-epoll",
        abstract: "c-ceiling's raw epoll server in Swift: line (echo, ping) or HTTP (GET / → Hello, World!).")

    @Option(help: "The IPv4 address to listen on.") var host = "127.0.0.1"
    @Option(help: "The TCP port (0: any free port).") var port = 0
    @Option(help: "Event loop threads, each with its own epoll and listener.") var threads = 2
    @Option(name: .customLong("protocol"), help: "line (echo, ping) or http (GET / → Hello, World!).")
    var serverProtocol = ServerProtocol.line
    @Flag(name: .customLong("async"), help: "Run each request's handler as an async closure (Task.immediate).")
    var asyncHandlers = false

    func validate() throws {
        guard (1...256).contains(threads) else { throw ValidationError("--threads must be 1...256") }
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0...65535") }
        var address = in_addr()
        guard inet_pton(AF_INET, host, &address) == 1 else {
            throw ValidationError("--host must be an IPv4 address, not '\(host)'")
        }
    }

    func run() throws {
        // SIGTERM and SIGINT go to sigwait below, in this thread only: blocked before any
        // loop thread starts (threads inherit the mask). SIGPIPE: send uses MSG_NOSIGNAL.
        var stopSignals = sigset_t()
        sigemptyset(&stopSignals)
        sigaddset(&stopSignals, SIGTERM)
        sigaddset(&stopSignals, SIGINT)
        pthread_sigmask(SIG_BLOCK, &stopSignals, nil)
        signal(SIGPIPE, SIG_IGN)

        let stopFD = eventfd(0, CInt(EFD_NONBLOCK) | CInt(EFD_CLOEXEC))
        guard stopFD >= 0 else { fail("eventfd") }

        // Every listener before any thread runs and before the ready line: the first takes
        // the port (any free one for --port 0), the others join it through SO_REUSEPORT.
        var boundPort = port
        var listeners: [CInt] = []
        var loops: [EventLoop] = []
        for _ in 0..<threads {
            let (fd, bound) = listen(host: host, port: boundPort)
            boundPort = bound
            listeners.append(fd)
            loops.append(
                EventLoop(
                    serverProtocol: serverProtocol, listenFD: fd, stopFD: stopFD,
                    asyncLine: asyncHandlers ? { @Sendable connection, start, end in
                        LineProtocol.answer(connection, lineFrom: start, to: end)
                    } : nil,
                    asyncHTTP: asyncHandlers ? { @Sendable connection, request in
                        HTTPProtocol.respond(connection, to: request)
                    } : nil))
        }
        let threadIDs = loops.map(startThread)

        if asyncHandlers {
            // Each loop's executor, from another thread: the job must wake the loop through
            // its eventfd and run on it.
            for loop in loops {
                Task(executorPreference: loop.executor) { executorsChecked.add(1, ordering: .relaxed) }
            }
            var waited = 0
            while executorsChecked.load(ordering: .relaxed) < loops.count {
                guard waited < 5000 else {
                    printError("swift-epoll: a loop's executor did not run its job within 5 s")
                    Glibc.exit(1)
                }
                usleep(1000)
                waited += 1
            }
        }

        announce("swift-epoll ready protocol=\(serverProtocol.rawValue) port=\(boundPort)")

        var signalNumber: CInt = 0
        while sigwait(&stopSignals, &signalNumber) != 0 {}
        // Wake every loop: the eventfd stays readable (nobody reads it), so each epoll
        // reports it.
        stopRequested.store(true, ordering: .relaxed)
        var one: UInt64 = 1
        guard write(stopFD, &one, MemoryLayout<UInt64>.size) == MemoryLayout<UInt64>.size else { fail("eventfd write") }
        for thread in threadIDs { pthread_join(thread, nil) }
        loops.removeAll()
        for fd in listeners { close(fd) }
        close(stopFD)
    }
}

/// A non-blocking listening socket on host:port with SO_REUSEPORT, and the port it got.
func listen(host: String, port: Int) -> (fd: CInt, port: Int) {
    let fd = socket(AF_INET, CInt(SOCK_STREAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { fail("socket") }
    var one: CInt = 1
    let size = socklen_t(MemoryLayout<CInt>.size)
    guard setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, size) == 0 else { fail("SO_REUSEADDR") }
    guard setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, size) == 0 else { fail("SO_REUSEPORT") }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port)).bigEndian
    _ = inet_pton(AF_INET, host, &address.sin_addr)
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
            guard bind(fd, address, length) == 0 else { fail("bind") }
            guard Glibc.listen(fd, Limits.backlog) == 0 else { fail("listen") }
            guard getsockname(fd, address, &length) == 0 else { fail("getsockname") }
            return Int(UInt16(bigEndian: pointer.pointee.sin_port))
        }
    }
    return (fd, bound)
}

/// Runs the loop on a thread of its own.
func startThread(_ loop: EventLoop) -> pthread_t {
    var thread = pthread_t()
    // The loop goes to the thread as a retained pointer; the thread releases it.
    let context = Unmanaged.passRetained(loop).toOpaque()
    let result = pthread_create(&thread, nil, { context in
        Unmanaged<EventLoop>.fromOpaque(context!).takeRetainedValue().run()
        return nil
    }, context)
    guard result == 0 else {
        errno = result
        fail("pthread_create")
    }
    return thread
}

SwiftEpoll.main()
