import HTTPTypes
import NIOCore
import NIOEmbedded
import NIOHTTP1
import XCTest
@testable import Swoop

/// `RawResponse` writes the common response itself: its bytes must be NIO's encoder's for
/// the head `HTTPSession` would have built, for every status it takes.
final class RawResponseTests: XCTestCase {
    private let allocator = ByteBufferAllocator()

    private func request(_ version: HTTPVersion = .http1_1, method: HTTPMethod = .GET, _ headers: [(String, String)] = []) -> HTTPRequestHead {
        HTTPRequestHead(version: version, method: method, uri: "/", headers: HTTPHeaders(headers))
    }

    /// What NIO's encoder writes for a head, a body and the end.
    private func nioBytes(_ head: HTTPResponseHead, body: String) throws -> String {
        let channel = EmbeddedChannel(handler: HTTPResponseEncoder())
        defer { _ = try? channel.finish() }
        try channel.writeOutbound(HTTPServerResponsePart.head(head))
        try channel.writeOutbound(HTTPServerResponsePart.body(.byteBuffer(ByteBuffer(string: body))))
        try channel.writeOutbound(HTTPServerResponsePart.end(nil))
        var text = ""
        while let part = try channel.readOutbound(as: IOData.self) {
            if case .byteBuffer(let buffer) = part { text += String(buffer: buffer) }
        }
        return text
    }

    private func raw(_ code: Int, _ headers: [(String, String)], body: String, request: HTTPRequestHead) -> (String, Bool)? {
        RawResponse.encode(status: code, headers: headers.map { HTTPWirePair(name: $0.0, value: $0.1) },
                           body: ByteBuffer(string: body), isHead: request.method == .HEAD,
                           version: request.version, keepAlive: request.isKeepAlive, allocator: allocator)
            .map { (String(buffer: $0.bytes), $0.close) }
    }

    private func date(in text: String) -> String {
        text.split(separator: "\r\n").first { $0.hasPrefix("Date: ") }.map { String($0.dropFirst(6)) } ?? "missing"
    }

    func testEveryStatusIsWrittenAsNIOWritesIt() throws {
        var covered = 0
        for code in 200...599 {
            let status = HTTPResponseStatus(statusCode: code)
            let result = raw(code, [("Content-Type", "text/plain")], body: "hi", request: request())
            if case .custom = status {
                XCTAssertNil(result, "\(code): an unknown status takes NIO's path")
                continue
            }
            if !status.mayHaveResponseBody {
                XCTAssertNil(result, "\(code): a status without a body takes NIO's path")
                continue
            }
            let (text, close) = try XCTUnwrap(result, "\(code)")
            XCTAssertFalse(close)
            let expected = try nioBytes(HTTPResponseHead(version: .http1_1, status: status, headers: HTTPHeaders([
                ("Content-Type", "text/plain"), ("Content-Length", "2"), ("Server", "swoop"), ("Date", date(in: text)),
            ])), body: "hi")
            XCTAssertEqual(text, expected, "\(code)")
            covered += 1
        }
        XCTAssertGreaterThan(covered, 40)
    }

    func testHeaderRulesAreHTTPSessions() throws {
        // Transfer-Encoding dropped, the handler's Content-Length replaced and moved last,
        // its Server and Date kept, its Connection kept on a keep-alive HTTP/1.1 response.
        let handler = [("Transfer-Encoding", "chunked"), ("content-length", "99"), ("Server", "mine"),
                       ("X-Thing", "a\tb"), ("Date", "yesterday"), ("Connection", "upgrade")]
        let (kept, close) = try XCTUnwrap(raw(200, handler, body: "abc", request: request()))
        XCTAssertFalse(close)
        XCTAssertEqual(kept, try nioBytes(HTTPResponseHead(version: .http1_1, status: .ok, headers: HTTPHeaders([
            ("Server", "mine"), ("X-Thing", "a\tb"), ("Date", "yesterday"), ("Connection", "upgrade"), ("Content-Length", "3"),
        ])), body: "abc"))

        // Closing: the handler's Connection header asks for it (its first one decides) …
        let (closing, closes) = try XCTUnwrap(raw(200, [("connection", "Close"), ("Connection", "keep-alive")], body: "", request: request()))
        XCTAssertTrue(closes)
        XCTAssertEqual(closing, try nioBytes(HTTPResponseHead(version: .http1_1, status: .ok, headers: HTTPHeaders([
            ("Content-Length", "0"), ("Server", "swoop"), ("Date", date(in: closing)), ("Connection", "close"),
        ])), body: ""))
        // … or the request does.
        XCTAssertEqual(raw(200, [], body: "", request: request(.http1_1, [("Connection", "close")]))?.1, true)
        XCTAssertEqual(raw(200, [], body: "", request: request(.http1_0))?.1, true, "HTTP/1.0 closes by default")

        // HTTP/1.0 keep-alive: said in the response, with a 1.0 status line.
        let (old, oldCloses) = try XCTUnwrap(raw(404, [], body: "no", request: request(.http1_0, [("Connection", "keep-alive")])))
        XCTAssertFalse(oldCloses)
        XCTAssertEqual(old, try nioBytes(HTTPResponseHead(version: .http1_0, status: .notFound, headers: HTTPHeaders([
            ("Content-Length", "2"), ("Server", "swoop"), ("Date", date(in: old)), ("Connection", "keep-alive"),
        ])), body: "no"))
    }

    func testTheMasterRefusesFieldsHTTPDoesNotAllow() {
        func fields(_ pairs: [(String, String)]) -> [HTTPWirePair] { pairs.map { HTTPWirePair(name: $0.0, value: $0.1) } }
        XCTAssertFalse(HTTPSession.hasInvalidField(fields([("Content-Type", "text/plain"), ("X-Tab", "a\tb"), ("X-UTF8", "é")])))
        XCTAssertTrue(HTTPSession.hasInvalidField(fields([("X-Split", "a\r\nInjected: yes")])))
        XCTAssertTrue(HTTPSession.hasInvalidField(fields([("X-Nul", "a\u{0}")])))
        XCTAssertTrue(HTTPSession.hasInvalidField(fields([("X-Del", "a\u{7F}")])))
        XCTAssertTrue(HTTPSession.hasInvalidField(fields([("Bad Name", "v")])))
        XCTAssertTrue(HTTPSession.hasInvalidField(fields([("Bad:Name", "v")])))
        XCTAssertTrue(HTTPSession.hasInvalidField(fields([("", "v")])))
    }

    func testWhatItLeavesToNIO() {
        XCTAssertNil(raw(200, [], body: "x", request: request(method: .HEAD)), "HEAD: NIO's encoder drops the body")
        XCTAssertNil(raw(200, [("X-Bad", "a\r\nInjected: yes")], body: "", request: request()), "CR LF in a value")
        XCTAssertNil(raw(200, [("X-Bad", "nul\u{0}")], body: "", request: request()), "NUL in a value")
        XCTAssertNil(raw(200, [("Bad Name", "v")], body: "", request: request()), "a space in a name")
        XCTAssertNil(raw(200, [("", "v")], body: "", request: request()), "an empty name")
        XCTAssertNil(raw(200, [], body: "", request: request(HTTPVersion(major: 2, minor: 0))), "not HTTP/1")
        XCTAssertNil(raw(100, [], body: "", request: request()), "an interim status")
    }

    /// The token and field-value rules, byte by byte, against RFC 9110's grammar written out.
    func testTokenAndFieldValueBytes() {
        let tchar = Set("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz".utf8)
        for byte in UInt8(0)..<128 {
            let text = String(decoding: [UInt8(ascii: "a"), byte, UInt8(ascii: "z")], as: UTF8.self)
            XCTAssertEqual(RawResponse.isToken(text), tchar.contains(byte), "byte \(byte) in a name")
            XCTAssertEqual(RawResponse.isFieldValue(text), byte == 9 || (byte >= 0x20 && byte != 0x7F), "byte \(byte) in a value")
        }
        XCTAssertFalse(RawResponse.isToken("caf\u{E9}"), "non-ASCII is no token")
        XCTAssertTrue(RawResponse.isFieldValue("caf\u{E9}"), "obs-text is allowed in a value")
        XCTAssertFalse(RawResponse.isToken(""))
        // A bridged or substring-made string may not be contiguous: the same answers.
        let long = String(repeating: "X-Custom-Header-", count: 8)
        XCTAssertTrue(RawResponse.isToken(String(long.dropFirst(2))))
    }

    /// Base mode hands the encoder the handler's own `HTTPFields` and a string body as they
    /// are: the bytes must be those of the pairs and buffer process mode sends.
    func testTheHandlersFieldsAndStringBodyEncodeAsThePairsDo() throws {
        var fields = HTTPFields()
        fields[.contentType] = "text/plain"
        fields.append(HTTPField(name: .setCookie, value: "a=1"))
        fields.append(HTTPField(name: .setCookie, value: "b=2"))
        fields[.connection] = "close"
        let pairs = fields.map { HTTPWirePair(name: $0.name.rawName, value: $0.value) }
        for body in ["", "Hello, World!", String(repeating: "x", count: 5000)] {
            let fromPairs = try XCTUnwrap(RawResponse.encode(status: 200, headers: pairs, body: ByteBuffer(string: body),
                                                            isHead: false, version: .http1_1, keepAlive: true,
                                                            allocator: allocator))
            let fromFields = try XCTUnwrap(RawResponse.encode(status: 200, headers: fields, body: body, isHead: false,
                                                             version: .http1_1, keepAlive: true, allocator: allocator))
            let expected = String(buffer: fromPairs.bytes)
            let text = String(buffer: fromFields.bytes)
            // The Date field may have turned over between the two.
            XCTAssertEqual(text.replacingOccurrences(of: date(in: text), with: ""),
                           expected.replacingOccurrences(of: date(in: expected), with: ""))
            XCTAssertTrue(text.hasSuffix("\r\n\r\n" + body))
            XCTAssertTrue(fromFields.close)
        }
    }

    /// A field's name is a token by construction and is not checked again, but its value is:
    /// a lenient one may hold a control character, which the encoder leaves to the checks of
    /// NIO's path (a 500).
    func testALenientFieldValueWithAControlCharacterIsDeclined() {
        var fields = HTTPFields()
        fields.append(HTTPField(name: HTTPField.Name("X-Odd")!, lenientValue: Array("a\u{1}b".utf8)))
        XCTAssertNil(RawResponse.encode(status: 200, headers: fields, body: "x", isHead: false, version: .http1_1,
                                        keepAlive: true, allocator: allocator))
        fields = [HTTPField.Name("X-Fine")!: "a\tb"]
        XCTAssertNotNil(RawResponse.encode(status: 200, headers: fields, body: "x", isHead: false, version: .http1_1,
                                           keepAlive: true, allocator: allocator))
    }
}
