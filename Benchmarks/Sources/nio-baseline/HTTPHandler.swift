// nio-baseline --protocol http: the HTTP yardstick.
//
// A plain NIOHTTP1 server (keep-alive, pipelining assistance) that answers `GET /` with the
// very bytes swoop-demo's HTTP listener sends for it:
//
//     HTTP/1.1 200 OK\r\n
//     Content-Type: text/plain\r\n
//     Content-Length: 13\r\n
//     Server: swoop\r\n
//     Date: Sat, 28 Nov 2026 23:47:10 GMT\r\n
//     \r\n
//     Hello, World!
//
// Same headers, same order, same values (the Server header included), so both sides of the
// ratio move the same number of bytes per response; only Date's value differs with the
// clock. Anything but GET or HEAD of `/` gets swoop-demo's 404, `not found`.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore
import NIOHTTP1

/// Answers each request once its `.end` is in; one flush per read batch.
final class HTTPHelloHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    /// The bodies never change: allocated once per connection, then shared by every write.
    private let hello: ByteBuffer
    private let notFound: ByteBuffer

    /// The request being read: its method, path, version and keep-alive, from its head.
    private var pending: HTTPRequestHead?

    /// The Date header's value and the second it was formatted for. Formatting happens at
    /// most once a second per connection, as swoop-demo formats it at most once a second.
    private var dateSecond: time_t = -1
    private var dateText = ""

    /// Whether this read batch wrote anything that still awaits the flush.
    private var needsFlush = false

    init(allocator: ByteBufferAllocator) {
        hello = allocator.buffer(string: "Hello, World!")
        notFound = allocator.buffer(string: "not found")
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            pending = head
        case .body:
            // No route here takes a body: it is read and dropped.
            break
        case .end:
            guard let head = pending else { return }
            pending = nil
            respond(context: context, to: head)
        }
    }

    private func respond(context: ChannelHandlerContext, to request: HTTPRequestHead) {
        let found = (request.method == .GET || request.method == .HEAD) && request.uri == "/"
        let body = found ? hello : notFound
        var headers = HTTPHeaders()
        headers.reserveCapacity(5)
        headers.add(name: "Content-Type", value: "text/plain")
        headers.add(name: "Content-Length", value: String(body.readableBytes))
        headers.add(name: "Server", value: "swoop")
        headers.add(name: "Date", value: currentDate())
        let keepAlive = request.isKeepAlive
        if !keepAlive { headers.add(name: "Connection", value: "close") }

        let head = HTTPResponseHead(version: request.version, status: found ? .ok : .notFound, headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        if request.method != .HEAD { context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil) }
        if keepAlive {
            context.write(wrapOutboundOut(.end(nil)), promise: nil)
            needsFlush = true
        } else {
            // Connection: close (an HTTP/1.0 request, or one that asked): close once it is out.
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
        }
    }

    /// Now, in the IMF-fixdate form (RFC 9110), reformatted when the second changes.
    private func currentDate() -> String {
        let now = time(nil)
        if now != dateSecond {
            dateSecond = now
            dateText = imfFixdate(now)
        }
        return dateText
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        // One flush, so one write, for all the responses to what one read brought in.
        if needsFlush {
            needsFlush = false
            context.flush()
        }
        context.fireChannelReadComplete()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // A malformed request or a reset peer: this connection is done, the server goes on.
        context.close(promise: nil)
    }
}

/// `seconds` since the epoch as an IMF-fixdate: `Sat, 28 Nov 2026 23:47:10 GMT`.
func imfFixdate(_ seconds: time_t) -> String {
    let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    var time = seconds
    var parts = tm()
    gmtime_r(&time, &parts)
    func two(_ n: Int32) -> String { n < 10 ? "0\(n)" : String(n) }
    return "\(days[Int(parts.tm_wday)]), \(two(parts.tm_mday)) \(months[Int(parts.tm_mon)]) \(parts.tm_year + 1900) "
        + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) GMT"
}
