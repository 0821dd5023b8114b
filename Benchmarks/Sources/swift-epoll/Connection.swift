// One client connection: its socket, its two buffers, and (HTTP) its llhttp parser.
import CNIOLLHTTP

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A client connection, owned by one ``EventLoop`` and touched by that loop's thread alone.
///
/// `@unchecked Sendable` so that an async handler (a `Task.immediate` started on the loop,
/// with the loop's executor as its preference) can take it: the task runs inline on the loop's
/// thread, and after a suspension it would resume on the loop's executor, that is on the same
/// thread again.
final class Connection: @unchecked Sendable {
    let fd: CInt
    /// What epoll hands back for it: its slot in the loop's table (low 32 bits) and a
    /// generation (high 32 bits), so that a stale event for a closed connection whose slot was
    /// reused in the same batch is recognised and dropped.
    let token: UInt64
    let loop: EventLoop

    /// Bytes read and not answered yet.
    let input = IOBuffer(capacity: Limits.inputInitial)
    /// Replies not yet taken by the kernel.
    let output = IOBuffer(capacity: Limits.outputInitial)
    /// Line protocol: input bytes after `input.start` already searched for "\n".
    var scanned = 0
    /// Stopped reading: more than `Limits.outputHigh` bytes of replies wait to be sent.
    var paused = false
    /// EPOLLRDHUP/HUP/ERR seen: read on to the EOF.
    var peerClosed = false
    /// No more requests: close once the output is out.
    var closing = false
    /// Async handlers started and not finished: 0 after every `Task.immediate` returns, or one
    /// suspended (see `EventLoop.startAsync`).
    var handlersRunning = 0

    // HTTP: the parser and what its callbacks gathered of the request being read.

    /// llhttp's state, allocated once per connection (llhttp keeps pointers to nothing in it
    /// but `data`, this connection, and the loop's settings).
    let parser: UnsafeMutablePointer<llhttp_t>?
    /// The request target's bytes so far (llhttp may hand them over in pieces).
    var targetLength = 0
    /// Whether the target so far is exactly "/".
    var targetIsRoot = false
    /// Bytes of target and header fields so far: NIOHTTP1 refuses more than 80 KiB.
    var headBytes = 0
    /// From `c_nio_llhttp_should_keep_alive` once the head is complete, as NIOHTTP1 does.
    var keepAlive = true

    init(fd: CInt, token: UInt64, loop: EventLoop, httpSettings: UnsafeMutablePointer<llhttp_settings_t>?) {
        self.fd = fd
        self.token = token
        self.loop = loop
        if let httpSettings {
            let parser = UnsafeMutablePointer<llhttp_t>.allocate(capacity: 1)
            c_nio_llhttp_init(parser, HTTP_REQUEST, httpSettings)
            self.parser = parser
        } else {
            parser = nil
        }
        // Unretained: the connection outlives its parser's callbacks, which run only inside
        // `c_nio_llhttp_execute` while the loop holds the connection.
        parser?.pointee.data = Unmanaged.passUnretained(self).toOpaque()
    }

    deinit {
        parser?.deallocate()
    }
}

/// Sizes and limits: c-ceiling's, so that the two servers behave the same.
enum Limits {
    /// nio-baseline's LineSplitter: more than this without a "\n" closes the connection.
    static let maxLine = 64 * 1024
    /// A connection's input buffer at first...
    static let inputInitial = 4096
    /// ...grows when a read fills it, up to this.
    static let inputMax = 256 * 1024
    static let outputInitial = 4096
    /// Replies waiting to be sent above which reading stops.
    static let outputHigh = 1024 * 1024
    /// NIOHTTP1's default `maxHeaderListSize` (target, header names and values).
    static let maxHeadBytes = 80 * 1024
    static let acceptBatch = 64
    static let eventBatch = 256
    static let backlog: CInt = 1024
}
