#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOPosix

/// How a client connection's bytes move: through a NIO channel (``ChannelTransport``: the
/// master's reactor threads), or as a socket of Swoop's own loop (``SocketTransport``: a
/// base-mode worker). Bytes only: the framing of packets and HTTP (``HTTPSession``) sit above,
/// in ``ClientConnection``, the same for both.
protocol ClientTransport: AnyObject, Sendable {
    /// Writes bytes to the client; without `flush` they wait for the next `flush`.
    func write(_ data: ByteBuffer, flush: Bool)
    func flush()
    /// Runs `body` on the loop once everything written so far has left (or cannot: the
    /// connection closed).
    func whenWritten(_ body: @escaping () -> Void)
    /// Sends `file`'s bytes from `offset` to `end` after what was written, with sendfile(2), as
    /// the client reads; takes the descriptor and closes it once they are sent or dropped. A
    /// file cut short under it closes the connection. Its bytes do not count against
    /// `bufferOutputSize` (it bounds memory, and they are not in memory).
    func sendFile(_ file: CInt, offset: Int, end: Int)
    /// Sends a FIN after what was written; reading goes on.
    func closeOutput()
    /// Closes the connection; `reset` sends a RST and drops what is unsent.
    func close(reset: Bool)
    /// Reads no more from the client, for good (a graceful stop); writes go on.
    func stopReading()
    /// Pauses reading (the HTTP session holds a pipelined request) until `resumeReading`.
    func pauseReading()
    func resumeReading()
    /// Bytes written and not yet taken by the socket.
    var bufferedBytes: Int { get }
    /// Completes once the connection is closed.
    var closeFuture: EventLoopFuture<Void> { get }
}

/// A client connection as a NIO channel: the pipeline's handler (with, on an HTTP listener, a
/// gate for its reads after it).
final class ChannelTransport: ChannelInboundHandler, ClientTransport, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = IOData

    /// This handler's place in the pipeline, where bytes for the client are written from:
    /// `Channel.write` would walk the pipeline and wrap each buffer through generic code (a
    /// runtime metadata lookup per write).
    private var output: ChannelHandlerContext?
    let channel: Channel
    let connection: ClientConnection
    /// Files being sent: NIO counts a file region as pending output, so the writability
    /// bound on memory (`bufferOutputSize`) does not apply meanwhile.
    private var filesInFlight = 0
    /// Withholds the channel's reads while the HTTP session holds requests (HTTP listeners).
    private var gate: ReadGate?

    private init(channel: Channel, connection: ClientConnection) {
        self.channel = channel
        self.connection = connection
    }

    /// Sets up a new client channel: its connection (with the framing of its listener's
    /// protocol, HTTP or packets) and this transport as the pipeline's handler.
    @discardableResult
    static func install(on channel: Channel, id: UInt64, sequence: UInt64, listener: Int, framing: ProtocolSettings,
                        reactor: Reactor, serverPort: Int) throws -> ClientConnection {
        let connection = ClientConnection(id: id, sequence: sequence, listener: listener, reactor: reactor,
                                          remoteIP: channel.remoteAddress?.ipAddress ?? "unix",
                                          remotePort: channel.remoteAddress?.port ?? 0, serverPort: serverPort,
                                          framing: framing)
        let transport = ChannelTransport(channel: channel, connection: connection)
        connection.transport = transport
        try channel.pipeline.syncOperations.addHandler(transport)
        if framing.openHTTPProtocol {
            // After the transport: the channel's reads pass it (they start at the tail), the
            // transport's writes do not.
            let gate = ReadGate()
            try channel.pipeline.syncOperations.addHandler(gate)
            transport.gate = gate
        }
        return connection
    }

    /// Passes the channel's read requests on, except while paused: then the last one waits
    /// until `resume`. Pausing this way costs nothing at the socket (no change of the events
    /// watched) and happens only while a pipelined request is held.
    private final class ReadGate: ChannelOutboundHandler, @unchecked Sendable {
        typealias OutboundIn = Any
        private var context: ChannelHandlerContext?
        private var paused = false
        private var withheld = false
        /// `stop` was called: reading does not resume.
        private var stopped = false

        func handlerAdded(context: ChannelHandlerContext) {
            self.context = context
        }

        func handlerRemoved(context: ChannelHandlerContext) {
            self.context = nil
        }

        func read(context: ChannelHandlerContext) {
            if paused { withheld = true } else { context.read() }
        }

        func pause() {
            paused = true
        }

        func resume() {
            guard paused, !stopped else { return }
            paused = false
            if withheld {
                withheld = false
                context?.read()
            }
        }

        func stop() {
            stopped = true
            paused = true
        }
    }

    func handlerAdded(context: ChannelHandlerContext) {
        output = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        output = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        connection.opened()
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        connection.received(unwrapInboundIn(data))
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        connection.readComplete()
        context.fireChannelReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        connection.closed()
        context.fireChannelInactive()
    }

    /// The client shut down its sending side (allowed on HTTP listeners).
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed {
            connection.inputClosed()
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        // The write buffer's high-water mark is bufferOutputSize.
        if !context.channel.isWritable && filesInFlight == 0 { connection.outputExceeded() }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        connection.failed(error)
    }

    func write(_ data: ByteBuffer, flush: Bool) {
        guard let output else { return }
        if flush {
            output.writeAndFlush(wrapOutboundOut(.byteBuffer(data)), promise: nil)
        } else {
            output.write(wrapOutboundOut(.byteBuffer(data)), promise: nil)
        }
    }

    func flush() {
        output?.flush()
    }

    func whenWritten(_ body: @escaping () -> Void) {
        guard let output else { return body() }
        // Writes complete in order: an empty one completes once all before it have (it is
        // flushed too, or it would wait for the next flush).
        let written = channel.eventLoop.makePromise(of: Void.self)
        output.writeAndFlush(wrapOutboundOut(.byteBuffer(ByteBuffer())), promise: written)
        written.futureResult.whenComplete { _ in body() }
    }

    func sendFile(_ file: CInt, offset: Int, end: Int) {
        let handle = NIOFileHandle(_deprecatedTakingOwnershipOfDescriptor: file)
        guard let output else {
            try? handle.close()
            return
        }
        let sent = channel.eventLoop.makePromise(of: Void.self)
        filesInFlight += 1
        output.write(wrapOutboundOut(.fileRegion(FileRegion(fileHandle: handle, readerIndex: offset, endIndex: end))),
                     promise: sent)
        let transport = NIOLoopBound(self, eventLoop: channel.eventLoop)
        let watchdog = StaticFiles.watchForTruncation(of: handle, needing: Int64(end), on: channel.eventLoop) {
            transport.value.connection.failed(FileTruncatedError())
        }
        sent.futureResult.whenComplete { [self] _ in
            filesInFlight -= 1
            watchdog.cancel()
            try? handle.close()
        }
    }

    func closeOutput() {
        channel.close(mode: .output, promise: nil)
    }

    func close(reset: Bool) {
        guard reset else { return channel.close(promise: nil) }
        // SO_LINGER 0 makes close() send a RST and drop what is unsent.
        let provider = channel as? SocketOptionProvider
        (provider?.setSoLinger(linger(l_onoff: 1, l_linger: 0)) ?? channel.eventLoop.makeSucceededVoidFuture())
            .whenComplete { [channel] _ in channel.close(promise: nil) }
    }

    func stopReading() {
        gate?.stop()
        channel.setOption(ChannelOptions.autoRead, value: false).whenFailure { _ in }
    }

    func pauseReading() {
        gate?.pause()
    }

    func resumeReading() {
        gate?.resume()
    }

    var bufferedBytes: Int {
        (try? channel.syncOptions?.getOption(ChannelOptions.bufferedWritableBytes)) ?? 0
    }

    var closeFuture: EventLoopFuture<Void> { channel.closeFuture }
}

/// A client connection as a socket of Swoop's own loop: a base-mode worker's connections,
/// read and written without NIO's pipeline.
final class SocketTransport: ClientTransport, EpollSocketDelegate, @unchecked Sendable {
    private let connection: ClientConnection
    private var socket: EpollSocket!
    private let outputLimit: Int
    private let closedPromise: EventLoopPromise<Void>
    private let whenClosed: () -> Void
    private var stopped = false

    /// Takes over an accepted socket; `closed` runs when it closes. `allowsHalfClosure`: the
    /// client may shut down its sending side and still read (HTTP).
    init(fd: CInt, loop: EpollLoop, connection: ClientConnection, outputLimit: Int, allowsHalfClosure: Bool,
         closed: @escaping () -> Void) {
        self.connection = connection
        self.outputLimit = outputLimit
        self.closedPromise = loop.makePromise()
        self.whenClosed = closed
        socket = EpollSocket(fd: fd, loop: loop, delegate: self, readSizes: 2048...65_536,
                             allowsHalfClosure: allowsHalfClosure)
        connection.transport = self
    }

    func start() throws {
        try socket.start()
        connection.opened()
    }

    func socketReceived(_ bytes: ByteBuffer) {
        connection.received(bytes)
    }

    func socketReadDone() {
        connection.readComplete()
    }

    func socketInputClosed() {
        connection.inputClosed()
    }

    func socketClosed(_ error: Error?) {
        if let error { connection.failed(error) }
        connection.closed()
        whenClosed()
        closedPromise.succeed()
    }

    func write(_ data: ByteBuffer, flush: Bool) {
        socket.enqueue(data)
        if socket.unsentBytes > outputLimit {
            connection.outputExceeded()
        } else if flush {
            socket.flush()
        }
    }

    func flush() {
        socket.flush()
    }

    func whenWritten(_ body: @escaping () -> Void) {
        socket.whenSent(body)
    }

    func sendFile(_ file: CInt, offset: Int, end: Int) {
        socket.enqueue(file: file, offset: offset, end: end)
    }

    func closeOutput() {
        socket.shutdownOutput()
    }

    func close(reset: Bool) {
        socket.close(reset: reset)
    }

    func stopReading() {
        stopped = true
        socket.stopReading()
    }

    func pauseReading() {
        socket.stopReading()
    }

    func resumeReading() {
        if !stopped { socket.resumeReading() }
    }

    var bufferedBytes: Int { socket.unsentBytes }

    var closeFuture: EventLoopFuture<Void> { closedPromise.futureResult }
}
