import CNIOLLHTTP
import NIOCore
import NIOHTTP1

/// A request head as the parser read it: the form a worker receives (``HTTPWireHead``), with
/// what the master's session decides by. A class: the session's state holds it from the head
/// to the response's end, and each look at the state copied all its strings.
final class ParsedRequestHead: HTTPWireHead, @unchecked Sendable {
    let httpMethod: HTTPMethod
    let version: HTTPVersion
    /// Whether the connection stays open after the response (llhttp's reading of the
    /// version and the Connection header).
    let isKeepAlive: Bool
    /// The Content-Length the request declares, if any.
    let contentLength: UInt64?
    /// `Expect: 100-continue`.
    let expectsContinue: Bool
    /// A HEAD request: its response has no body.
    let isHead: Bool

    init(methodName: String, target: String, headers: [HTTPWirePair], method: HTTPMethod, version: HTTPVersion,
         isKeepAlive: Bool, contentLength: UInt64?, expectsContinue: Bool) {
        self.httpMethod = method
        self.version = version
        self.isKeepAlive = isKeepAlive
        self.contentLength = contentLength
        self.expectsContinue = expectsContinue
        if case .HEAD = httpMethod { isHead = true } else { isHead = false }
        super.init(method: methodName, target: target, versionMajor: version.major, versionMinor: version.minor,
                   headers: headers)
    }

    /// The head as a worker receives it: this object.
    var wire: HTTPWireHead { self }

    var uri: String { target }

    /// NIO's form of the head, for the code written against it (the static file handler).
    var nioHead: HTTPRequestHead {
        HTTPRequestHead(version: version, method: httpMethod, uri: target,
                        headers: HTTPHeaders(headers.map { ($0.name, $0.value) }))
    }
}

/// What the parser finds in the bytes, in order: each request is a head, its body's parts,
/// an end.
enum HTTPRequestEvent {
    case head(ParsedRequestHead)
    case body(ByteBuffer)
    case end
}

/// Why bytes are not a request.
struct HTTPParseError: Error, CustomStringConvertible {
    /// The request head (target and header lines) is longer than the parser takes: answered
    /// with 431 rather than 400.
    let headTooLarge: Bool
    /// llhttp's name of the error and its reason.
    let name: String
    let reason: String

    var description: String { headTooLarge ? "request head exceeds \(HTTPRequestParser.maxHeadBytes) bytes" : "\(name): \(reason)" }
}

/// HTTP/1 requests parsed by llhttp, the parser NIOHTTP1 vendors and drives itself, called
/// here directly: the bytes need no channel pipeline, and the head comes out as the worker's
/// wire form without NIO's `HTTPRequestHead` and `HTTPHeaders` in between (together over a
/// third of the master's instructions per request).
///
/// llhttp checks the syntax and the framing (Content-Length, chunked, the conflicts between
/// them). Its lenient modes stay off, as NIOHTTP1 leaves them. A request that asks to switch
/// protocols is taken as a plain request: Swoop speaks none other, and the bytes after it are
/// parsed as HTTP, which RFC 9110 allows a server that ignores the Upgrade header.
final class HTTPRequestParser {
    /// The longest request head taken (target and header lines, each header counted with 4
    /// bytes for its separators), as nginx's default `large_client_header_buffers` allows;
    /// it also keeps a request within the IPC frame limit beside a body of `packageMaxLength`.
    static let maxHeadBytes = 32 * 1024

    /// llhttp's state, at a fixed address (it is handed to C at each call).
    private let parser = UnsafeMutablePointer<llhttp_t>.allocate(capacity: 1)
    // The state below is touched by `feed` and by llhttp's callbacks during it, on one
    // thread, and no access overlaps another: the run-time exclusivity checks are off (they
    // were a third of the parser's instructions).
    /// The events of the `feed` running.
    @exclusivity(unchecked) private var events: [HTTPRequestEvent] = []
    /// The bytes being parsed, for the body slices (taken without copying).
    @exclusivity(unchecked) private var input = ByteBuffer()
    @exclusivity(unchecked) private var inputBase: UnsafeRawPointer?
    // The head being read; llhttp may hand each piece over in several calls.
    @exclusivity(unchecked) private var target = PieceBytes()
    @exclusivity(unchecked) private var field = PieceBytes()
    @exclusivity(unchecked) private var value = PieceBytes()
    @exclusivity(unchecked) private var headers: [HTTPWirePair] = []
    @exclusivity(unchecked) private var headBytes = 0
    @exclusivity(unchecked) private var tooLarge = false
    /// An error already reported: llhttp would return it again for any later bytes.
    @exclusivity(unchecked) private var failed: HTTPParseError?

    init() {
        c_nio_llhttp_init(parser, HTTP_REQUEST, HTTPRequestParser.settings)
        parser.pointee.data = Unmanaged.passUnretained(self).toOpaque()
    }

    deinit {
        parser.deallocate()
    }

    /// Parses the bytes read and hands `take` what they complete, in order, once llhttp is
    /// done with them (so that nothing `take` does runs inside llhttp). Throws once the bytes
    /// stop being HTTP, after handing over the events before the error.
    func feed(_ bytes: ByteBuffer, _ take: (HTTPRequestEvent) -> Void) throws {
        if let failed { throw failed }
        input = bytes
        let status: llhttp_errno_t = bytes.withUnsafeReadableBytes { raw in
            guard let base = raw.baseAddress else { return HPE_OK }
            inputBase = base
            var at = base
            var left = raw.count
            while true {
                let status = c_nio_llhttp_execute_swift(parser, at, left)
                // A request that asks to switch protocols: go on with HTTP (see the type).
                guard status == HPE_PAUSED_UPGRADE, let stop = c_nio_llhttp_get_error_pos(parser) else { return status }
                c_nio_llhttp_resume_after_upgrade(parser)
                let done = at.distance(to: UnsafeRawPointer(stop))
                at += done
                left -= done
                if left == 0 { return HPE_OK }
            }
        }
        // A piece not complete yet is copied: the bytes it points into go with this read.
        target.keep()
        field.keep()
        value.keep()
        input = ByteBuffer()
        inputBase = nil
        for event in events { take(event) }
        events.removeAll(keepingCapacity: true)
        guard status == HPE_OK else {
            let error = HTTPParseError(headTooLarge: tooLarge, name: String(cString: c_nio_llhttp_errno_name(status)),
                                       reason: c_nio_llhttp_get_error_reason(parser).map { String(cString: $0) } ?? "")
            failed = error
            throw error
        }
    }

    // MARK: llhttp's callbacks

    private static func parser(_ p: UnsafeMutablePointer<llhttp_t>?) -> HTTPRequestParser {
        Unmanaged<HTTPRequestParser>.fromOpaque(p!.pointee.data!).takeUnretainedValue()
    }

    /// The pieces of a head llhttp hands over, possibly each in several calls.
    private enum Piece {
        case target, field, value
    }

    /// Keeps a piece of the head; -1 (llhttp's error) once the head is too long.
    private func collect(_ piece: Piece, _ at: UnsafePointer<CChar>?, _ length: Int) -> Int32 {
        guard takes(length) else { return -1 }
        let bytes = UnsafeBufferPointer(start: at.map { UnsafeRawPointer($0).assumingMemoryBound(to: UInt8.self) },
                                        count: length)
        switch piece {
        case .target: target.add(bytes)
        case .field: field.add(bytes)
        case .value: value.add(bytes)
        }
        return 0
    }

    /// Counts bytes of the head; false once the head is too long.
    private func takes(_ length: Int) -> Bool {
        headBytes += length
        if headBytes > Self.maxHeadBytes { tooLarge = true }
        return !tooLarge
    }

    /// llhttp's table of callbacks, shared by every parser: filled once, only read after.
    nonisolated(unsafe) private static let settings: UnsafeMutablePointer<llhttp_settings_t> = {
        let settings = UnsafeMutablePointer<llhttp_settings_t>.allocate(capacity: 1)
        c_nio_llhttp_settings_init(settings)
        // The pieces are emptied as they are taken (`headComplete`, each field's end), and
        // the parser is not used after an error: a new message starts with them empty.
        settings.pointee.on_message_begin = { p in
            HTTPRequestParser.parser(p).headBytes = 0
            return 0
        }
        settings.pointee.on_url = { p, at, length in HTTPRequestParser.parser(p).collect(.target, at, length) }
        settings.pointee.on_header_field = { p, at, length in HTTPRequestParser.parser(p).collect(.field, at, length) }
        settings.pointee.on_header_value = { p, at, length in HTTPRequestParser.parser(p).collect(.value, at, length) }
        settings.pointee.on_header_value_complete = { p in
            let parser = HTTPRequestParser.parser(p)
            guard parser.takes(4) else { return -1 }
            // llhttp leaves out the whitespace before a value, not the whitespace after it.
            let value = parser.value.take { bytes in
                var end = bytes.count
                while end > 0, bytes[end - 1] == 0x20 || bytes[end - 1] == 0x09 { end -= 1 }
                return String(decoding: UnsafeBufferPointer(rebasing: bytes[..<end]), as: UTF8.self)
            }
            let name = parser.field.take { String(decoding: $0, as: UTF8.self) }
            parser.headers.append(HTTPWirePair(name: name, value: value))
            return 0
        }
        settings.pointee.on_headers_complete = { p in
            HTTPRequestParser.parser(p).headComplete(p!)
            return 0
        }
        settings.pointee.on_body = { p, at, length in
            let parser = HTTPRequestParser.parser(p)
            let offset = UnsafeRawPointer(at!) - parser.inputBase!
            parser.events.append(.body(parser.input.getSlice(at: parser.input.readerIndex + offset, length: length)!))
            return 0
        }
        settings.pointee.on_message_complete = { p in
            HTTPRequestParser.parser(p).events.append(.end)
            return 0
        }
        return settings
    }()

    private func headComplete(_ p: UnsafeMutablePointer<llhttp_t>) {
        let code = Int(p.pointee.method)
        let (name, method) = code < Self.methods.count ? Self.methods[code] : Self.method(code)
        let flags = UInt32(p.pointee.flags)
        var expectsContinue = false
        for pair in headers where pair.name.utf8.count == 6 && RawResponse.equalsIgnoringCase(pair.name, "expect") {
            expectsContinue = RawResponse.equalsIgnoringCase(pair.value, "100-continue")
            break
        }
        // The list goes with the head (emptying it in place would copy it); the target's
        // bytes are reused.
        let fields = headers
        headers = []
        let head = ParsedRequestHead(
            methodName: name, target: target.take { String(decoding: $0, as: UTF8.self) }, headers: fields,
            method: method, version: HTTPVersion(major: Int(p.pointee.http_major), minor: Int(p.pointee.http_minor)),
            isKeepAlive: c_nio_llhttp_should_keep_alive(p) == 1,
            contentLength: flags & F_CONTENT_LENGTH.rawValue != 0 ? p.pointee.content_length : nil,
            expectsContinue: expectsContinue)
        events.append(.head(head))
    }

    /// llhttp's HTTP methods by number (0 to 46, DELETE to QUERY), with their names made once:
    /// a request's method is then an index, not a string to allocate and compare.
    private static let methods: [(String, HTTPMethod)] = (0...46).map(method)

    /// A method's name, for a number the parser gave (`c_nio_llhttp_method_name` aborts on others).
    private static func method(_ code: Int) -> (String, HTTPMethod) {
        let name = String(cString: c_nio_llhttp_method_name(llhttp_method_t(UInt32(code))))
        return (name, HTTPMethod(rawValue: name))
    }
}

/// A piece of a request head being read. llhttp hands most pieces over in one call, pointing
/// into the bytes being parsed: such a piece is only pointed at until it is complete, within
/// the same `feed`. A piece handed over in several calls, or not complete when the bytes go,
/// is copied. Copying every piece, and emptying the copies, was about a tenth of the parser's
/// instructions.
private struct PieceBytes {
    /// The piece, in the bytes being parsed, while it came in one call.
    private var span: UnsafeBufferPointer<UInt8>?
    /// The piece's bytes, copied, when it did not (empty otherwise: a piece is one or the other).
    private var gathered: [UInt8] = []

    mutating func add(_ bytes: UnsafeBufferPointer<UInt8>) {
        if span == nil && gathered.isEmpty {
            span = bytes
            return
        }
        keep()
        gathered.append(contentsOf: bytes)
    }

    /// Copies a piece begun in the bytes being parsed out of them, before they go.
    mutating func keep() {
        guard let span else { return }
        gathered.append(contentsOf: span)
        self.span = nil
    }

    /// Hands the piece to `body` and empties it.
    mutating func take<R>(_ body: (UnsafeBufferPointer<UInt8>) -> R) -> R {
        guard !gathered.isEmpty else {
            defer { span = nil }
            return body(span ?? UnsafeBufferPointer(start: nil, count: 0))
        }
        defer { gathered.removeAll(keepingCapacity: true) }
        return gathered.withUnsafeBufferPointer(body)
    }
}
