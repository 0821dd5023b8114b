#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOPosix

/// A client connection as a NIO channel: the pipeline's handler (with, on an HTTP listener, a
/// gate for its reads after it). Swoop's processes move client bytes with `SocketTransport`;
/// this transport lets the harness drive an `HTTPSession` on an `EmbeddedChannel`, in memory
/// and deterministically, one input at a time.
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
