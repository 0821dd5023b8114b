// nio-baseline: the yardstick the benchmark measures Swoop against.
//
// A plain SwiftNIO server in one process that speaks swoop-demo's line protocol for `echo` and
// `ping`, with byte-for-byte the same replies; with `--protocol http`, HTTP/1.1 instead
// (NIOHTTP1), answering `GET /` with the same bytes as swoop-demo's HTTP listener (see
// HTTPHandler.swift). It is meant to be what a competent engineer
// would write for this job with SwiftNIO alone, so that the ratio to it measures what Swoop's
// process model costs, and not a handicapped opponent: replies reuse the request's bytes, and
// each read batch ends in one flush.
import ArgumentParser
import BenchSupport
import NIOCore
import NIOHTTP1
import NIOPosix

/// Answers each line the way swoop-demo does: `echo TEXT` → `TEXT`, `ping` → `pong`, anything
/// else → `error unknown command`.
final class LineCommandHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// Replies that never change, allocated once per connection and then shared by every
    /// write of them (a ByteBuffer is copy-on-write, and nobody writes into these).
    private let pong: ByteBuffer
    private let newline: ByteBuffer
    private let unknownCommand: ByteBuffer

    /// Whether this read batch wrote anything that still awaits the flush.
    private var needsFlush = false

    init(allocator: ByteBufferAllocator) {
        pong = allocator.buffer(string: "pong\n")
        newline = allocator.buffer(string: "\n")
        unknownCommand = allocator.buffer(string: "error unknown command\n")
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var line = unwrapInboundIn(data)
        // The splitter hands on the line with its "\n"; like swoop-demo, also accept "\r\n".
        var contentEnd = line.writerIndex - 1
        let crlf = contentEnd > line.readerIndex && line.getInteger(at: contentEnd - 1, as: UInt8.self) == UInt8(ascii: "\r")
        if crlf { contentEnd -= 1 }

        // The command is the line up to its first space; the argument is all after it.
        let content = line.readableBytesView[line.readerIndex..<contentEnd]
        let space = content.firstIndex(of: UInt8(ascii: " "))
        let command = content[..<(space ?? contentEnd)]

        if command.elementsEqual("echo".utf8) {
            let argumentStart = space.map { $0 + 1 } ?? contentEnd
            if crlf {
                // The reply ends in "\n" alone, so the request's "\r\n" cannot be reused.
                let argument = line.getSlice(at: argumentStart, length: contentEnd - argumentStart)!
                context.write(wrapOutboundOut(argument), promise: nil)
                context.write(wrapOutboundOut(newline), promise: nil)
            } else {
                // "echo TEXT\n" → "TEXT\n": the reply is the tail of the request, written as
                // a slice of the bytes read; no copy.
                line.moveReaderIndex(to: argumentStart)
                context.write(wrapOutboundOut(line), promise: nil)
            }
        } else if command.elementsEqual("ping".utf8) {
            context.write(wrapOutboundOut(pong), promise: nil)
        } else {
            context.write(wrapOutboundOut(unknownCommand), promise: nil)
        }
        needsFlush = true
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        // One flush, so one writev, for all the replies to what one read brought in: a
        // pipelining client gets its answers in as few syscalls as it sent its requests.
        if needsFlush {
            needsFlush = false
            context.flush()
        }
        context.fireChannelReadComplete()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // A reset peer or an over-long line: this connection is done, the server goes on.
        context.close(promise: nil)
    }
}

/// What the server speaks.
enum BaselineProtocol: String, ExpressibleByArgument {
    /// swoop-demo's line protocol (`echo`, `ping`).
    case line
    /// HTTP/1.1: `GET /` → `Hello, World!`.
    case http
}

/// The command line.
struct Baseline: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nio-baseline",
        abstract: "A plain SwiftNIO line server (echo, ping) or HTTP server (GET /): the benchmark's yardstick.")

    @Option(help: "The address to listen on.") var host = "127.0.0.1"
    @Option(help: "The TCP port (0: any free port).") var port = 0
    @Option(help: "Event loop threads.") var threads = 2
    @Option(name: .customLong("protocol"), help: "line (echo, ping) or http (GET / → Hello, World!).") var serverProtocol = BaselineProtocol.line

    func validate() throws {
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0...65535") }
    }

    func run() throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            // Request/response traffic: Nagle would hold each small reply back.
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { [serverProtocol] channel in
                channel.eventLoop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
                    switch serverProtocol {
                    case .line:
                        try pipeline.addHandlers(
                            ByteToMessageHandler(LineSplitter()),
                            LineCommandHandler(allocator: channel.allocator)
                        )
                    case .http:
                        // Keep-alive, and pipelined requests answered in order.
                        try pipeline.configureHTTPServerPipeline(withPipeliningAssistance: true)
                        try pipeline.addHandler(HTTPHelloHandler(allocator: channel.allocator))
                    }
                }
            }
        let listener = try bootstrap.bind(host: host, port: port).wait()
        guard let boundPort = listener.localAddress?.port else {
            throw ValidationError("the listener has no port")
        }
        announce("nio-baseline ready protocol=\(serverProtocol.rawValue) port=\(boundPort)")
        // Runs until killed. SIGTERM's default action ends the process at once, which is all a
        // benchmark server needs: there is no state to save and the clients are gone by then.
        try listener.closeFuture.wait()
        try group.syncShutdownGracefully()
    }
}

Baseline.main()
