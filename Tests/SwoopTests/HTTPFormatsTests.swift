import NIOCore
import XCTest
@testable import Swoop

/// The pure parts of HTTP: query and form decoding, cookies, the Date header, and how a
/// worker's `Request` is built from the wire head.
final class HTTPFormatsTests: XCTestCase {
    func testFormDecoding() {
        XCTAssertEqual(URLEncoding.parseForm("a=1&b=x+y&c=%2F%c3%A9&flag&=nokey&&a=2"),
                       ["a": "2", "b": "x y", "c": "/é", "flag": ""])
        XCTAssertEqual(URLEncoding.parseForm("bad=%zz%4"), ["bad": "%zz%4"], "a malformed escape is kept")
        XCTAssertEqual(URLEncoding.decode("a+b%20c", plusIsSpace: false), "a+b c")
        XCTAssertEqual(URLEncoding.parseForm(""), [:])
    }

    func testCookies() {
        XCTAssertEqual(CookieHeader.parse(["a=1; b=\"two\";c=%20x", "a=ignored; d="]),
                       ["a": "1", "b": "two", "c": " x", "d": ""])
        XCTAssertEqual(CookieHeader.parse([";;  ; =x"]), [:])
    }

    func testDateIsIMFFixdate() {
        var epoch: time_t = 784_111_777
        XCTAssertEqual(HTTPDate.format(&epoch), "Sun, 06 Nov 1994 08:49:37 GMT")
        XCTAssertEqual(HTTPDate.now().count, 29)
    }

    func testRequestFromTheWire() {
        let head = HTTPWireHead(method: "POST", target: "/path/x%20y?q=1&r=a+b", versionMajor: 1, versionMinor: 1,
                                headers: [.init(name: "Host", value: "example.com"),
                                          .init(name: "Content-Type", value: "application/x-www-form-urlencoded; charset=utf-8"),
                                          .init(name: "Cookie", value: "s=abc"),
                                          .init(name: "X-Twice", value: "1"), .init(name: "X-Twice", value: "2")])
        let request = Request(wire: head, body: ByteBuffer(string: "name=Jo+Doe"), connection: ConnectionID(9), reactorId: 1)
        XCTAssertEqual(request.method, .post)
        XCTAssertEqual(request.head.authority, "example.com")
        XCTAssertEqual(request.path, "/path/x%20y")
        XCTAssertEqual(request.queryString, "q=1&r=a+b")
        XCTAssertEqual(request.query, ["q": "1", "r": "a b"])
        XCTAssertEqual(request.cookies, ["s": "abc"])
        XCTAssertEqual(request.form, ["name": "Jo Doe"])
        XCTAssertEqual(request.headers[values: HTTPField.Name("X-Twice")!], ["1", "2"])
        XCTAssertEqual(request.version, "1.1")
    }

    /// The head is built on first use; a copy reads the same one, and a handler's own head
    /// replaces it for that copy alone.
    func testRequestHeadIsBuiltOnceAndCanBeReplaced() {
        let head = HTTPWireHead(method: "GET", target: "/a?b=1", versionMajor: 1, versionMinor: 0,
                                headers: [.init(name: "host", value: "h:1"), .init(name: "COOKIE", value: "x=1"),
                                          .init(name: "cookie", value: "y=2; x=3"), .init(name: "Accept", value: "*/*")])
        var request = Request(wire: head, body: ByteBuffer(), connection: ConnectionID(1), reactorId: 0)
        let copy = request
        XCTAssertEqual(request.method, .get)
        XCTAssertEqual(request.cookies, ["x": "1", "y": "2"])
        XCTAssertEqual(request.form, [:])
        XCTAssertEqual(request.head.path, "/a?b=1")
        XCTAssertEqual(copy.head.authority, "h:1")
        XCTAssertEqual(copy.headers[.accept], "*/*")
        XCTAssertEqual(copy.headers.count, 3)

        request.head = HTTPRequest(method: .post, scheme: nil, authority: "other", path: "/z")
        XCTAssertEqual(request.method, .post)
        XCTAssertEqual(request.head.authority, "other")
        XCTAssertEqual(copy.method, .get)
        XCTAssertEqual(copy.head.authority, "h:1")
        XCTAssertEqual(request.version, "1.0")
    }

    /// Query, cookies, form and version are parsed on first use; a copy changed afterwards
    /// keeps what it was given, and the request it was copied from keeps its own.
    func testDerivedFieldsAreMadeOnFirstUseAndSetPerCopy() {
        let head = HTTPWireHead(method: "GET", target: "/p?a=1", versionMajor: 1, versionMinor: 1,
                                headers: [.init(name: "Cookie", value: "c=0")])
        let original = Request(wire: head, body: ByteBuffer(), connection: ConnectionID(2), reactorId: 0)
        XCTAssertEqual(original.query, ["a": "1"])
        var changed = original
        changed.query = ["b": "2"]
        changed.queryString = "b=2"
        changed.cookies = ["c": "3"]
        changed.form = ["f": "4"]
        changed.version = "2"
        XCTAssertEqual(original.query, ["a": "1"])
        XCTAssertEqual(original.queryString, "a=1")
        XCTAssertEqual(original.cookies, ["c": "0"])
        XCTAssertEqual(original.form, [:])
        XCTAssertEqual(original.version, "1.1")
        let copyOfChanged = changed
        XCTAssertEqual(copyOfChanged.query, ["b": "2"])
        XCTAssertEqual(copyOfChanged.queryString, "b=2")
        XCTAssertEqual(copyOfChanged.cookies, ["c": "3"])
        XCTAssertEqual(copyOfChanged.form, ["f": "4"])
        XCTAssertEqual(copyOfChanged.version, "2")
        XCTAssertEqual(copyOfChanged.path, "/p")
    }

    func testMediaTypes() {
        XCTAssertEqual(MediaType.guess("/a/b/index.HTML"), "text/html; charset=utf-8")
        XCTAssertEqual(MediaType.guess("/a/b.c/noext"), "application/octet-stream")
        XCTAssertEqual(MediaType.guess("x.json"), "application/json")
    }
}
