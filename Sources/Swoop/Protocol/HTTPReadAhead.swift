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
/// while that handler holds nothing back: every request part passed up has arrived at the
/// end of the pipeline (`HTTPSession` counts them in `arrivals`). A client that pipelines is
/// paused by NIO's handler as before, once its second request has been read, so no more is
/// buffered than one read's worth, the same as without this handler. Parts are counted,
/// not looked at: unwrapping each from `NIOAny` costs a dynamic cast.
final class HTTPReadAhead: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart

    /// Request parts that arrived at the end of the pipeline, counted by the handler there.
    final class Arrivals {
        var count = 0
    }

    let arrivals = Arrivals()
    /// Request parts passed up to the pipelining handler.
    private var passed = 0

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        passed &+= 1
        context.fireChannelRead(data)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        // Before the pipelining handler declines the read the channel asks for after this
        // event: a read already requested leaves the socket registered for reading.
        if arrivals.count == passed { context.read() }
        context.fireChannelReadComplete()
    }
}
