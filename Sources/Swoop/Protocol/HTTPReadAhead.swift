import NIOCore
import NIOHTTP1

/// Keeps an HTTP connection reading while its one request waits for a worker's answer.
///
/// NIO's pipelining handler stops reading while a response is pending, so that a pipelined
/// request is not read before the one in hand is answered. In process mode the response is
/// always pending when a read ends (the answer comes from a worker on a later turn), so the
/// socket's epoll interest went off and on again around every request: two `epoll_ctl`
/// calls, as many system calls as the request's own read and write together.
///
/// This handler sits just below the pipelining handler and asks for the next read itself
/// while at most one request is outstanding. A client that pipelines is paused by NIO's
/// handler as before, once its second request has been read, so no more is buffered than
/// one read's worth, the same as without this handler.
final class HTTPReadAhead: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    /// Request heads read whose response has not ended.
    private var outstanding = 0

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head = unwrapInboundIn(data) { outstanding += 1 }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data), outstanding > 0 { outstanding -= 1 }
        context.write(data, promise: promise)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        // Before the pipelining handler declines the read the channel asks for after this
        // event: a read already requested leaves the socket registered for reading.
        if outstanding <= 1 { context.read() }
        context.fireChannelReadComplete()
    }
}
