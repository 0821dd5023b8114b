import HTTPTypes
import NIOCore
import NIOHTTP1

/// A response's header field as the encoder reads it: the handler's own `HTTPField`s in base
/// mode (no array of pairs made from them), an IPC message's pairs in process mode.
protocol WireField {
    var wireName: String { get }
    var wireValue: String { get }
    /// Whether every name is a token by construction (no need to check it again).
    static var nameIsToken: Bool { get }
}

extension HTTPWirePair: WireField {
    var wireName: String { name }
    var wireValue: String { value }
    static var nameIsToken: Bool { false }
}

extension HTTPField: WireField {
    var wireName: String { name.rawName }
    var wireValue: String { value }
    /// `HTTPField.Name` accepts tokens only. (Values are checked: a lenient one may hold
    /// a control character.)
    static var nameIsToken: Bool { true }
}

extension Collection where Element: WireField {
    /// The fields as an IPC message and NIO's encoder take them: pairs as they are, other
    /// fields copied (the cast is decided when the generic code is specialized).
    var wirePairs: [HTTPWirePair] {
        (self as? [HTTPWirePair]) ?? map { HTTPWirePair(name: $0.wireName, value: $0.wireValue) }
    }
}

/// A response body as the handler gave it. A string is written straight into the response's
/// buffer in base mode, rather than first into a buffer of its own (an allocation and a copy).
protocol WireBody {
    var byteCount: Int { get }
    /// The bytes as a buffer, for the paths that keep or transform them.
    var buffer: ByteBuffer { get }
    func put(into writer: inout ByteWriter)
    func append(to buffer: inout ByteBuffer)
}

extension ByteBuffer: WireBody {
    var byteCount: Int { readableBytes }
    var buffer: ByteBuffer { self }
    func put(into writer: inout ByteWriter) { writer.put(bytes: self) }
    func append(to buffer: inout ByteBuffer) { buffer.writeImmutableBuffer(self) }
}

extension String: WireBody {
    var byteCount: Int { utf8.count }
    var buffer: ByteBuffer { ByteBuffer(string: self) }
    func put(into writer: inout ByteWriter) { writer.put(self) }
    func append(to buffer: inout ByteBuffer) { buffer.writeString(self) }
}

/// The common HTTP response — whole, final, not to a HEAD request, not compressed — encoded
/// in one buffer by Swoop instead of NIO's response encoder.
///
/// NIO's path costs about as much as the rest of a request's handling together: the head
/// becomes an `HTTPHeaders` (each edit a case-insensitive scan), and head, body and end each
/// travel through the outbound handlers, cast back from `NIOAny` at each. Here the worker's
/// header pairs are written straight into a buffer with the body, which `HTTPSession`
/// writes past the encoder.
enum RawResponse {
    /// Encodes the response NIO's path would have written, or nil when it is not the common
    /// case (then `HTTPSession` takes NIO's path, or answers 500 for a field HTTP does not allow).
    ///
    /// The header rules are `HTTPSession`'s: Transfer-Encoding dropped, Content-Length set
    /// to the body's (replacing the handler's, and placed last), Server and Date added when
    /// the handler set none, Connection set when closing or for HTTP/1.0.
    static func encode<Fields: Collection, Body: WireBody>(
        status code: Int, headers: Fields, body: Body, isHead: Bool, version: HTTPVersion, keepAlive: Bool,
        allocator: ByteBufferAllocator
    ) -> (bytes: ByteBuffer, close: Bool)? where Fields.Element: WireField {
        // The status line's code and reason: a literal for the common ones, NIO's table for
        // the rest.
        let common = commonStatus(code)
        let status = common == nil ? HTTPResponseStatus(statusCode: code) : .ok
        if case .custom = status { return nil }
        guard common != nil || status.mayHaveResponseBody, code >= 200, !isHead else { return nil }
        let http10 = version.major == 1 && version.minor == 0
        guard http10 || (version.major == 1 && version.minor == 1) else { return nil }

        var close = !keepAlive
        var hasServer = false, hasDate = false, sawConnection = false
        // One pass for the checks and the sizes (the Connection fields' apart: they are left
        // out when the master sets its own), one to write.
        var fieldsSize = 0, connectionSize = 0
        for field in headers {
            let name = field.wireName, value = field.wireValue
            guard Fields.Element.nameIsToken || isToken(name), isFieldValue(value) else { return nil }
            let size = name.utf8.count + 2 + value.utf8.count + 2
            switch kind(of: name) {
            case .connection:
                // HTTPSession's rule: the first Connection header decides.
                if !sawConnection, equalsIgnoringCase(value, "close") { close = true }
                sawConnection = true
                connectionSize += size
            case .framing:
                break
            case .server:
                hasServer = true
                fieldsSize += size
            case .date:
                hasDate = true
                fieldsSize += size
            case .other:
                fieldsSize += size
            }
        }
        let setsConnection = close || http10

        // Sized first, then written in one go (see ByteWriter).
        let reason = common == nil ? status.reasonPhrase : ""
        let date = hasDate ? "" : HTTPDate.now()
        let length = body.byteCount
        var size = 9 + (common?.utf8CodeUnitCount ?? ByteWriter.decimalLength(code) + 1 + reason.utf8.count + 2)
        size += fieldsSize + (setsConnection ? 0 : connectionSize)
        size += 16 + ByteWriter.decimalLength(length) + 2
        if !hasServer { size += 8 + HTTPDate.serverName.utf8.count + 2 }
        if !hasDate { size += 6 + date.utf8.count + 2 }
        if close { size += 19 } else if http10 { size += 24 }
        size += 2

        // A short body goes in the same pass; a long one is appended after.
        let inline = length <= 4096
        var buffer = allocator.buffer(capacity: size + length)
        buffer.write(exactly: size + (inline ? length : 0)) { out in
            if http10 { out.put(literal: "HTTP/1.0 ") } else { out.put(literal: "HTTP/1.1 ") }
            if let common {
                out.put(literal: common)
            } else {
                out.put(decimal: code)
                out.put(literal: " ")
                out.put(reason)
                out.put(literal: "\r\n")
            }
            for field in headers {
                let name = field.wireName
                switch kind(of: name) {
                case .framing: continue
                case .connection where setsConnection: continue
                default: break
                }
                out.put(name)
                out.put(literal: ": ")
                out.put(field.wireValue)
                out.put(literal: "\r\n")
            }
            out.put(literal: "Content-Length: ")
            out.put(decimal: length)
            out.put(literal: "\r\n")
            if !hasServer {
                out.put(literal: "Server: ")
                out.put(HTTPDate.serverName)
                out.put(literal: "\r\n")
            }
            if !hasDate {
                out.put(literal: "Date: ")
                out.put(date)
                out.put(literal: "\r\n")
            }
            if close {
                out.put(literal: "Connection: close\r\n")
            } else if http10 {
                out.put(literal: "Connection: keep-alive\r\n")
            }
            out.put(literal: "\r\n")
            if inline { body.put(into: &out) }
        }
        if !inline { body.append(to: &buffer) }
        return (buffer, close)
    }

    /// The code, reason and line end of the statuses most responses have (NIO's reasons),
    /// written as one literal.
    private static func commonStatus(_ code: Int) -> StaticString? {
        switch code {
        case 200: return "200 OK\r\n"
        case 201: return "201 Created\r\n"
        case 202: return "202 Accepted\r\n"
        case 301: return "301 Moved Permanently\r\n"
        case 302: return "302 Found\r\n"
        case 303: return "303 See Other\r\n"
        case 307: return "307 Temporary Redirect\r\n"
        case 400: return "400 Bad Request\r\n"
        case 401: return "401 Unauthorized\r\n"
        case 403: return "403 Forbidden\r\n"
        case 404: return "404 Not Found\r\n"
        case 500: return "500 Internal Server Error\r\n"
        case 503: return "503 Service Unavailable\r\n"
        default: return nil
        }
    }

    /// The fields the encoding treats apart: the body's framing (Transfer-Encoding and
    /// Content-Length, which the master sets), Connection, Server and Date.
    private enum FieldKind {
        case framing, connection, server, date, other
    }

    private static func kind(of name: String) -> FieldKind {
        switch name.utf8.count {
        case 4 where equalsIgnoringCase(name, "date"): return .date
        case 6 where equalsIgnoringCase(name, "server"): return .server
        case 10 where equalsIgnoringCase(name, "connection"): return .connection
        case 14 where equalsIgnoringCase(name, "content-length"): return .framing
        case 17 where equalsIgnoringCase(name, "transfer-encoding"): return .framing
        default: return .other
        }
    }

    /// RFC 9110 token characters, the rule NIO's header validator applies to names.
    static func isToken(_ text: String) -> Bool {
        !text.utf8.isEmpty && allBytes(of: text, satisfy: isTokenByte)
    }

    /// One bit per ASCII byte, set for the token characters (ALPHA, DIGIT and
    /// ``!#$%&'*+-.^_`|~``): two shifts where a switch over the ranges took a dozen branches.
    @inline(__always)
    private static func isTokenByte(_ byte: UInt8) -> Bool {
        let low: UInt64 = 0x03ff_6cfa_0000_0000, high: UInt64 = 0x57ff_ffff_c7ff_fffe
        return byte < 64 ? (low >> UInt64(byte)) & 1 != 0 : byte < 128 && (high >> UInt64(byte &- 64)) & 1 != 0
    }

    /// A field value as NIO's validator takes it: no control character but HTAB, no DEL.
    static func isFieldValue(_ text: String) -> Bool {
        allBytes(of: text) { $0 == UInt8(ascii: "\t") || ($0 >= 0x20 && $0 != 0x7F) }
    }

    /// Checks a string's bytes in its own storage (a native string's: a plain loop over a
    /// pointer, where its UTF-8 view's iterator costs several times more per byte).
    @inline(__always)
    private static func allBytes(of text: String, satisfy test: (UInt8) -> Bool) -> Bool {
        text.utf8.withContiguousStorageIfAvailable { $0.allSatisfy(test) } ?? text.utf8.allSatisfy(test)
    }

    /// ASCII case-insensitive equality with a lower-case constant.
    static func equalsIgnoringCase(_ text: String, _ lower: StaticString) -> Bool {
        let utf8 = text.utf8
        guard utf8.count == lower.utf8CodeUnitCount else { return false }
        var index = 0
        let base = lower.utf8Start
        for byte in utf8 {
            let folded = byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte | 0x20 : byte
            if folded != base[index] { return false }
            index += 1
        }
        return true
    }
}
