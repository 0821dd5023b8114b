import Foundation
import NIOCore
import NIOHTTP1

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// What the reactor sends for a request it serves statically.
struct StaticAnswer: Sendable {
    var response: StaticResponse
    /// The open file the body comes from; nil for refusals. ``StaticFiles/write(_:file:version:extraHeaders:context:promise:)``
    /// closes it; a caller that drops the answer unsent must close it itself.
    var file: NIOFileHandle?
}

/// An open static file: the descriptor to send from, and the file as the descriptor sees it.
struct OpenedStaticFile: Sendable {
    let handle: NIOFileHandle
    /// Re-read with fstat on the open descriptor, so that the headers built from it describe
    /// exactly the bytes sendfile will read, even if the file changed since `resolve`.
    let file: ResolvedFile
}

extension StaticFiles {
    /// Everything between a request head and its static answer, for a caller that owns the
    /// connection (the HTTP session's hook): nil when a worker must answer the request (static
    /// files disabled, a method other than GET or HEAD, ``StaticResolution/notMine``, or the file
    /// gone before it could be opened); otherwise the response and the file to send.
    ///
    /// ```swift
    /// guard let answer = StaticFiles.prepare(head, settings: settings.staticFiles, now: Date()) else {
    ///     return false  // a worker answers
    /// }
    /// StaticFiles.write(answer.response, file: answer.file, version: head.version,
    ///                   extraHeaders: ["Date": HTTPDate.now(), "Server": HTTPDate.serverName],
    ///                   context: context, promise: nil)
    /// ```
    static func prepare(_ head: HTTPRequestHead, settings: StaticFileSettings, now: Date) -> StaticAnswer? {
        guard settings.enabled, serves(head.method) else { return nil }
        switch resolve(target: head.uri, root: settings.documentRoot, indexFiles: settings.indexFiles) {
        case .file(let found):
            guard let opened = open(found) else { return nil }
            let response = respond(method: head.method, headers: head.headers, file: opened.file, now: now)
            return StaticAnswer(response: response, file: opened.handle)
        case .forbidden:
            return StaticAnswer(response: .refusal(.forbidden), file: nil)
        case .notFound:
            return StaticAnswer(response: .refusal(.notFound), file: nil)
        case .notMine:
            return nil
        }
    }

    /// Opens a resolved file for sending, or nil when it has gone or was replaced by something
    /// else since `resolve` (then pass the request to a worker).
    ///
    /// The device and inode must match what `resolve` checked, which closes the window in which
    /// a rename could put a file from outside the root at the checked path.
    static func open(_ file: ResolvedFile) -> OpenedStaticFile? {
        guard case .success(let fd) = StaticFileSystem.openForReading(file.path) else { return nil }
        guard case .success(let info) = StaticFileSystem.status(of: fd),
              info.st_mode & S_IFMT == S_IFREG,
              UInt64(info.st_dev) == file.device, UInt64(info.st_ino) == file.inode
        else {
            StaticFileSystem.close(fd)
            return nil
        }
        let current = ResolvedFile(info, path: file.path, contentType: file.contentType)
        return OpenedStaticFile(handle: NIOFileHandle(_deprecatedTakingOwnershipOfDescriptor: fd), file: current)
    }

    /// Writes `response` through `context`, whose handler must sit after an `HTTPResponseEncoder`
    /// (its outbound type is `HTTPServerResponsePart`), and flushes.
    ///
    /// The body goes out as a `FileRegion` of `file`, which NIO sends with sendfile without
    /// copying it through user space or blocking the loop. This takes ownership of `file` and
    /// closes it once the response is written or has failed. `extraHeaders` (`Date`,
    /// `Connection`, `Server`) are added to the head. `promise` completes with the last write.
    static func write(
        _ response: StaticResponse,
        file: NIOFileHandle?,
        version: HTTPVersion,
        extraHeaders: HTTPHeaders = [:],
        context: ChannelHandlerContext,
        promise: EventLoopPromise<Void>?
    ) {
        var head = HTTPResponseHead(version: version, status: response.status, headers: response.headers)
        head.headers.add(contentsOf: extraHeaders)
        context.write(NIOAny(HTTPServerResponsePart.head(head)), promise: nil)
        var sending: RepeatedTask?
        if let range = response.bodyRange, let file {
            let region = FileRegion(fileHandle: file, readerIndex: Int(range.lowerBound), endIndex: Int(range.upperBound))
            context.write(NIOAny(HTTPServerResponsePart.body(.fileRegion(region))), promise: nil)
            let channel = NIOLoopBound(context, eventLoop: context.eventLoop)
            sending = watchForTruncation(of: file, needing: range.upperBound, on: context.eventLoop) {
                channel.value.close(promise: nil)
            }
        }
        let watchdog = sending
        let done = context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil)))
        if let file {
            // Writes complete in order, so after the end the region has been sent (or dropped).
            done.whenComplete { _ in
                watchdog?.cancel()
                try? file.close()
            }
        }
        done.cascade(to: promise)
    }

    /// Runs `truncated` (once) if `file` shrinks below `end` while NIO sends it; the caller
    /// closes the connection then and cancels the task once the file is sent.
    ///
    /// sendfile returns 0 at the end of a file that was truncated under it, and NIO takes that
    /// as "try again when writable", which on a writable socket is at once, forever: the reactor
    /// would spin. The promised Content-Length can no longer be met anyway, so, as nginx does
    /// ("file was truncated"), the connection is closed. Replacing files by rename, as deploy
    /// tools do, never triggers this: the open descriptor keeps the old inode. (Swoop's own
    /// loop sees the 0 itself: ``EpollSocket``.)
    static func watchForTruncation(of file: NIOFileHandle, needing end: Int64, on loop: EventLoop,
                                   _ truncated: @escaping @Sendable () -> Void) -> RepeatedTask {
        loop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { task in
            let size = try? file.withUnsafeFileDescriptor { fd in
                guard case .success(let info) = StaticFileSystem.status(of: fd) else { return Int64.max }
                return Int64(info.st_size)
            }
            if let size, size < end {
                task.cancel()
                truncated()
            }
        }
    }
}

/// Serves static files in the reactor as a pipeline stage of its own: answers a GET or HEAD for
/// a file under the document root (and refuses traversal attempts) itself, and passes every
/// other request on unchanged, to be dispatched to a worker. A session handler that already
/// owns the connection can call ``StaticFiles/prepare(_:settings:now:)`` and
/// ``StaticFiles/write(_:file:version:extraHeaders:context:promise:)`` instead.
///
/// Place it after `configureHTTPServerPipeline` (whose pipelining handler keeps responses in
/// request order) and before the handler that forwards requests to workers.
final class StaticFileHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private enum State {
        /// Between requests.
        case idle
        /// The current request belongs to a worker: its parts flow on.
        case passing
        /// The current request is ours; the answer goes out at its `.end`, so that a request body
        /// is consumed first and pipelined responses stay in order.
        case answering(StaticAnswer, HTTPRequestHead)
    }

    private let settings: StaticFileSettings
    private var state = State.idle

    init(settings: StaticFileSettings) {
        self.settings = settings
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch (unwrapInboundIn(data), state) {
        case (.head(let head), let previous):
            // Only a decoder that lost an `.end` gets here mid-answer; do not leak its file.
            if case .answering(let unsent, _) = previous { try? unsent.file?.close() }
            if let answer = StaticFiles.prepare(head, settings: settings, now: Date()) {
                state = .answering(answer, head)
            } else {
                state = .passing
                context.fireChannelRead(data)
            }
        case (.body, .answering):
            break
        case (.end, .answering(let answer, let head)):
            state = .idle
            var extra: HTTPHeaders = ["Date": IMFFixdate.format(Int64(Date().timeIntervalSince1970))]
            if !head.isKeepAlive {
                extra.add(name: "Connection", value: "close")
            } else if head.version.major == 1 && head.version.minor == 0 {
                extra.add(name: "Connection", value: "keep-alive")
            }
            let done = context.eventLoop.makePromise(of: Void.self)
            StaticFiles.write(answer.response, file: answer.file, version: head.version, extraHeaders: extra,
                              context: context, promise: done)
            if !head.isKeepAlive {
                let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
                done.futureResult.whenComplete { _ in loopBound.value.close(promise: nil) }
            }
        case (.end, _):
            state = .idle
            context.fireChannelRead(data)
        case (.body, _):
            context.fireChannelRead(data)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        if case .answering(let unsent, _) = state { try? unsent.file?.close() }
        state = .idle
    }
}
