#if canImport(Glibc)
import Glibc
#endif
import NIOCore

/// How a client connection's bytes move: as a socket of Swoop's own loop (``SocketTransport``,
/// in the master's reactors and in a base-mode worker), or, in the HTTP fuzz harness, through
/// a NIO `EmbeddedChannel`. Bytes only: the framing of packets and HTTP (``HTTPSession``) sit
/// above, in ``ClientConnection``, the same for every transport.
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

/// A client connection as a socket of Swoop's own loop: the master's reactors' connections
/// and a base-mode worker's, read and written without NIO's pipeline.
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
        // Nothing waits before it, and it is within the bound by itself: to the socket now.
        if flush, socket.isIdle, data.readableBytes <= outputLimit { return socket.send(data) }
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
