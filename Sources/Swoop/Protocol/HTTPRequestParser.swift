#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOHTTP1

/// Why a request cannot be read: the session answers 400 (431 for an oversized head) and
/// closes, as the rest of the stream cannot be told apart from the next request.
enum HTTPRequestError: Error, Equatable, CustomStringConvertible {
    case malformed(String)
    case headTooLarge(limit: Int)

    var description: String {
        switch self {
        case .malformed(let why): return "malformed HTTP request: \(why)"
        case .headTooLarge(let limit): return "HTTP request head longer than \(limit) bytes"
        }
    }
}

/// A request head as the reactor frames it, Swoole's way: its bytes as received (the request
/// line and header lines, through the blank line), which go to the worker as they are, and
/// the few facts the reactor needs to frame the body and the response. The worker reads the
/// header fields from the same bytes (``forEachField(_:)``).
struct RequestHead: Sendable, Equatable {
    /// The request line and the header lines, through the blank line that ends them.
    private(set) var bytes: ByteBuffer
    var method: HTTPMethod
    var version: HTTPVersion
    /// Whether the connection stays open after the response (the version's default, or its
    /// `Connection` header).
    var isKeepAlive: Bool
    /// The body's length when the request says it with `Content-Length`.
    var contentLength: Int?
    /// The body comes in chunks (`Transfer-Encoding: chunked`).
    var isChunked: Bool
    /// The client waits for `100 Continue` before it sends the body.
    var expectsContinue: Bool
    /// The worker may answer with bytes it encodes itself (`IPCMessage.httpRaw`): set by the
    /// session when no compressor has to see the response.
    var answersRaw = false
    /// Where the target lies in `bytes`, from their start.
    private var targetStart: Int
    private var targetEnd: Int

    /// The request target as sent (path and query, not percent-decoded).
    var uri: String {
        bytes.getString(at: bytes.readerIndex + targetStart, length: targetEnd - targetStart) ?? ""
    }

    /// Reads a head from `bytes`, which end with its blank line. Throws when it is not
    /// HTTP/1.x: the request line is not `METHOD target HTTP/1.x`, a field is not
    /// `name: value` (names are tokens; values have no control characters but tab; no line
    /// folding), or the body's framing is ambiguous (`Content-Length` twice, or with
    /// `Transfer-Encoding`, or a transfer coding other than chunked).
    init(parsing bytes: ByteBuffer) throws {
        self.bytes = bytes
        var facts = HeadFacts()
        try bytes.withUnsafeReadableBytes { try facts.read($0) }
        method = facts.method
        version = HTTPVersion(major: 1, minor: facts.minor)
        targetStart = facts.targetStart
        targetEnd = facts.targetEnd
        contentLength = facts.contentLength
        isChunked = facts.chunked
        expectsContinue = facts.expectsContinue
        isKeepAlive = facts.minor >= 1 ? !facts.close : (facts.keepAlive && !facts.close)
    }

    /// A head the reactor read, as the worker link carries it: the bytes and the facts the
    /// worker needs (the body is whole by then), so that it does not read the head twice.
    /// Throws when the facts do not fit the bytes (a damaged frame).
    init(bytes: ByteBuffer, minor: Int, isKeepAlive: Bool, target: Range<Int>, answersRaw: Bool) throws {
        guard target.lowerBound >= 2, target.upperBound <= bytes.readableBytes, !target.isEmpty, (0...9).contains(minor) else {
            throw HTTPRequestError.malformed("a head whose facts do not fit its bytes")
        }
        self.bytes = bytes
        method = bytes.withUnsafeReadableBytes { HeadFacts.method(UnsafeRawBufferPointer(rebasing: $0[..<(target.lowerBound - 1)])) }
        version = HTTPVersion(major: 1, minor: minor)
        self.isKeepAlive = isKeepAlive
        targetStart = target.lowerBound
        targetEnd = target.upperBound
        contentLength = nil
        isChunked = false
        expectsContinue = false
        self.answersRaw = answersRaw
    }

    /// The target's place in ``bytes``, for the worker link.
    var targetRange: Range<Int> { targetStart..<targetEnd }

    /// Calls `body` with each header field's name and value (without the spaces around the
    /// value), in the order received.
    func forEachField(_ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Void) rethrows {
        try bytes.withUnsafeReadableBytes { all in
            var lines = HeadLines(all)
            _ = lines.next()  // the request line
            while let line = lines.next(), !line.isEmpty {
                guard let colon = lines.find(UInt8(ascii: ":"), in: line) else { continue }
                try body(lines.bytes(line.lowerBound..<colon), lines.bytes(lines.trimmed(colon + 1..<line.upperBound)))
            }
        }
    }

    /// Equal as the worker sees them (the body's framing is done by then, and not carried).
    static func == (a: RequestHead, b: RequestHead) -> Bool {
        a.bytes == b.bytes && a.answersRaw == b.answersRaw && a.method == b.method && a.version == b.version
            && a.isKeepAlive == b.isKeepAlive && a.targetRange == b.targetRange
    }

    /// The head as NIO's type, for the paths that take one (static files, the compressor).
    func nioHead() -> HTTPRequestHead {
        var headers = HTTPHeaders()
        forEachField { name, value in
            headers.add(name: String(decoding: name, as: UTF8.self), value: String(decoding: value, as: UTF8.self))
        }
        return HTTPRequestHead(version: version, method: method, uri: uri, headers: headers)
    }
}

/// The lines of a head, as ranges of its bytes: each without its line end (CRLF; the parser
/// refuses a bare LF, but the worker's decoder may meet one in a damaged frame).
private struct HeadLines {
    let all: UnsafeRawBufferPointer
    var position = 0

    init(_ all: UnsafeRawBufferPointer) { self.all = all }

    mutating func next() -> Range<Int>? {
        guard position < all.count, let lf = find(UInt8(ascii: "\n"), in: position..<all.count) else { return nil }
        let start = position
        position = lf + 1
        return start..<(lf > start && all[lf - 1] == UInt8(ascii: "\r") ? lf - 1 : lf)
    }

    func find(_ byte: UInt8, in range: Range<Int>) -> Int? {
        guard !range.isEmpty, let found = memchr(all.baseAddress! + range.lowerBound, Int32(byte), range.count) else { return nil }
        return all.baseAddress!.distance(to: UnsafeRawPointer(found))
    }

    /// Without the spaces and tabs around it.
    func trimmed(_ range: Range<Int>) -> Range<Int> {
        var start = range.lowerBound, end = range.upperBound
        while start < end && (all[start] == 0x20 || all[start] == 0x09) { start += 1 }
        while end > start && (all[end - 1] == 0x20 || all[end - 1] == 0x09) { end -= 1 }
        return start..<end
    }

    func bytes(_ range: Range<Int>) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: all[range])
    }

    func all(in range: Range<Int>, _ test: (UInt8) -> Bool) -> Bool {
        var i = range.lowerBound
        while i < range.upperBound {
            guard test(all[i]) else { return false }
            i += 1
        }
        return true
    }
}

/// What the reactor learns from a head, read in one pass.
private struct HeadFacts {
    var method = HTTPMethod.GET
    var minor = 1
    var targetStart = 0, targetEnd = 0
    var contentLength: Int?
    var chunked = false, sawTransferEncoding = false
    var close = false, keepAlive = false
    var expectsContinue = false

    mutating func read(_ all: UnsafeRawBufferPointer) throws {
        var lines = HeadLines(all)
        guard let requestLine = lines.next() else { throw HTTPRequestError.malformed("no request line") }
        try readRequestLine(requestLine, lines)
        while let line = lines.next() {
            if line.isEmpty { break }
            try readField(line, lines)
        }
        if sawTransferEncoding && contentLength != nil {
            throw HTTPRequestError.malformed("both Content-Length and Transfer-Encoding")
        }
    }

    private mutating func readRequestLine(_ line: Range<Int>, _ lines: HeadLines) throws {
        guard let space = lines.find(0x20, in: line), space > line.lowerBound,
              lines.all(in: line.lowerBound..<space, HTTPBytes.isTokenByte) else {
            throw HTTPRequestError.malformed("bad method")
        }
        method = Self.method(lines.bytes(line.lowerBound..<space))
        guard let second = lines.find(0x20, in: space + 1..<line.upperBound), second > space + 1,
              lines.all(in: space + 1..<second, { $0 > 0x20 && $0 != 0x7F }) else {
            throw HTTPRequestError.malformed("bad request target")
        }
        targetStart = space + 1
        targetEnd = second
        let version = lines.bytes(second + 1..<line.upperBound)
        // "HTTP/1." and a digit.
        guard version.count == 8, version.loadUnaligned(as: UInt32.self) == 0x5054_5448,
              version.loadUnaligned(fromByteOffset: 4, as: UInt16.self) == 0x312F, version[6] == UInt8(ascii: "."),
              (0x30...0x39).contains(version[7]) else {
            throw HTTPRequestError.malformed("not HTTP/1.x")
        }
        minor = Int(version[7] - 0x30)
    }

    private mutating func readField(_ line: Range<Int>, _ lines: HeadLines) throws {
        guard let colon = lines.find(UInt8(ascii: ":"), in: line), colon > line.lowerBound,
              lines.all(in: line.lowerBound..<colon, HTTPBytes.isTokenByte) else {
            // Also a folded line (one that begins with a space): RFC 9112 lets a server refuse it.
            throw HTTPRequestError.malformed("bad header line")
        }
        guard lines.all(in: colon + 1..<line.upperBound, HTTPBytes.isFieldValueByte) else {
            throw HTTPRequestError.malformed("control character in a header value")
        }
        let name = lines.bytes(line.lowerBound..<colon)
        let valueRange = lines.trimmed(colon + 1..<line.upperBound)
        let value = lines.bytes(valueRange)
        switch name.count {
        case 14 where HTTPBytes.equalsIgnoringCase(name, "content-length"):
            guard contentLength == nil else { throw HTTPRequestError.malformed("Content-Length twice") }
            guard value.count > 0, value.count <= 18, value.allSatisfy({ (0x30...0x39).contains($0) }) else {
                throw HTTPRequestError.malformed("bad Content-Length")
            }
            contentLength = value.reduce(0) { $0 * 10 + Int($1 - 0x30) }
        case 17 where HTTPBytes.equalsIgnoringCase(name, "transfer-encoding"):
            // Only chunked is read; another coding's body could not be framed.
            guard !sawTransferEncoding, HTTPBytes.equalsIgnoringCase(value, "chunked") else {
                throw HTTPRequestError.malformed("unsupported Transfer-Encoding")
            }
            sawTransferEncoding = true
            chunked = true
        case 10 where HTTPBytes.equalsIgnoringCase(name, "connection"):
            var start = valueRange.lowerBound
            while start <= valueRange.upperBound {
                let end = lines.find(UInt8(ascii: ","), in: start..<valueRange.upperBound) ?? valueRange.upperBound
                let token = lines.bytes(lines.trimmed(start..<end))
                if HTTPBytes.equalsIgnoringCase(token, "close") { close = true }
                if HTTPBytes.equalsIgnoringCase(token, "keep-alive") { keepAlive = true }
                start = end + 1
            }
        case 6 where HTTPBytes.equalsIgnoringCase(name, "expect"):
            expectsContinue = HTTPBytes.equalsIgnoringCase(value, "100-continue")
        default:
            break
        }
    }

    static func method(_ name: UnsafeRawBufferPointer) -> HTTPMethod {
        if HTTPBytes.equals(name, "GET") { return .GET }
        if HTTPBytes.equals(name, "POST") { return .POST }
        if HTTPBytes.equals(name, "HEAD") { return .HEAD }
        return HTTPMethod(rawValue: String(decoding: name, as: UTF8.self))
    }
}

/// Byte tests of HTTP's grammar (RFC 9110), for what the reactor reads and what it writes.
enum HTTPBytes {
    /// tchar: the characters of a token (a method, a field name).
    static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"),
             UInt8(ascii: "'"), UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."),
             UInt8(ascii: "^"), UInt8(ascii: "_"), UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"):
            return true
        default:
            return false
        }
    }

    /// A byte a field value may hold: no control character but HTAB, no DEL.
    static func isFieldValueByte(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: "\t") || (byte >= 0x20 && byte != 0x7F)
    }

    static func equals(_ bytes: UnsafeRawBufferPointer, _ text: StaticString) -> Bool {
        bytes.elementsEqual(UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    /// `bytes` equal `lowercase`, which is lowercase ASCII, ignoring the case of letters.
    static func equalsIgnoringCase<Bytes: Collection<UInt8>>(_ bytes: Bytes, _ lowercase: StaticString) -> Bool {
        guard bytes.count == lowercase.utf8CodeUnitCount else { return false }
        var other = lowercase.utf8Start
        for byte in bytes {
            let folded = byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte | 0x20 : byte
            if folded != other.pointee { return false }
            other += 1
        }
        return true
    }

    static func hexValue(_ byte: UInt8) -> Int? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return Int(byte - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return Int(byte - UInt8(ascii: "a") + 10)
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return Int(byte - UInt8(ascii: "A") + 10)
        default: return nil
        }
    }
}

/// Cuts one connection's bytes into requests: a head (``RequestHead``), the body's parts
/// (`Content-Length` or chunked, decoded), and the end. Like `PacketReader`, parts are
/// slices of the reads that carried them; only an unfinished part is kept, until the next
/// read completes it.
///
/// It is pulled (``next()``), one event at a time, so that the session can stop between
/// requests (a response is pending) and leave the rest of the bytes unread here.
struct HTTPRequestParser {
    enum Event {
        case head(RequestHead)
        case body(ByteBuffer)
        case end
    }

    private enum State {
        /// Before a head; `scanned` bytes of it are known to hold no blank line.
        case head(scanned: Int, lineStart: Int)
        /// This many bytes of a `Content-Length` body are still to come.
        case body(remaining: Int)
        /// A chunk's size line is next.
        case chunkSize
        /// This many bytes of a chunk's data, then its line end.
        case chunkData(remaining: Int)
        case chunkDataEnd
        /// The trailer lines after the last chunk; `scanned` as for a head.
        case trailers(scanned: Int, lineStart: Int)
        /// The request's end is the next event.
        case end
    }

    private var state = State.head(scanned: 0, lineStart: 0)
    private var buffer = ByteBuffer()
    /// The longest head (and trailer section) taken.
    let maxHeadBytes: Int

    init(maxHeadBytes: Int) {
        self.maxHeadBytes = maxHeadBytes
    }

    /// Bytes are waiting that were not yet made into events.
    var hasBuffered: Bool { buffer.readableBytes > 0 }

    /// Adds what a read brought. The read itself is kept when nothing is waiting, not copied.
    mutating func append(_ bytes: ByteBuffer) {
        if buffer.readableBytes == 0 {
            buffer = bytes
        } else {
            var bytes = bytes
            buffer.writeBuffer(&bytes)
        }
    }

    /// The next event, or nil until more bytes come.
    mutating func next() throws -> Event? {
        switch state {
        case .head(let scanned, let lineStart):
            if scanned == 0 {
                // RFC 9112 §2.2: empty lines before a request line are ignored.
                while let byte = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self),
                      byte == UInt8(ascii: "\r") || byte == UInt8(ascii: "\n") {
                    buffer.moveReaderIndex(forwardBy: 1)
                }
            }
            guard let length = try blankLine(scanned: scanned, lineStart: lineStart, limit: maxHeadBytes,
                                             resume: { .head(scanned: $0, lineStart: $1) }) else { return nil }
            let head = try RequestHead(parsing: buffer.readSlice(length: length)!)
            if head.isChunked {
                state = .chunkSize
            } else if let length = head.contentLength, length > 0 {
                state = .body(remaining: length)
            } else {
                state = .end
            }
            return .head(head)
        case .body(let remaining):
            guard let (part, left) = bodyPart(remaining) else { return nil }
            state = left == 0 ? .end : .body(remaining: left)
            return .body(part)
        case .chunkSize:
            guard let size = try chunkSize() else { return nil }
            state = size == 0 ? .trailers(scanned: 0, lineStart: 0) : .chunkData(remaining: size)
            return try next()
        case .chunkData(let remaining):
            guard let (part, left) = bodyPart(remaining) else { return nil }
            state = left == 0 ? .chunkDataEnd : .chunkData(remaining: left)
            return .body(part)
        case .chunkDataEnd:
            guard let first = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) else { return nil }
            guard first == UInt8(ascii: "\r") else { throw HTTPRequestError.malformed("chunk data longer than its size") }
            guard let second = buffer.getInteger(at: buffer.readerIndex + 1, as: UInt8.self) else { return nil }
            guard second == UInt8(ascii: "\n") else { throw HTTPRequestError.malformed("chunk data longer than its size") }
            buffer.moveReaderIndex(forwardBy: 2)
            state = .chunkSize
            return try next()
        case .trailers(let scanned, let lineStart):
            // Trailer fields are read past, not passed on (as NIO's parser did with them).
            guard let length = try blankLine(scanned: scanned, lineStart: lineStart, limit: maxHeadBytes,
                                             resume: { .trailers(scanned: $0, lineStart: $1) }) else { return nil }
            buffer.moveReaderIndex(forwardBy: length)
            state = .end
            return try next()
        case .end:
            state = .head(scanned: 0, lineStart: 0)
            if buffer.readableBytes == 0 { buffer = ByteBuffer() }  // lets go of the last read
            return .end
        }
    }

    /// Up to `remaining` bytes of a body or a chunk, as a slice of the buffer, and how many
    /// are still to come; nil when no byte is here.
    private mutating func bodyPart(_ remaining: Int) -> (part: ByteBuffer, left: Int)? {
        guard buffer.readableBytes > 0 else { return nil }
        let part = buffer.readSlice(length: min(remaining, buffer.readableBytes))!
        return (part, remaining - part.readableBytes)
    }

    /// The length of the lines up to and including the first empty one, or nil (and the
    /// place to resume from saved) when none came yet.
    private mutating func blankLine(scanned: Int, lineStart: Int, limit: Int,
                                    resume: (Int, Int) -> State) throws -> Int? {
        let found: (end: Int?, scanned: Int, lineStart: Int)? = buffer.withUnsafeReadableBytes { all in
            let lines = HeadLines(all)
            var position = scanned, start = lineStart
            while position < all.count {
                guard let lf = lines.find(UInt8(ascii: "\n"), in: position..<all.count) else {
                    return (nil, all.count, start)
                }
                // Lines end with CRLF: a bare LF, which some parsers take for a line end
                // and others not, is where request smuggling begins.
                guard lf > start, all[lf - 1] == UInt8(ascii: "\r") else { return nil }
                if lf - start == 1 { return (lf + 1, lf + 1, start) }
                position = lf + 1
                start = position
            }
            return (nil, position, start)
        }
        guard let found else { throw HTTPRequestError.malformed("a line ends with LF alone") }
        if let end = found.end {
            guard end <= limit + 4 else { throw HTTPRequestError.headTooLarge(limit: limit) }
            return end
        }
        guard found.scanned <= limit else { throw HTTPRequestError.headTooLarge(limit: limit) }
        state = resume(found.scanned, found.lineStart)
        return nil
    }

    /// Reads a chunk's size line (hex digits, then extensions, which are ignored), or nil
    /// until it is whole.
    private mutating func chunkSize() throws -> Int? {
        let view = buffer.readableBytesView
        guard let lf = view.firstIndex(of: UInt8(ascii: "\n")) else {
            guard view.count <= 4096 else { throw HTTPRequestError.malformed("chunk size line too long") }
            return nil
        }
        var size = 0, digits = 0
        for byte in view[view.startIndex..<lf] {
            guard let digit = HTTPBytes.hexValue(byte) else { break }
            guard digits < 15 else { throw HTTPRequestError.malformed("chunk size too large") }
            size = size << 4 | digit
            digits += 1
        }
        guard digits > 0 else { throw HTTPRequestError.malformed("bad chunk size") }
        let after = view.index(view.startIndex, offsetBy: digits)
        let rest = view[after..<lf]
        // After the size: extensions (`;name=value`), or nothing; then CRLF.
        guard rest.last == UInt8(ascii: "\r") else { throw HTTPRequestError.malformed("a line ends with LF alone") }
        if let first = rest.first, first != UInt8(ascii: ";"), first != UInt8(ascii: " "), first != 0x09 {
            guard rest.count == 1 else { throw HTTPRequestError.malformed("bad chunk size") }
        }
        buffer.moveReaderIndex(to: lf + 1)
        return size
    }
}
