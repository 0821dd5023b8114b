// HTTP/1.1: requests parsed by llhttp as SwiftNIO vendors it (CNIOLLHTTP, NIOHTTP1's parser),
// driven through its callbacks directly; responses byte for byte nio-baseline's and c-ceiling's.
import CNIOLLHTTP

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// What a handler needs of a request, gathered by the parser's callbacks. Plain values, so it
/// can go to an async handler as it is.
struct HTTPRequestFacts: Sendable {
    /// llhttp's method number (`HTTP_GET`, `HTTP_HEAD`, ...).
    var method: UInt8
    /// HTTP/1.<minor> (the major is always 1: others are refused, as NIOHTTP1 does).
    var minor: UInt8
    var keepAlive: Bool
    /// The target is exactly "/".
    var targetIsRoot: Bool

    var isHead: Bool { UInt32(method) == HTTP_HEAD.rawValue }
    /// GET or HEAD of "/": the hello response (anything else gets the 404).
    var isHello: Bool { (UInt32(method) == HTTP_GET.rawValue || isHead) && targetIsRoot }
}

enum HTTPProtocol {
    /// The settings every parser of one loop shares: its callbacks. Allocated once per loop,
    /// never freed (llhttp wants them to outlive every parser that uses them).
    static func makeSettings() -> UnsafeMutablePointer<llhttp_settings_t> {
        let settings = UnsafeMutablePointer<llhttp_settings_t>.allocate(capacity: 1)
        c_nio_llhttp_settings_init(settings)
        settings.pointee.on_url = { parser, bytes, length in
            connectionParsing(parser).receivedTarget(bytes, length)
        }
        settings.pointee.on_header_field = { parser, _, length in
            connectionParsing(parser).countHeadBytes(length)
        }
        settings.pointee.on_header_value = { parser, _, length in
            connectionParsing(parser).countHeadBytes(length)
        }
        settings.pointee.on_headers_complete = { parser in
            // As NIOHTTP1: only HTTP/1.x; keep-alive as llhttp reads it off the head.
            guard let parser, parser.pointee.http_major == 1 else { return -1 }
            connectionParsing(parser).keepAlive = c_nio_llhttp_should_keep_alive(parser) != 0
            return 0
        }
        settings.pointee.on_message_complete = { parser in
            let parser = parser!
            let connection = connectionParsing(parser)
            let request = HTTPRequestFacts(
                method: parser.pointee.method, minor: parser.pointee.http_minor,
                keepAlive: connection.keepAlive, targetIsRoot: connection.targetIsRoot)
            connection.targetLength = 0
            connection.targetIsRoot = false
            connection.headBytes = 0
            // NIOHTTP1 does this too, for llhttp issue 202 (a stale length after a message).
            parser.pointee.content_length = 0
            connection.loop.handle(request, on: connection)
            guard request.keepAlive else {
                // No more requests on this connection: stop parsing what follows.
                connection.closing = true
                return CInt(HPE_PAUSED.rawValue)
            }
            return 0
        }
        return settings
    }

    /// Feeds the input's pending bytes to the connection's parser; every request completed in
    /// them is answered (from `on_message_complete`), in order. llhttp keeps what it needs of
    /// a request cut by the end of a read in its own state, so all the bytes are consumed.
    static func process(_ connection: Connection) {
        let parser = connection.parser!
        let status = c_nio_llhttp_execute_swift(
            parser, connection.input.base + connection.input.start, connection.input.count)
        connection.input.clear()
        switch status {
        case HPE_OK:
            break
        case HPE_PAUSED:
            // on_message_complete paused after a request without keep-alive: `closing` is set.
            break
        case HPE_PAUSED_UPGRADE:
            // An Upgrade or CONNECT request, answered: no upgrade here, so the bytes after it
            // are not HTTP this server speaks. Close once the response is out.
            connection.closing = true
        default:
            badRequest(connection)
        }
    }

    /// A request that cannot be parsed: NIOHTTP1's answer (HTTPServerProtocolErrorHandler),
    /// after the responses to the requests before it, then close.
    static func badRequest(_ connection: Connection) {
        connection.closing = true
        connection.output.append("HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
    }

    fileprivate static let helloBody: StaticString = "Hello, World!"
    private static let notFoundBody: StaticString = "not found"

    /// The handler: appends the response to `request`. Called directly, or from an async
    /// closure (`--async`).
    static func respond(_ connection: Connection, to request: HTTPRequestFacts) {
        let found = request.isHello
        if found && request.minor == 1 && request.keepAlive && !request.isHead {
            // The benchmark's request: the loop's ready-made bytes.
            let hello = connection.loop.responses.hello
            connection.output.append(hello.base, count: hello.count)
            return
        }
        let body = found ? helloBody : notFoundBody
        appendHead(
            to: connection.output, minor: request.minor, found: found, bodyLength: body.utf8CodeUnitCount,
            date: connection.loop.responses.date, keepAlive: request.keepAlive)
        if !request.isHead { connection.output.append(body) }
    }

    /// The response head as nio-baseline writes it (HTTPHandler.swift's headers in its order,
    /// as NIOHTTP1 encodes them), up to and including its empty line.
    static func appendHead(
        to output: IOBuffer, minor: UInt8, found: Bool, bodyLength: Int, date: IOBuffer, keepAlive: Bool
    ) {
        output.append("HTTP/1.")
        output.append(byte: UInt8(ascii: "0") &+ minor)
        output.append(found ? " 200 OK\r\n" : " 404 Not Found\r\n")
        output.append("Content-Type: text/plain\r\nContent-Length: ")
        output.appendDecimal(bodyLength)
        output.append("\r\nServer: swoop\r\nDate: ")
        output.append(date.base, count: date.count)
        output.append("\r\n")
        if !keepAlive { output.append("Connection: close\r\n") }
        output.append("\r\n")
    }
}

/// The connection whose parser calls back (its `data`, set by `Connection.init`).
@inline(__always)
private func connectionParsing(_ parser: UnsafeMutablePointer<llhttp_t>?) -> Connection {
    Unmanaged<Connection>.fromOpaque(parser!.pointee.data!).takeUnretainedValue()
}

extension Connection {
    /// on_url: a piece of the request target.
    @inline(__always)
    fileprivate func receivedTarget(_ bytes: UnsafePointer<CChar>?, _ length: Int) -> CInt {
        // llhttp reports a target cut by the end of a read in pieces, and may end it with an
        // empty one.
        guard length > 0 else { return 0 }
        targetIsRoot = targetLength == 0 && length == 1 && bytes![0] == CChar(UInt8(ascii: "/"))
        targetLength += length
        return countHeadBytes(length)
    }

    /// on_header_field, on_header_value (and the target): NIOHTTP1's limit on a head's size.
    @inline(__always)
    fileprivate func countHeadBytes(_ length: Int) -> CInt {
        headBytes += length
        return headBytes > Limits.maxHeadBytes ? -1 : 0
    }
}

/// A loop's Date header and its ready-made `GET /` response, remade when the second changes
/// (swoop-demo and c-ceiling: once a second; nio-baseline: at most once a second).
final class HTTPResponses {
    private var second: time_t = -1
    /// "Sat, 28 Nov 2026 23:47:10 GMT".
    let date = IOBuffer(capacity: 64)
    /// The whole 130-byte response to a keep-alive HTTP/1.1 `GET /`.
    let hello = IOBuffer(capacity: 256)

    private static let days: [StaticString] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    private static let months: [StaticString] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]

    func refresh(now: time_t) {
        guard now != second else { return }
        second = now
        var seconds = now
        var parts = tm()
        gmtime_r(&seconds, &parts)
        // IMF-fixdate (RFC 9110), by hand as nio-baseline does: no locale involved.
        date.clear()
        date.append(Self.days[Int(parts.tm_wday)])
        date.append(", ")
        appendTwoDigits(parts.tm_mday)
        date.append(byte: UInt8(ascii: " "))
        date.append(Self.months[Int(parts.tm_mon)])
        date.append(byte: UInt8(ascii: " "))
        date.appendDecimal(Int(parts.tm_year) + 1900)
        date.append(byte: UInt8(ascii: " "))
        appendTwoDigits(parts.tm_hour)
        date.append(byte: UInt8(ascii: ":"))
        appendTwoDigits(parts.tm_min)
        date.append(byte: UInt8(ascii: ":"))
        appendTwoDigits(parts.tm_sec)
        date.append(" GMT")

        hello.clear()
        HTTPProtocol.appendHead(
            to: hello, minor: 1, found: true, bodyLength: HTTPProtocol.helloBody.utf8CodeUnitCount,
            date: date, keepAlive: true)
        hello.append(HTTPProtocol.helloBody)
    }

    private func appendTwoDigits(_ value: CInt) {
        date.append(byte: UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: value / 10))
        date.append(byte: UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: value % 10))
    }
}
