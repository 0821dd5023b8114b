import NIOCore
import NIOHTTP1
import XCTest
@testable import Swoop

/// `HTTPRequestParser`: llhttp's events as the session takes them, whatever the reads.
final class HTTPRequestParserTests: XCTestCase {
    /// A request in the form the assertions compare: head fields, body, end, in order.
    private enum Seen: Equatable {
        case head(method: String, target: String, version: String, headers: [String], keepAlive: Bool,
                  length: UInt64?, expectsContinue: Bool)
        case body(String)
        case end
    }

    private func seen(_ events: [HTTPRequestEvent]) -> [Seen] {
        events.map { event in
            switch event {
            case .head(let head):
                return .head(method: head.wire.method, target: head.wire.target,
                             version: "\(head.version.major).\(head.version.minor)",
                             headers: head.wire.headers.map { "\($0.name)=\($0.value)" }, keepAlive: head.isKeepAlive,
                             length: head.contentLength, expectsContinue: head.expectsContinue)
            case .body(let part): return .body(String(buffer: part))
            case .end: return .end
            }
        }
    }

    /// Parses `text` cut into reads at `cuts`; the body parts are joined, as a split read
    /// splits them.
    private func parse(_ text: String, cuts: [Int] = []) throws -> [Seen] {
        let parser = HTTPRequestParser()
        let bytes = Array(text.utf8)
        var found: [Seen] = []
        var start = 0
        for end in cuts + [bytes.count] where end >= start {
            var events: [HTTPRequestEvent] = []
            try parser.feed(ByteBuffer(bytes: bytes[start..<end])) { events.append($0) }
            found += seen(events)
            start = end
        }
        var joined: [Seen] = []
        for item in found {
            if case .body(let more) = item, case .body(let before)? = joined.last {
                joined[joined.count - 1] = .body(before + more)
            } else {
                joined.append(item)
            }
        }
        return joined
    }

    func testARequestComesOutTheSameWhereverTheReadsEnd() throws {
        let text = "POST /form?a=1 HTTP/1.1\r\nHost: example\r\nX-Trail:  padded \t\r\nContent-Length: 5\r\n\r\nhello"
        let expected: [Seen] = [
            .head(method: "POST", target: "/form?a=1", version: "1.1",
                  headers: ["Host=example", "X-Trail=padded", "Content-Length=5"], keepAlive: true, length: 5,
                  expectsContinue: false),
            .body("hello"), .end,
        ]
        XCTAssertEqual(try parse(text), expected)
        for cut in 1..<text.utf8.count {
            XCTAssertEqual(try parse(text, cuts: [cut]), expected, "cut at \(cut)")
        }
        XCTAssertEqual(try parse(text, cuts: Array(1..<text.utf8.count)), expected, "a byte per read")
    }

    func testPipelinedAndChunkedRequestsInOneRead() throws {
        let text = "GET /a HTTP/1.1\r\n\r\n"
            + "PUT /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
            + "HEAD /c HTTP/1.0\r\n\r\n"
        XCTAssertEqual(try parse(text), [
            .head(method: "GET", target: "/a", version: "1.1", headers: [], keepAlive: true, length: nil, expectsContinue: false),
            .end,
            .head(method: "PUT", target: "/b", version: "1.1", headers: ["Transfer-Encoding=chunked"], keepAlive: true,
                  length: nil, expectsContinue: false),
            .body("abcde"), .end,
            .head(method: "HEAD", target: "/c", version: "1.0", headers: [], keepAlive: false, length: nil,
                  expectsContinue: false),
            .end,
        ])
    }

    func testKeepAliveExpectContinueAndMethods() throws {
        let old = try parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        guard case .head(_, _, _, _, let oldKeepAlive, _, _)? = old.first else { return XCTFail("\(old)") }
        XCTAssertTrue(oldKeepAlive, "HTTP/1.0 with keep-alive")
        let closing = try parse("GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
        guard case .head(_, _, _, _, let closingKeepAlive, _, _)? = closing.first else { return XCTFail("\(closing)") }
        XCTAssertFalse(closingKeepAlive)
        let expecting = try parse("POST / HTTP/1.1\r\nEXPECT: 100-Continue\r\nContent-Length: 2\r\n\r\n")
        guard case .head(_, _, _, _, _, let length, let expects)? = expecting.first else { return XCTFail("\(expecting)") }
        XCTAssertEqual(length, 2)
        XCTAssertTrue(expects)
        for method in ["DELETE", "OPTIONS", "PATCH", "PROPFIND", "QUERY"] {
            let found = try parse("\(method) / HTTP/1.1\r\n\r\n")
            guard case .head(let name, _, _, _, _, _, _)? = found.first else { return XCTFail("\(found)") }
            XCTAssertEqual(name, method)
        }
    }

    func testEmptyValuesAndFieldsOfTheNextRequestStayApart() throws {
        let found = try parse("GET /a HTTP/1.1\r\nX-Empty:\r\nX-Spaces:   \r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nY: 2\r\n\r\n",
                              cuts: [20, 44])
        XCTAssertEqual(found, [
            .head(method: "GET", target: "/a", version: "1.1", headers: ["X-Empty=", "X-Spaces=", "Host=a"], keepAlive: true,
                  length: nil, expectsContinue: false),
            .end,
            .head(method: "GET", target: "/b", version: "1.1", headers: ["Y=2"], keepAlive: true, length: nil,
                  expectsContinue: false),
            .end,
        ])
    }

    func testAnUpgradeRequestIsTakenAsAPlainOneAndTheNextIsParsed() throws {
        let found = try parse("GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nGET /next HTTP/1.1\r\n\r\n")
        XCTAssertEqual(found.count, 4, "\(found)")
        guard case .head(_, let target, _, _, _, _, _) = found[2] else { return XCTFail("\(found)") }
        XCTAssertEqual(target, "/next")
    }

    func testMalformedBytesThrowAndKeepThrowing() throws {
        for garbage in ["GARBAGE\r\n\r\n", "GET / HTTP/1.1\r\nBad Header Line\r\n\r\n",
                        "GET / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\n",
                        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n"] {
            let parser = HTTPRequestParser()
            XCTAssertThrowsError(try parser.feed(ByteBuffer(string: garbage)) { _ in }, garbage) { error in
                XCTAssertEqual((error as? HTTPParseError)?.headTooLarge, false)
            }
            XCTAssertThrowsError(try parser.feed(ByteBuffer(string: "GET / HTTP/1.1\r\n\r\n")) { _ in }, "after \(garbage)")
        }
    }

    func testTheEventsBeforeAnErrorAreHandedOver() throws {
        let parser = HTTPRequestParser()
        var before: [HTTPRequestEvent] = []
        XCTAssertThrowsError(try parser.feed(ByteBuffer(string: "GET /ok HTTP/1.1\r\n\r\nNOT HTTP\r\n\r\n")) { before.append($0) })
        XCTAssertEqual(seen(before).count, 2, "the head and end of the first request")
    }

    func testAHeadOverTheLimitIsTooLargeAtAnyCut() throws {
        let big = "GET / HTTP/1.1\r\nX-Big: \(String(repeating: "b", count: HTTPRequestParser.maxHeadBytes))\r\n\r\n"
        for cuts in [[], [100], Array(stride(from: 1000, to: big.utf8.count, by: 1000))] {
            let parser = HTTPRequestParser()
            let bytes = Array(big.utf8)
            var start = 0
            var thrown: Error?
            for end in cuts + [bytes.count] {
                do { try parser.feed(ByteBuffer(bytes: bytes[start..<end])) { _ in } } catch { thrown = error; break }
                start = end
            }
            XCTAssertEqual((thrown as? HTTPParseError)?.headTooLarge, true, "cuts \(cuts.count)")
        }
        // Just under the limit passes.
        let fits = "GET / HTTP/1.1\r\nX-Big: \(String(repeating: "b", count: HTTPRequestParser.maxHeadBytes - 100))\r\n\r\n"
        XCTAssertEqual(try parse(fits).count, 2)
    }
}
