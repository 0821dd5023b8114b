import Foundation
import NIOCore
import NIOEmbedded
import NIOHTTP1
import XCTest
@testable import Swoop

/// `HTTPRequestParser` frames requests in the reactor instead of NIO's decoder (llhttp): for
/// well-formed streams cut anywhere, it must give what NIO's decoder gave; what it refuses
/// must be refused, whatever the cut.
final class HTTPRequestParserTests: XCTestCase {
    /// One request as either parser saw it.
    private struct Seen: Equatable, CustomStringConvertible {
        var method: String
        var uri: String
        var version: String
        var keepAlive: Bool
        var fields: [String]
        var body: [UInt8]

        var description: String { "\(method) \(uri) \(version) keepAlive=\(keepAlive) \(fields) body=\(body.count)" }
    }

    private func ours(_ cuts: [[UInt8]], maxHead: Int = 32 * 1024) throws -> [Seen] {
        var parser = HTTPRequestParser(maxHeadBytes: maxHead)
        var seen: [Seen] = []
        for cut in cuts {
            parser.append(ByteBuffer(bytes: cut))
            while let event = try parser.next() {
                switch event {
                case .head(let head):
                    var fields: [String] = []
                    head.forEachField { name, value in
                        fields.append(String(decoding: name, as: UTF8.self) + ": " + String(decoding: value, as: UTF8.self))
                    }
                    seen.append(Seen(method: head.method.rawValue, uri: head.uri,
                                     version: "\(head.version.major).\(head.version.minor)",
                                     keepAlive: head.isKeepAlive, fields: fields, body: []))
                case .body(let part):
                    seen[seen.count - 1].body += part.readableBytesView
                case .end:
                    break
                }
            }
        }
        XCTAssertFalse(parser.hasBuffered, "every byte was taken")
        return seen
    }

    private func nios(_ cuts: [[UInt8]]) throws -> [Seen] {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .dropBytes)))
        defer { _ = try? channel.finish() }
        var seen: [Seen] = []
        for cut in cuts {
            try channel.writeInbound(ByteBuffer(bytes: cut))
            while let part = try channel.readInbound(as: HTTPServerRequestPart.self) {
                switch part {
                case .head(let head):
                    seen.append(Seen(method: head.method.rawValue, uri: head.uri,
                                     version: "\(head.version.major).\(head.version.minor)",
                                     keepAlive: head.isKeepAlive,
                                     // llhttp keeps the spaces after a value; RFC 9112 §5 leaves them out, as ours does.
                                     fields: head.headers.map { "\($0.name): \($0.value.trimmingCharacters(in: .whitespaces))" },
                                     body: []))
                case .body(let part):
                    seen[seen.count - 1].body += part.readableBytesView
                case .end:
                    break
                }
            }
        }
        return seen
    }

    private func cut(_ bytes: [UInt8], _ rng: inout SystemRandomNumberGenerator) -> [[UInt8]] {
        var cuts: [[UInt8]] = []
        var rest = bytes[...]
        while !rest.isEmpty {
            let n = Int.random(in: 1...max(1, min(rest.count, Bool.random(using: &rng) ? 7 : 300)), using: &rng)
            cuts.append(Array(rest.prefix(n)))
            rest = rest.dropFirst(n)
        }
        return cuts
    }

    /// A random well-formed request: method, target, version, fields in any case, a body by
    /// length or in chunks (with extensions and trailers), or none.
    /// Only the last request of a stream may end the connection (NIO refuses what follows).
    private func request(_ rng: inout SystemRandomNumberGenerator, last: Bool) -> [UInt8] {
        let method = ["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"].randomElement(using: &rng)!
        let target = method == "OPTIONS" ? "*" : ["/", "/a/b?x=1&y=%20", "/long/" + String(repeating: "p", count: Int.random(in: 0...200, using: &rng)),
                      "http://example.com/x"].randomElement(using: &rng)!
        let minor = Int.random(in: 0...1, using: &rng)
        let eol = "\r\n"
        var text = "\(method) \(target) HTTP/1.\(minor)\r\n"
        for i in 0..<Int.random(in: 0...6, using: &rng) {
            let name = ["Host", "X-Thing-\(i)", "accept", "COOKIE", "User-Agent"].randomElement(using: &rng)!
            let value = ["v", "  spaced  ", "", "a, b;q=1", "tab\tinside", "üñí"].randomElement(using: &rng)!
            text += "\(name):\(value)\(eol)"
        }
        switch Int.random(in: 0...3, using: &rng) {
        case 0 where last: text += "Connection: close\(eol)"
        case 1: text += "connection: Keep-Alive, Upgrade-Insecure\(eol)"
        default: if minor == 0 && !last { text += "Connection: keep-alive\(eol)" }
        }
        let body = (0..<Int.random(in: 0...3000, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
        var bytes: [UInt8]
        switch Int.random(in: 0...2, using: &rng) {
        case 0 where minor == 1:
            bytes = Array((text + "Transfer-Encoding: chunked\(eol)\(eol)").utf8)
            var rest = body[...]
            while !rest.isEmpty {
                let n = Int.random(in: 1...rest.count, using: &rng)
                let ext = Bool.random(using: &rng) ? ";name=value" : ""
                bytes += Array("\(String(n, radix: 16, uppercase: Bool.random(using: &rng)))\(ext)\r\n".utf8)
                    + rest.prefix(n) + Array("\r\n".utf8)
                rest = rest.dropFirst(n)
            }
            bytes += Array((Bool.random(using: &rng) ? "0\r\nX-Trailer: t\r\n\r\n" : "0\r\n\r\n").utf8)
        case 1:
            bytes = Array((text + "Content-Length: \(body.count)\(eol)\(eol)").utf8) + body
        default:
            bytes = Array((text + eol).utf8)
        }
        return bytes
    }

    func testStreamsCutAnywhereComeOutAsNIOsDecoderGaveThem() throws {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<300 {
            var stream: [UInt8] = Bool.random(using: &rng) ? Array("\r\n".utf8) : []  // tolerated before a request
            let count = Int.random(in: 1...4, using: &rng)
            for i in 0..<count { stream += request(&rng, last: i == count - 1) }
            let cuts = cut(stream, &rng)
            let expected: [Seen]
            do { expected = try nios(cuts) } catch {
                return XCTFail("NIO refused \(String(decoding: stream.prefix(400), as: UTF8.self).debugDescription): \(error)")
            }
            XCTAssertFalse(expected.isEmpty)
            XCTAssertEqual(try ours(cuts), expected, "for \(String(decoding: stream.prefix(300), as: UTF8.self).debugDescription)")
        }
    }

    func testWhatItRefusesWhateverTheCut() throws {
        let refused: [(String, HTTPRequestError)] = [
            ("GARBAGE\r\n\r\n", .malformed("bad method")),
            (" GET / HTTP/1.1\r\n\r\n", .malformed("bad method")),
            ("GET  / HTTP/1.1\r\n\r\n", .malformed("bad request target")),
            ("GET /\u{1}x HTTP/1.1\r\n\r\n", .malformed("bad request target")),
            ("GET / HTTP/2.0\r\n\r\n", .malformed("not HTTP/1.x")),
            ("GET / HTTP/1.1 \r\n\r\n", .malformed("not HTTP/1.x")),
            ("GET / HTTP/1.1\r\nHost: t\r\nBad Header Line\r\n\r\n", .malformed("bad header line")),
            ("GET / HTTP/1.1\r\nHost : t\r\n\r\n", .malformed("bad header line")),
            ("GET / HTTP/1.1\r\nX-A: 1\r\n folded\r\n\r\n", .malformed("bad header line")),
            ("GET / HTTP/1.1\r\nX-A: a\u{0}b\r\n\r\n", .malformed("control character in a header value")),
            ("GET / HTTP/1.1\r\nX-A: a\rb\r\n\r\n", .malformed("control character in a header value")),
            ("GET / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello", .malformed("Content-Length twice")),
            ("GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", .malformed("bad Content-Length")),
            ("GET / HTTP/1.1\r\nContent-Length: 1,1\r\n\r\n", .malformed("bad Content-Length")),
            ("GET / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n", .malformed("bad Content-Length")),
            ("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", .malformed("unsupported Transfer-Encoding")),
            ("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
             .malformed("both Content-Length and Transfer-Encoding")),
            ("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n", .malformed("bad chunk size")),
            ("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3x\r\n", .malformed("bad chunk size")),
            ("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n", .malformed("chunk size too large")),
            ("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n", .malformed("chunk data longer than its size")),
            ("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\n", .malformed("chunk data longer than its size")),
            ("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n", .malformed("a line ends with LF alone")),
            ("GET / HTTP/1.1\nHost: t\r\n\r\n", .malformed("a line ends with LF alone")),
            ("GET / HTTP/1.1\r\nHost: t\n\n", .malformed("a line ends with LF alone")),
            ("GET / HTTP/1.1\r\nX-A: 1\r\n\n", .malformed("a line ends with LF alone")),
        ]
        var rng = SystemRandomNumberGenerator()
        for (text, error) in refused {
            for _ in 0..<20 {
                XCTAssertThrowsError(try ours(cut(Array(text.utf8), &rng)), text.debugDescription) { thrown in
                    XCTAssertEqual(thrown as? HTTPRequestError, error, text.debugDescription)
                }
            }
        }
    }

    func testAHeadOverTheLimitIsRefusedBeforeItEnds() throws {
        let limit = 1000
        let start = "GET / HTTP/1.1\r\nX-Big: "
        let fits = start + String(repeating: "b", count: limit - start.utf8.count - 2) + "\r\n\r\n"
        XCTAssertEqual(try ours([Array(fits.utf8)], maxHead: limit).count, 1)
        // No blank line yet, and already too long: refused without waiting for the rest.
        let endless = Array((start + String(repeating: "b", count: limit)).utf8)
        var parser = HTTPRequestParser(maxHeadBytes: limit)
        parser.append(ByteBuffer(bytes: endless))
        XCTAssertThrowsError(try parser.next()) { XCTAssertEqual($0 as? HTTPRequestError, .headTooLarge(limit: limit)) }
        // Fed a byte at a time, each byte is looked at once (the scan resumes where it stopped).
        var slow = HTTPRequestParser(maxHeadBytes: limit)
        var thrown: Error?
        for byte in endless {
            slow.append(ByteBuffer(bytes: [byte]))
            do { _ = try slow.next() } catch { thrown = error; break }
        }
        XCTAssertEqual(thrown as? HTTPRequestError, .headTooLarge(limit: limit))
    }

    func testFactsTheReactorNeeds() throws {
        func head(_ text: String) throws -> RequestHead { try RequestHead(parsing: ByteBuffer(string: text)) }
        let post = try head("POST /up HTTP/1.1\r\ncontent-length: 42\r\nEXPECT: 100-Continue\r\n\r\n")
        XCTAssertEqual(post.contentLength, 42)
        XCTAssertTrue(post.expectsContinue)
        XCTAssertTrue(post.isKeepAlive)
        XCTAssertFalse(post.isChunked)
        XCTAssertEqual(post.method, .POST)
        XCTAssertEqual(post.uri, "/up")
        XCTAssertFalse(try head("GET / HTTP/1.0\r\n\r\n").isKeepAlive)
        XCTAssertTrue(try head("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").isKeepAlive)
        XCTAssertFalse(try head("GET / HTTP/1.1\r\nConnection: upgrade, CLOSE\r\n\r\n").isKeepAlive)
        XCTAssertTrue(try head("POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n").isChunked)
        XCTAssertEqual(try head("PURGE /x HTTP/1.1\r\n\r\n").method, .RAW(value: "PURGE"))
    }
}
