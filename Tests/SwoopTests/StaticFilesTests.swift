import Foundation
import NIOCore
import NIOEmbedded
import NIOHTTP1
import NIOPosix
import XCTest

@testable import Swoop

/// A document root in a temporary directory, with a sibling holding what must never be served:
///
///     <tmp>/root/{index.html, a.txt, Style.CSS, with space.txt, %2e, empty.txt, big.bin,
///                 sub/{index.html, up.txt -> ../a.txt}, noindex/x.js,
///                 inside.txt -> a.txt, out.txt -> ../outside/secret.txt, outdir -> ../outside,
///                 loop -> loop, fifo, badindex/index.html -> ../../outside/secret.txt,
///                 evil.txt -> ../root-evil/x.txt}
///     <tmp>/outside/secret.txt, <tmp>/root-evil/x.txt
///     <tmp>/rootlink -> root
final class StaticFilesTests: XCTestCase {
    private var base = ""
    private var root = ""
    private var bigFile: [UInt8] = []
    /// 5 MiB that no shift or truncation of the stream could reproduce by accident; made once.
    private static let bigFileBytes: [UInt8] = (0..<(5 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 11) }

    override func setUpWithError() throws {
        base = NSTemporaryDirectory() + "swoop-static-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        root = base + "/root"
        let fm = FileManager.default
        for dir in ["root/sub", "root/noindex", "root/badindex", "outside", "root-evil"] {
            try fm.createDirectory(atPath: base + "/" + dir, withIntermediateDirectories: true)
        }
        func write(_ path: String, _ text: String) throws {
            try Data(text.utf8).write(to: URL(fileURLWithPath: base + "/" + path))
        }
        try write("root/index.html", "<h1>home</h1>")
        try write("root/a.txt", "hello, static world\n")
        try write("root/Style.CSS", "body{}")
        try write("root/with space.txt", "spaced")
        try write("root/%2e", "literal percent name")
        try write("root/empty.txt", "")
        try write("root/sub/index.html", "<h1>sub</h1>")
        try write("root/noindex/x.js", "1")
        try write("outside/secret.txt", "secret")
        try write("root-evil/x.txt", "evil")
        bigFile = Self.bigFileBytes
        try Data(bigFile).write(to: URL(fileURLWithPath: root + "/big.bin"))
        try fm.createSymbolicLink(atPath: root + "/sub/up.txt", withDestinationPath: "../a.txt")
        try fm.createSymbolicLink(atPath: root + "/inside.txt", withDestinationPath: "a.txt")
        try fm.createSymbolicLink(atPath: root + "/out.txt", withDestinationPath: "../outside/secret.txt")
        try fm.createSymbolicLink(atPath: root + "/outdir", withDestinationPath: "../outside")
        try fm.createSymbolicLink(atPath: root + "/loop", withDestinationPath: "loop")
        try fm.createSymbolicLink(atPath: root + "/evil.txt", withDestinationPath: "../root-evil/x.txt")
        try fm.createSymbolicLink(atPath: root + "/badindex/index.html", withDestinationPath: "../../outside/secret.txt")
        try fm.createSymbolicLink(atPath: base + "/rootlink", withDestinationPath: "root")
        XCTAssertEqual(mkfifo(root + "/fifo", 0o644), 0)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: base)
    }

    private func resolve(_ target: String, root: String? = nil) -> StaticResolution {
        StaticFiles.resolve(target: target, root: root ?? self.root)
    }

    private func resolvedFile(_ target: String, file: StaticString = #filePath, line: UInt = #line) -> ResolvedFile? {
        guard case .file(let found) = resolve(target) else {
            XCTFail("\(target) resolved to \(resolve(target)), not a file", file: file, line: line)
            return nil
        }
        return found
    }

    private var realRoot: String { URL(fileURLWithPath: root).resolvingSymlinksInPath().path }

    // MARK: resolve

    func testPlainFileIsResolvedWithItsStat() throws {
        let found = try XCTUnwrap(resolvedFile("/a.txt"))
        XCTAssertEqual(found.path, realRoot + "/a.txt")
        XCTAssertEqual(found.size, 20)
        XCTAssertEqual(found.contentType, "text/plain; charset=utf-8")
        XCTAssertGreaterThan(found.modified, 1_600_000_000)
    }

    func testQueryAndFragmentAreIgnored() {
        XCTAssertEqual(resolvedFile("/a.txt?x=../../etc/passwd")?.path, realRoot + "/a.txt")
        XCTAssertEqual(resolvedFile("/a.txt?")?.path, realRoot + "/a.txt")
        XCTAssertEqual(resolvedFile("/a.txt#top")?.path, realRoot + "/a.txt")
        XCTAssertEqual(resolve("/missing?/a.txt"), .notMine)
    }

    func testPercentDecodingAndHarmlessSegments() {
        XCTAssertEqual(resolvedFile("/with%20space.txt")?.path, realRoot + "/with space.txt")
        XCTAssertEqual(resolvedFile("/%61.txt")?.path, realRoot + "/a.txt")
        XCTAssertEqual(resolvedFile("//a.txt")?.path, realRoot + "/a.txt")
        XCTAssertEqual(resolvedFile("/./a.txt")?.path, realRoot + "/a.txt")
        XCTAssertEqual(resolvedFile("/%2e/a.txt")?.path, realRoot + "/a.txt")
    }

    func testDecodingHappensOnceOnly() {
        // `%252e` is the literal name `%2e`, not a dot.
        XCTAssertEqual(resolvedFile("/%252e")?.path, realRoot + "/%2e")
        XCTAssertEqual(resolve("/%252e%252e/outside/secret.txt"), .notMine)
        XCTAssertEqual(resolve("/%252e%252e%252foutside%252fsecret.txt"), .notMine)
    }

    func testDotDotIsForbiddenInEverySpelling() {
        let attempts = [
            "/../outside/secret.txt", "/..", "/../", "/sub/../a.txt", "/sub/../../outside/secret.txt",
            "/%2e%2e/outside/secret.txt", "/%2E%2E/outside/secret.txt", "/%2e%2E/outside/secret.txt",
            "/.%2e/outside/secret.txt", "/%2e./outside/secret.txt", "/.%2E/outside/secret.txt",
            "/sub/%2e%2e/%2e%2e/outside/secret.txt", "/..?q=1", "http://host/../outside/secret.txt",
        ]
        for target in attempts {
            XCTAssertEqual(resolve(target), .forbidden, target)
        }
    }

    func testEncodedSeparatorsBackslashesAndNULAreForbidden() {
        let attempts = [
            "/..%2foutside%2fsecret.txt", "/..%2Foutside%2Fsecret.txt", "/%2e%2e%2foutside%2fsecret.txt",
            "/sub%2findex.html", "/%2fetc%2fpasswd", "/..%5coutside%5csecret.txt", "/..%5Coutside",
            "/..\\outside\\secret.txt", "/sub\\index.html", "/a.txt%00.html", "/a.txt\u{0}.html", "/%00",
        ]
        for target in attempts {
            XCTAssertEqual(resolve(target), .forbidden, target)
        }
    }

    func testSymlinkOutOfTheRootIsForbidden() {
        XCTAssertEqual(resolve("/out.txt"), .forbidden)
        XCTAssertEqual(resolve("/outdir/secret.txt"), .forbidden)
        XCTAssertEqual(resolve("/outdir/"), .forbidden)
        XCTAssertEqual(resolve("/badindex/"), .forbidden, "an index file that links outside")
        XCTAssertEqual(resolve("/loop"), .forbidden, "a symlink loop")
        XCTAssertEqual(resolve("/evil.txt"), .forbidden, "a sibling whose name starts with the root's")
    }

    func testSymlinkInsideTheRootIsServedUnderItsRequestedName() throws {
        let found = try XCTUnwrap(resolvedFile("/inside.txt"))
        XCTAssertEqual(found.path, realRoot + "/a.txt")
        XCTAssertEqual(found.contentType, "text/plain; charset=utf-8")
        XCTAssertEqual(resolvedFile("/sub/up.txt")?.path, realRoot + "/a.txt")
    }

    func testRootReachedThroughASymlinkWorks() {
        XCTAssertEqual(resolvedFile("/a.txt")?.inode, {
            guard case .file(let f) = resolve("/a.txt", root: base + "/rootlink") else { return nil }
            return f.inode
        }())
        XCTAssertEqual(resolve("/a.txt", root: base + "/root/"), resolve("/a.txt"))
    }

    func testDirectoriesUseTheirIndexFileOnlyWithATrailingSlash() {
        XCTAssertEqual(resolvedFile("/")?.path, realRoot + "/index.html")
        XCTAssertEqual(resolvedFile("/sub/")?.path, realRoot + "/sub/index.html")
        XCTAssertEqual(resolvedFile("/sub/?x")?.contentType, "text/html; charset=utf-8")
        XCTAssertEqual(resolvedFile("/sub/#top")?.path, realRoot + "/sub/index.html")
        XCTAssertEqual(resolvedFile("/sub/.")?.path, realRoot + "/sub/index.html", "a dot segment names the directory")
        XCTAssertEqual(resolve("/sub"), .notMine, "the worker may redirect to /sub/")
        XCTAssertEqual(resolve("/noindex/"), .notMine)
        XCTAssertEqual(resolve("/noindex"), .notMine)
    }

    func testIndexFilesAreTriedInOrder() {
        guard case .file(let found) = StaticFiles.resolve(target: "/noindex/", root: root, indexFiles: ["index.htm", "x.js"]) else {
            return XCTFail("x.js not used as an index")
        }
        XCTAssertEqual(found.path, realRoot + "/noindex/x.js")
        XCTAssertEqual(found.contentType, "text/javascript; charset=utf-8")
        XCTAssertEqual(StaticFiles.resolve(target: "/sub/", root: root, indexFiles: ["../a.txt"]), .notMine)
    }

    func testMissingAndOddTargetsAreLeftToTheWorker() {
        XCTAssertEqual(resolve("/missing.txt"), .notMine)
        XCTAssertEqual(resolve("/sub/missing/deeper"), .notMine)
        XCTAssertEqual(resolve("/a.txt/"), .notMine)
        XCTAssertEqual(resolve("/a.txt/more"), .notMine)
        XCTAssertEqual(resolve("*"), .notMine)
        XCTAssertEqual(resolve("example.com:443"), .notMine)
        XCTAssertEqual(resolve(""), .notMine)
        XCTAssertEqual(resolve("/100%"), .notMine, "malformed escape")
        XCTAssertEqual(resolve("/%zz"), .notMine)
        XCTAssertEqual(resolve("/%e"), .notMine)
        XCTAssertEqual(resolve("/%ff%fe"), .notMine, "not UTF-8")
        XCTAssertEqual(resolve("/a.txt", root: base + "/nowhere"), .notMine)
    }

    func testAbsoluteFormTargets() {
        XCTAssertEqual(resolvedFile("http://example.com/a.txt")?.path, realRoot + "/a.txt")
        XCTAssertEqual(resolvedFile("HTTPS://example.com:8443/sub/")?.path, realRoot + "/sub/index.html")
        XCTAssertEqual(resolvedFile("http://example.com")?.path, realRoot + "/index.html")
    }

    func testSpecialFilesAreNotFound() {
        XCTAssertEqual(resolve("/fifo"), .notFound)
    }

    // MARK: respond

    private let fileDate: Int64 = 784_111_777  // Sun, 06 Nov 1994 08:49:37 GMT
    private var now: Date { Date(timeIntervalSince1970: 1_700_000_000) }

    private func file(size: Int64 = 100, type: String = "text/plain; charset=utf-8") -> ResolvedFile {
        ResolvedFile(path: "/x", size: size, modified: fileDate, device: 1, inode: 2, contentType: type)
    }

    private func respond(_ method: HTTPMethod = .GET, _ headers: HTTPHeaders = [:], size: Int64 = 100) -> StaticResponse {
        StaticFiles.respond(method: method, headers: headers, file: file(size: size), now: now)
    }

    func testWholeFile() {
        let response = respond()
        XCTAssertEqual(response.status, .ok)
        XCTAssertEqual(response.headers["Content-Length"], ["100"])
        XCTAssertEqual(response.headers["Content-Type"], ["text/plain; charset=utf-8"])
        XCTAssertEqual(response.headers["Last-Modified"], ["Sun, 06 Nov 1994 08:49:37 GMT"])
        XCTAssertEqual(response.headers["Accept-Ranges"], ["bytes"])
        XCTAssertEqual(response.headers["ETag"], ["\"2ebc98a1-64\""])
        XCTAssertFalse(response.headers.contains(name: "Content-Range"))
        XCTAssertEqual(response.bodyRange, 0..<100)
    }

    func testHeadHasTheSameHeadersAndNoBody() {
        for headers: HTTPHeaders in [[:], ["Range": "bytes=0-9"], ["Range": "bytes=500-"]] {
            let get = respond(.GET, headers)
            let head = respond(.HEAD, headers)
            XCTAssertEqual(head.status, get.status)
            XCTAssertEqual(head.headers, get.headers)
            XCTAssertNil(head.bodyRange)
        }
    }

    func testEmptyFileHasNoBodyAndIgnoresRanges() {
        let response = respond(.GET, ["Range": "bytes=0-"], size: 0)
        XCTAssertEqual(response.status, .ok)
        XCTAssertEqual(response.headers["Content-Length"], ["0"])
        XCTAssertNil(response.bodyRange)
    }

    func testLastModifiedInTheFutureIsClampedToNow() {
        let future = ResolvedFile(path: "/x", size: 1, modified: 1_900_000_000, device: 1, inode: 2, contentType: "a/b")
        let response = StaticFiles.respond(method: .GET, headers: [:], file: future, now: now)
        XCTAssertEqual(response.headers["Last-Modified"], [IMFFixdate.format(1_700_000_000)])
    }

    func testIfModifiedSince() {
        XCTAssertEqual(respond(.GET, ["If-Modified-Since": "Sun, 06 Nov 1994 08:49:37 GMT"]).status, .notModified)
        XCTAssertEqual(respond(.GET, ["If-Modified-Since": "Mon, 07 Nov 1994 00:00:00 GMT"]).status, .notModified)
        XCTAssertEqual(respond(.GET, ["If-Modified-Since": "Sun, 06 Nov 1994 08:49:36 GMT"]).status, .ok)
        XCTAssertEqual(respond(.GET, ["If-Modified-Since": "yesterday"]).status, .ok)
        XCTAssertEqual(respond(.GET, ["If-Modified-Since": "Sunday, 06-Nov-94 08:49:37 GMT"]).status, .ok,
                       "obsolete forms are ignored, which costs only a full response")
        let head = respond(.HEAD, ["If-Modified-Since": "Sun, 06 Nov 1994 08:49:37 GMT"])
        XCTAssertEqual(head.status, .notModified)
        XCTAssertNil(head.bodyRange)
        XCTAssertFalse(head.headers.contains(name: "Content-Length"))
        XCTAssertEqual(head.headers["Last-Modified"], ["Sun, 06 Nov 1994 08:49:37 GMT"])
        XCTAssertEqual(head.headers["ETag"], ["\"2ebc98a1-64\""])
    }

    func testIfNoneMatchWinsOverIfModifiedSince() {
        let etag = "\"2ebc98a1-64\""
        XCTAssertEqual(respond(.GET, ["If-None-Match": etag]).status, .notModified)
        XCTAssertEqual(respond(.GET, ["If-None-Match": "\"other\", W/\(etag)"]).status, .notModified)
        XCTAssertEqual(respond(.GET, ["If-None-Match": "*"]).status, .notModified)
        XCTAssertEqual(respond(.GET, ["If-None-Match": "\"other\"",
                                      "If-Modified-Since": "Sun, 06 Nov 1994 08:49:37 GMT"]).status, .ok)
    }

    private func assertPartial(_ range: String, _ expected: Range<Int64>, size: Int64 = 100,
                               file: StaticString = #filePath, line: UInt = #line) {
        let response = respond(.GET, ["Range": range], size: size)
        XCTAssertEqual(response.status, .partialContent, range, file: file, line: line)
        XCTAssertEqual(response.bodyRange, expected, range, file: file, line: line)
        XCTAssertEqual(response.headers["Content-Length"], ["\(expected.count)"], range, file: file, line: line)
        XCTAssertEqual(response.headers["Content-Range"],
                       ["bytes \(expected.lowerBound)-\(expected.upperBound - 1)/\(size)"], range, file: file, line: line)
        XCTAssertEqual(response.headers["Content-Type"], ["text/plain; charset=utf-8"], file: file, line: line)
    }

    func testSingleRanges() {
        assertPartial("bytes=0-9", 0..<10)
        assertPartial("bytes=10-10", 10..<11)
        assertPartial("bytes=90-", 90..<100)
        assertPartial("bytes=0-", 0..<100)
        assertPartial("bytes=-5", 95..<100)
        assertPartial("bytes=-500", 0..<100)
        assertPartial("bytes=50-5000", 50..<100)
        assertPartial("bytes=99-99999999999999999999999", 99..<100)
        assertPartial("Bytes= 3 - 4 ", 3..<5)
    }

    func testUnsatisfiableRanges() {
        for range in ["bytes=100-", "bytes=100-200", "bytes=-0", "bytes=99999999999999999999999-"] {
            let response = respond(.GET, ["Range": range])
            XCTAssertEqual(response.status, .rangeNotSatisfiable, range)
            XCTAssertEqual(response.headers["Content-Range"], ["bytes */100"], range)
            XCTAssertEqual(response.headers["Content-Length"], ["0"], range)
            XCTAssertNil(response.bodyRange, range)
        }
    }

    func testRangesAnsweredWithTheWholeFile() {
        let whole = ["bytes=0-1,5-6", "bytes=0-1, 90-", "bytes=5-3", "bytes=a-b", "bytes=+1-2", "bytes=-",
                     "items=0-5", "bytes0-5", "bytes=", "bytes=1-2-3"]
        for range in whole {
            let response = respond(.GET, ["Range": range])
            XCTAssertEqual(response.status, .ok, range)
            XCTAssertEqual(response.bodyRange, 0..<100, range)
            XCTAssertFalse(response.headers.contains(name: "Content-Range"), range)
        }
        XCTAssertEqual(respond(.GET, HTTPHeaders([("Range", "bytes=0-1"), ("Range", "bytes=2-3")])).status, .ok)
    }

    func testIfRange() {
        let etag = "\"2ebc98a1-64\""
        XCTAssertEqual(respond(.GET, ["Range": "bytes=0-1", "If-Range": etag]).status, .partialContent)
        XCTAssertEqual(respond(.GET, ["Range": "bytes=0-1", "If-Range": "\"old\""]).status, .ok)
        XCTAssertEqual(respond(.GET, ["Range": "bytes=0-1", "If-Range": "W/\(etag)"]).status, .ok, "weak never matches")
        XCTAssertEqual(respond(.GET, ["Range": "bytes=0-1", "If-Range": "Sun, 06 Nov 1994 08:49:37 GMT"]).status,
                       .partialContent)
        XCTAssertEqual(respond(.GET, ["Range": "bytes=0-1", "If-Range": "Mon, 07 Nov 1994 08:49:37 GMT"]).status, .ok)
        XCTAssertEqual(respond(.GET, ["Range": "bytes=500-", "If-Range": "\"old\""]).status, .ok)
    }

    func testRefusals() {
        XCTAssertEqual(StaticResponse.refusal(.forbidden).status, .forbidden)
        XCTAssertEqual(StaticResponse.refusal(.notFound).headers["Content-Length"], ["0"])
        XCTAssertTrue(StaticFiles.serves(.GET))
        XCTAssertTrue(StaticFiles.serves(.HEAD))
        XCTAssertFalse(StaticFiles.serves(.POST))
        XCTAssertFalse(StaticFiles.serves(.OPTIONS))
    }

    // MARK: MIME types and dates

    func testContentTypes() {
        let expected = [
            "a.html": "text/html; charset=utf-8", "a.css": "text/css; charset=utf-8",
            "a.js": "text/javascript; charset=utf-8", "a.mjs": "text/javascript; charset=utf-8",
            "a.json": "application/json", "a.txt": "text/plain; charset=utf-8", "a.xml": "application/xml",
            "a.svg": "image/svg+xml", "a.png": "image/png", "a.jpg": "image/jpeg", "a.jpeg": "image/jpeg",
            "a.gif": "image/gif", "a.webp": "image/webp", "a.ico": "image/x-icon", "a.wasm": "application/wasm",
            "a.pdf": "application/pdf", "a.zip": "application/zip", "a.tar.gz": "application/gzip",
            "a.mp4": "video/mp4", "a.woff": "font/woff", "a.woff2": "font/woff2", "A.PNG": "image/png",
            "Style.CSS": "text/css; charset=utf-8", "README": "application/octet-stream",
            ".profile": "application/octet-stream", "a.unknown": "application/octet-stream",
            "a.": "application/octet-stream", "": "application/octet-stream",
        ]
        for (name, type) in expected {
            XCTAssertEqual(MIMETypes.contentType(forName: name), type, name)
        }
        XCTAssertEqual(resolvedFile("/Style.CSS")?.contentType, "text/css; charset=utf-8")
        XCTAssertEqual(resolvedFile("/big.bin")?.contentType, "application/octet-stream")
    }

    func testHTTPDates() {
        XCTAssertEqual(IMFFixdate.format(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT")
        XCTAssertEqual(IMFFixdate.format(0), "Thu, 01 Jan 1970 00:00:00 GMT")
        XCTAssertEqual(IMFFixdate.format(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT")
        XCTAssertEqual(IMFFixdate.format(4_102_444_799), "Thu, 31 Dec 2099 23:59:59 GMT")
        XCTAssertEqual(IMFFixdate.parse("Sun, 06 Nov 1994 08:49:37 GMT"), 784_111_777)
        for seconds: Int64 in [0, 1, 86_399, 951_782_400, 1_700_000_000, 4_102_444_799] {
            XCTAssertEqual(IMFFixdate.parse(IMFFixdate.format(seconds)), seconds)
        }
        for bad in ["", "Sun, 06 Nov 1994 08:49:37 UTC", "Xyz, 06 Nov 1994 08:49:37 GMT",
                    "Sun, 06 Foo 1994 08:49:37 GMT", "Sun, 06 Nov 1994 25:49:37 GMT", "Sun,  6 Nov 1994 08:49:37 GMT",
                    "Sun Nov  6 08:49:37 1994"] {
            XCTAssertNil(IMFFixdate.parse(bad), bad)
        }
        // Matches Foundation's own formatting for a sample of dates.
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        for seconds in stride(from: Int64(0), to: 4_000_000_000, by: 37_012_345) {
            XCTAssertEqual(IMFFixdate.format(seconds), formatter.string(from: Date(timeIntervalSince1970: Double(seconds))))
        }
    }

    func testPrepareDecidesWhatTheReactorAnswers() throws {
        let on = StaticFileSettings(documentRoot: root, enabled: true)
        func head(_ method: HTTPMethod, _ uri: String, _ headers: HTTPHeaders = [:]) -> HTTPRequestHead {
            HTTPRequestHead(version: .http1_1, method: method, uri: uri, headers: headers)
        }
        let served = try XCTUnwrap(StaticFiles.prepare(head(.GET, "/a.txt", ["Range": "bytes=0-4"]), settings: on, now: Date()))
        XCTAssertEqual(served.response.status, .partialContent)
        XCTAssertEqual(served.response.bodyRange, 0..<5)
        XCTAssertTrue(served.file?.isOpen ?? false)
        try served.file?.close()
        XCTAssertEqual(StaticFiles.prepare(head(.GET, "/.%2e/outside/secret.txt"), settings: on, now: Date())?.response.status,
                       .forbidden)
        XCTAssertNil(StaticFiles.prepare(head(.GET, "/.%2e/outside/secret.txt"), settings: on, now: Date())?.file)
        XCTAssertEqual(StaticFiles.prepare(head(.HEAD, "/fifo"), settings: on, now: Date())?.response.status, .notFound)
        XCTAssertNil(StaticFiles.prepare(head(.POST, "/a.txt"), settings: on, now: Date()))
        XCTAssertNil(StaticFiles.prepare(head(.PUT, "/../x"), settings: on, now: Date()), "other methods are the worker's")
        XCTAssertNil(StaticFiles.prepare(head(.GET, "/missing"), settings: on, now: Date()))
        var off = on
        off.enabled = false
        XCTAssertNil(StaticFiles.prepare(head(.GET, "/a.txt"), settings: off, now: Date()))
    }

    // MARK: The handler on an EmbeddedChannel

    private func embedded() throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(
            StaticFileHandler(settings: StaticFileSettings(documentRoot: root, enabled: true)))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 80)).wait()
        return channel
    }

    private func send(_ channel: EmbeddedChannel, _ method: HTTPMethod, _ uri: String, headers: HTTPHeaders = [:],
                      body: String? = nil) throws {
        try channel.writeInbound(HTTPServerRequestPart.head(HTTPRequestHead(version: .http1_1, method: method, uri: uri, headers: headers)))
        if let body {
            try channel.writeInbound(HTTPServerRequestPart.body(ByteBuffer(string: body)))
        }
        try channel.writeInbound(HTTPServerRequestPart.end(nil))
    }

    func testHandlerWritesHeadFileRegionAndEnd() throws {
        let channel = try embedded()
        try send(channel, .GET, "/big.bin", headers: ["Range": "bytes=1000-1999"])
        guard case .head(let head) = try channel.readOutbound(as: HTTPServerResponsePart.self) else { return XCTFail("no head") }
        XCTAssertEqual(head.status, .partialContent)
        XCTAssertEqual(head.headers["Content-Range"], ["bytes 1000-1999/5242880"])
        XCTAssertEqual(head.headers["Content-Length"], ["1000"])
        XCTAssertEqual(head.headers["Date"].count, 1)
        guard case .body(.fileRegion(let region)) = try channel.readOutbound(as: HTTPServerResponsePart.self) else {
            return XCTFail("no file region")
        }
        XCTAssertEqual(region.readerIndex, 1000)
        XCTAssertEqual(region.endIndex, 2000)
        guard case .end = try channel.readOutbound(as: HTTPServerResponsePart.self) else { return XCTFail("no end") }
        XCTAssertFalse(region.fileHandle.isOpen, "the handler closes the file after the response")
        XCTAssertNil(try channel.readInbound(as: HTTPServerRequestPart.self), "nothing reaches the worker")
        XCTAssertTrue(channel.isActive)
        _ = try channel.finish()
    }

    func testHandlerAnswersHeadAndTraversalWithoutBodies() throws {
        let channel = try embedded()
        try send(channel, .HEAD, "/a.txt")
        guard case .head(let head) = try channel.readOutbound(as: HTTPServerResponsePart.self) else { return XCTFail("no head") }
        XCTAssertEqual(head.status, .ok)
        XCTAssertEqual(head.headers["Content-Length"], ["20"])
        guard case .end = try channel.readOutbound(as: HTTPServerResponsePart.self) else { return XCTFail("no end") }

        try send(channel, .GET, "/%2e%2e/outside/secret.txt", body: "ignored")
        guard case .head(let refused) = try channel.readOutbound(as: HTTPServerResponsePart.self) else { return XCTFail("no head") }
        XCTAssertEqual(refused.status, .forbidden)
        guard case .end = try channel.readOutbound(as: HTTPServerResponsePart.self) else { return XCTFail("no end") }
        XCTAssertNil(try channel.readInbound(as: HTTPServerRequestPart.self))
        _ = try channel.finish()
    }

    func testHandlerPassesWhatIsNotMineToTheWorker() throws {
        let channel = try embedded()
        for (method, uri) in [(HTTPMethod.POST, "/a.txt"), (.GET, "/missing"), (.GET, "/noindex/"), (.DELETE, "/a.txt")] {
            try send(channel, method, uri, body: "payload")
            guard case .head(let head) = try channel.readInbound(as: HTTPServerRequestPart.self) else { return XCTFail("no head") }
            XCTAssertEqual(head.uri, uri)
            guard case .body(let body) = try channel.readInbound(as: HTTPServerRequestPart.self) else { return XCTFail("no body") }
            XCTAssertEqual(String(buffer: body), "payload")
            guard case .end = try channel.readInbound(as: HTTPServerRequestPart.self) else { return XCTFail("no end") }
        }
        XCTAssertNil(try channel.readOutbound(as: HTTPServerResponsePart.self))
        _ = try channel.finish()
    }

    func testDisabledHandlerPassesEverything() throws {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(
            StaticFileHandler(settings: StaticFileSettings(documentRoot: root, enabled: false)))
        try send(channel, .GET, "/a.txt")
        guard case .head = try channel.readInbound(as: HTTPServerRequestPart.self) else { return XCTFail("not passed") }
        _ = try channel.finish()
    }

    func testHandlerClosesAfterAConnectionCloseRequest() throws {
        let channel = try embedded()
        try send(channel, .GET, "/a.txt", headers: ["Connection": "close"])
        guard case .head(let head) = try channel.readOutbound(as: HTTPServerResponsePart.self) else { return XCTFail("no head") }
        XCTAssertEqual(head.headers["Connection"], ["close"])
        XCTAssertFalse(channel.isActive)
    }

    func testOpenRefusesAFileReplacedAfterResolve() throws {
        let found = try XCTUnwrap(resolvedFile("/a.txt"))
        XCTAssertEqual(rename(root + "/with space.txt", root + "/a.txt"), 0)
        XCTAssertNil(StaticFiles.open(found), "another inode now sits at the path")
        let fresh = try XCTUnwrap(resolvedFile("/a.txt"))
        let opened = try XCTUnwrap(StaticFiles.open(fresh))
        XCTAssertEqual(opened.file.size, 6)
        try opened.handle.close()
    }

    // MARK: A real loopback server

    /// Stands in for the worker: answers every request that gets past the static handler.
    private final class FakeWorker: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard case .end = unwrapInboundIn(data) else { return }
            let head = HTTPResponseHead(version: .http1_1, status: .ok, headers: ["Content-Length": "6"])
            context.write(wrapOutboundOut(.head(head)), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: "worker")))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
    }

    /// Collects every byte until the server closes.
    private final class Collector: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        private var received = ByteBuffer()
        private let done: EventLoopPromise<ByteBuffer>
        init(done: EventLoopPromise<ByteBuffer>) { self.done = done }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var buffer = unwrapInboundIn(data)
            received.writeBuffer(&buffer)
        }
        func channelInactive(context: ChannelHandlerContext) { done.succeed(received) }
        func errorCaught(context: ChannelHandlerContext, error: Error) { done.fail(error) }
    }

    private struct Response {
        var status: Int
        var headers: [String: String]
        var body: [UInt8]
    }

    /// Sends `request` raw to a loopback server with the static handler and returns what came back.
    private func exchange(_ request: String) throws -> [UInt8] {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let settings = StaticFileSettings(documentRoot: root, enabled: true)
        let server = try ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(StaticFileHandler(settings: settings))
                    try channel.pipeline.syncOperations.addHandler(FakeWorker())
                }
            }
            .bind(host: "127.0.0.1", port: 0).wait()
        defer { try? server.close().wait() }
        let done = group.next().makePromise(of: ByteBuffer.self)
        let client = try ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(Collector(done: done)) }
            }
            .connect(to: server.localAddress!).wait()
        try client.writeAndFlush(ByteBuffer(string: request)).wait()
        let timeout = group.next().scheduleTask(in: .seconds(20)) { client.close(promise: nil) }
        defer { timeout.cancel() }
        var received = try done.futureResult.wait()
        return received.readBytes(length: received.readableBytes) ?? []
    }

    /// Splits a byte stream into responses; `heads` says which answer HEAD requests (no body).
    private func parse(_ bytes: [UInt8], heads: Set<Int> = []) throws -> [Response] {
        var responses: [Response] = []
        var rest = bytes[...]
        let separator: [UInt8] = Array("\r\n\r\n".utf8)
        while !rest.isEmpty {
            guard let end = rest.indices.first(where: { rest[$0...].starts(with: separator) }) else {
                throw XCTSkip("unterminated head")
            }
            let lines = String(decoding: rest[..<end], as: UTF8.self).components(separatedBy: "\r\n")
            var headers: [String: String] = [:]
            for line in lines.dropFirst() {
                let parts = line.split(separator: ":", maxSplits: 1)
                headers[parts[0].lowercased()] = parts[1].trimmingCharacters(in: .whitespaces)
            }
            let status = Int(lines[0].split(separator: " ")[1])!
            rest = rest[(end + 4)...]
            let length = heads.contains(responses.count) || status == 304 ? 0 : Int(headers["content-length"] ?? "0")!
            XCTAssertGreaterThanOrEqual(rest.count, length)
            responses.append(Response(status: status, headers: headers, body: Array(rest.prefix(length))))
            rest = rest.dropFirst(length)
        }
        return responses
    }

    func testLoopbackServesA5MiBFileWithSendfile() throws {
        let responses = try parse(exchange("GET /big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
        XCTAssertEqual(responses.count, 1)
        XCTAssertEqual(responses.first?.status, 200)
        XCTAssertEqual(responses.first?.headers["content-length"], "5242880")
        XCTAssertEqual(responses.first?.headers["content-type"], "application/octet-stream")
        XCTAssertEqual(responses.first?.headers["connection"], "close")
        XCTAssertNotNil(responses.first?.headers["date"])
        XCTAssertTrue(responses.first?.body == bigFile, "the body is the file's bytes")
    }

    func testLoopbackKeepAliveRangesHeadRefusalAndWorkerInOrder() throws {
        let request = [
            "GET /big.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=3000000-4000000\r\n\r\n",
            "HEAD /a.txt HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET /..%2f..%2fetc%2fpasswd HTTP/1.1\r\nHost: x\r\n\r\n",
            "POST /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
            "GET /big.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=-10\r\n\r\n",
            "GET /big.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=6000000-\r\n\r\n",
            "GET /sub/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        ].joined()
        let responses = try parse(exchange(request), heads: [1])
        XCTAssertEqual(responses.map(\.status), [206, 200, 403, 200, 206, 416, 200])
        guard responses.count == 7 else { return }
        XCTAssertEqual(responses[0].headers["content-range"], "bytes 3000000-4000000/5242880")
        XCTAssertTrue(responses[0].body == Array(bigFile[3_000_000...4_000_000]))
        XCTAssertEqual(responses[1].headers["content-length"], "20")
        XCTAssertEqual(responses[1].headers["content-type"], "text/plain; charset=utf-8")
        XCTAssertEqual(responses[3].body, Array("worker".utf8))
        XCTAssertTrue(responses[4].body == Array(bigFile.suffix(10)))
        XCTAssertEqual(responses[5].headers["content-range"], "bytes */5242880")
        XCTAssertEqual(responses[6].body, Array("<h1>sub</h1>".utf8))
    }

    /// Counts the bytes until the server closes, reading only once told to.
    private final class Counter: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        private var count = 0
        private let done: EventLoopPromise<Int>
        init(done: EventLoopPromise<Int>) { self.done = done }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) { count += unwrapInboundIn(data).readableBytes }
        func channelInactive(context: ChannelHandlerContext) { done.succeed(count) }
        func errorCaught(context: ChannelHandlerContext, error: Error) { done.succeed(count) }
    }

    /// sendfile returns 0 at the end of a file that shrank under it, and NIO would retry that
    /// forever on a writable socket; the writer must notice and close instead.
    func testLoopbackClosesWhenTheFileIsTruncatedMidSend() throws {
        let path = root + "/huge.bin"
        let fd = open(path, O_CREAT | O_WRONLY, 0o644)
        XCTAssertEqual(ftruncate(fd, 256 << 20), 0)  // sparse: no disk, reads as zeros
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let settings = StaticFileSettings(documentRoot: root, enabled: true)
        let server = try ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(StaticFileHandler(settings: settings))
                }
            }
            .bind(host: "127.0.0.1", port: 0).wait()
        defer { try? server.close().wait() }
        let done = group.next().makePromise(of: Int.self)
        let client = try ClientBootstrap(group: group)
            .channelOption(.autoRead, value: false)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(Counter(done: done)) }
            }
            .connect(to: server.localAddress!).wait()
        try client.writeAndFlush(ByteBuffer(string: "GET /huge.bin HTTP/1.1\r\nHost: x\r\n\r\n")).wait()
        usleep(300_000)  // the socket buffers fill; the server waits for writability
        XCTAssertEqual(ftruncate(fd, 64 << 20), 0)
        close(fd)
        let started = ContinuousClock.now
        try client.setOption(.autoRead, value: true).wait()
        client.read()
        let timeout = group.next().scheduleTask(in: .seconds(20)) { client.close(promise: nil) }
        defer { timeout.cancel() }
        let received = try done.futureResult.wait()
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(10), "the server closed instead of spinning")
        XCTAssertGreaterThan(received, 16 << 20)
        XCTAssertLessThan(received, 65 << 20)
    }

    func testLoopbackConditionalGet() throws {
        let first = try parse(exchange("GET /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
        let lastModified = try XCTUnwrap(first.first?.headers["last-modified"])
        let etag = try XCTUnwrap(first.first?.headers["etag"])
        let again = try parse(exchange(
            "GET /a.txt HTTP/1.1\r\nHost: x\r\nIf-Modified-Since: \(lastModified)\r\n\r\n"
                + "GET /a.txt HTTP/1.1\r\nHost: x\r\nIf-None-Match: \(etag)\r\nConnection: close\r\n\r\n"))
        XCTAssertEqual(again.map(\.status), [304, 304])
        XCTAssertEqual(again.first?.body, [])
    }
}
