import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// The HTTP listener (`--http-port`): NIOHTTP1 in the master's reactors, `onRequest` in the
/// workers. curl for what a real client does; a raw socket for pipelining, malformed
/// requests and exact bytes.
class HTTPTests: SwoopTestCase {
    func startHTTP(_ args: [String] = []) throws -> DemoServer {
        let server = try startServer(["--http-port", "0"] + args)
        XCTAssertNotEqual(server.httpPort, 0, "the ready line reports the HTTP port: \(server.readyLine)")
        return server
    }

    func url(_ server: DemoServer, _ path: String) -> String { "http://127.0.0.1:\(server.httpPort)\(path)" }

    func raw(_ server: DemoServer) throws -> RawHTTPClient {
        let client = try RawHTTPClient(port: server.httpPort)
        addTeardownBlock { client.close() }
        return client
    }

    func testDemoRoutesWithCurl() throws {
        let server = try startHTTP(["--worker-num", "2", "--task-worker-num", "1"])
        XCTAssertEqual(try curl([url(server, "/")]), "Hello, World!")
        let whoami = try curl([url(server, "/whoami")])
        let parsed = try XCTUnwrap(WhoAmI.parseTCP(whoami), "whoami line: \(whoami)")
        XCTAssertTrue(server.processTree().contains { $0.pid == parsed.pid && $0.role == .worker(id: parsed.worker) },
                      "whoami names a worker of the tree: \(whoami)")
        XCTAssertEqual(try curl([url(server, "/sleep?ms=30")]), "slept 30")
        XCTAssertEqual(try curl(["--data-binary", "some body", url(server, "/echo")]), "some body")
        let task = try curl([url(server, "/task?text=hello%20there")])
        XCTAssertTrue(task.hasPrefix("taskwait-done by=2 pid="), task)
        XCTAssertTrue(task.hasSuffix(" HELLO THERE"), task)
        XCTAssertEqual(try curl(["-o", "/dev/null", "-w", "%{http_code}", url(server, "/nothing-here")]), "404")

        // Date, Server, Content-Type and Content-Length on a plain response.
        let client = try raw(server)
        let reply = try client.get("/")
        XCTAssertEqual(reply.status, 200)
        XCTAssertEqual(reply.text, "Hello, World!")
        XCTAssertEqual(reply.headers["content-type"], "text/plain")
        XCTAssertEqual(reply.headers["content-length"], "13")
        XCTAssertEqual(reply.headers["server"], "swoop")
        let date = try XCTUnwrap(reply.headers["date"])
        XCTAssertNotNil(date.range(of: #"^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$"#,
                                   options: .regularExpression), date)
    }

    func testQueryCookiesFormStreamAndSendfile() throws {
        let server = try startHTTP(["--worker-num", "1"])
        XCTAssertEqual(try curl([url(server, "/query?a=1&b=x+y&c=%2F%C3%A9&flag")]), "a=1\nb=x y\nc=/é\nflag=")
        XCTAssertEqual(try curl(["--data", "name=Jo+Doe&city=S%C3%A3o", url(server, "/form")]), "city=São\nname=Jo Doe")

        let client = try raw(server)
        let cookies = try client.get("/cookies", headers: ["Cookie: b=two; a=\"one\"; c=%20x"])
        XCTAssertEqual(cookies.text, "a=one\nb=two\nc= x")
        XCTAssertEqual(cookies.setCookies, ["visited=yes%20please; Path=/; HttpOnly"])

        let stream = try client.get("/stream?parts=4")
        XCTAssertEqual(stream.headers["transfer-encoding"], "chunked")
        XCTAssertNil(stream.headers["content-length"])
        XCTAssertEqual(stream.text, "part 0\npart 1\npart 2\npart 3\n")

        let path = NSTemporaryDirectory() + "swoop-sendfile-\(getpid()).json"
        let contents = (0..<40_000).map { "\($0)," }.joined()
        try contents.write(toFile: path, atomically: true, encoding: .utf8)
        defer { unlink(path) }
        let file = try client.get("/file?path=\(path)")
        XCTAssertEqual(file.status, 200)
        XCTAssertEqual(file.headers["content-type"], "application/json")
        XCTAssertEqual(file.headers["content-length"], String(contents.utf8.count))
        XCTAssertEqual(file.text, contents)
        XCTAssertEqual(try client.get("/").text, "Hello, World!", "the connection goes on after a streamed file")
    }

    func testThousandRequestsOnOneKeepAliveConnection() throws {
        let server = try startHTTP(["--worker-num", "2"])
        let client = try raw(server)
        let first = try XCTUnwrap(WhoAmI.parseTCP(try client.get("/whoami").text))
        for i in 0..<1000 {
            let reply = try client.get("/")
            guard reply.status == 200, reply.text == "Hello, World!" else {
                return XCTFail("request \(i): \(reply)")
            }
        }
        let last = try XCTUnwrap(WhoAmI.parseTCP(try client.get("/whoami").text))
        XCTAssertEqual(first.conn, last.conn, "one connection throughout")
    }

    func testPipelinedResponsesComeBackInRequestOrder() throws {
        // Round robin over four workers, and earlier requests sleep longer: were the
        // responses written as they were made, they would come back reversed.
        let server = try startHTTP(["--worker-num", "4", "--dispatch-mode", "1"])
        let client = try raw(server)
        var batch = ""
        for i in 0..<12 { batch += RawHTTPClient.request("GET", "/sleep?ms=\((12 - i) * 15)") }
        batch += RawHTTPClient.request("POST", "/echo", body: "last one")
        try client.send(batch)
        for i in 0..<12 {
            XCTAssertEqual(try client.readResponse().text, "slept \((12 - i) * 15)", "response \(i)")
        }
        XCTAssertEqual(try client.readResponse().text, "last one")
    }

    func testChunkedAndLargeBodies() throws {
        let server = try startHTTP(["--worker-num", "1"])
        let client = try raw(server)
        // A chunked request body, in odd pieces, with an extension and a trailer.
        try client.send("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                        + "5\r\nhello\r\n1;ext=1\r\n \r\n6\r\nworld!\r\n0\r\nX-Trailer: 1\r\n\r\n")
        XCTAssertEqual(try client.readResponse().text, "hello world!")

        // 1 MiB with a Content-Length, on the same connection.
        let mebibyte = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        try client.send(Array("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: \(mebibyte.count)\r\n\r\n".utf8) + mebibyte)
        let big = try client.readResponse()
        XCTAssertEqual(big.body.count, mebibyte.count)
        XCTAssertTrue(big.body == mebibyte, "the 1 MiB body came back intact")
        XCTAssertEqual(big.headers["content-length"], String(mebibyte.count),
                       "a whole body sent in several IPC parts keeps its length")

        // 1 MiB chunked, as curl sends it.
        let path = NSTemporaryDirectory() + "swoop-body-\(getpid()).bin"
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(mebibyte)))
        defer { unlink(path) }
        let out = NSTemporaryDirectory() + "swoop-body-out-\(getpid()).bin"
        defer { unlink(out) }
        _ = try curl(["-H", "Transfer-Encoding: chunked", "--data-binary", "@\(path)", "-o", out, url(server, "/echo")])
        XCTAssertEqual(FileManager.default.contents(atPath: out), Data(mebibyte))
    }

    func testMalformedRequestsGet400AndClose() throws {
        try malformedRequestsGet400AndClose(["--worker-num", "1"])
    }

    func testMalformedRequestsGet400AndCloseWithCompressionOn() throws {
        // The 400 goes past the compressor, which has no request to pair it with.
        try malformedRequestsGet400AndClose(["--worker-num", "1", "--http-compression"])
    }

    private func malformedRequestsGet400AndClose(_ flags: [String]) throws {
        let server = try startHTTP(flags)
        for garbage in ["GARBAGE\r\n\r\n", "GET / HTTP/1.1\r\nHost: t\r\nBad Header Line\r\n\r\n",
                        "GET / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello",
                        "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n",
                        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: \(String(repeating: "b", count: 40_000))\r\n\r\n"] {
            let client = try raw(server)
            try client.send(garbage)
            let reply = try client.readResponse()
            XCTAssertEqual(reply.status, garbage.contains("X-Big") ? 431 : 400, "for \(garbage.prefix(80).debugDescription)")
            XCTAssertEqual(reply.headers["connection"], "close")
            XCTAssertTrue(client.isClosedByPeer(timeout: 5), "closed after the answer to \(garbage.prefix(80).debugDescription)")
        }
        XCTAssertEqual(try curl([url(server, "/")]), "Hello, World!", "the server goes on")
    }

    func testBodiesOverPackageMaxLengthGet413AndClose() throws {
        let server = try startHTTP(["--worker-num", "1", "--package-max-length", "65536"])
        // Declared too long: refused before the body is sent.
        let declared = try raw(server)
        try declared.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 65537\r\n\r\n")
        let first = try declared.readResponse()
        XCTAssertEqual(first.status, 413)
        XCTAssertTrue(declared.isClosedByPeer(timeout: 5))

        // Chunked, growing past the limit.
        let chunked = try raw(server)
        let piece = String(repeating: "x", count: 16384)
        var text = "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        for _ in 0..<5 { text += "4000\r\n\(piece)\r\n" }
        try chunked.send(text)
        XCTAssertEqual(try chunked.readResponse().status, 413)
        XCTAssertTrue(chunked.isClosedByPeer(timeout: 5))

        // Exactly at the limit is fine.
        let body = String(repeating: "y", count: 65536)
        XCTAssertEqual(try curl(["--data-binary", body, url(server, "/echo")]).utf8.count, 65536)
    }

    func testExpect100Continue() throws {
        let server = try startHTTP(["--worker-num", "1"])
        let client = try raw(server)
        try client.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        XCTAssertEqual(try client.readResponse().status, 100, "the interim response comes before the body is sent")
        try client.send("hello")
        XCTAssertEqual(try client.readResponse().text, "hello")
        // An HTTP/1.0 client gets no 1xx (RFC 9110 §15.2): the first answer is the response.
        try client.send("POST /echo HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nworld")
        let answer = try client.readResponse()
        XCTAssertEqual(answer.status, 200)
        XCTAssertEqual(answer.text, "world")
        // Too long: 413 instead of 100, and the body is never sent.
        try client.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999\r\nExpect: 100-continue\r\n\r\n")
        XCTAssertEqual(try client.readResponse().status, 413)
        XCTAssertTrue(client.isClosedByPeer(timeout: 5))
    }

    func testServerSendOnAnHTTPConnectionWritesRawBytes() throws {
        // The HTTP handlers take only HTTP parts: the bytes go past them (it crashed the master).
        let server = try startHTTP(["--worker-num", "1"])
        let client = try raw(server)
        try client.send(RawHTTPClient.request("GET", "/send?text=raw%20line%0A"))
        XCTAssertEqual(try client.socket.readLine(timeout: 10), "raw line")
        XCTAssertEqual(try client.readResponse().text, "sent")
        XCTAssertEqual(try client.get("/").text, "Hello, World!", "the connection goes on")
    }

    func testHeadHasNoBody() throws {
        let server = try startHTTP(["--worker-num", "1"])
        let client = try raw(server)
        let head = try client.get("/", method: "HEAD")
        XCTAssertEqual(head.status, 200)
        XCTAssertEqual(head.headers["content-length"], "13", "HEAD reports the length GET would have")
        // Had a body been sent, it would be read as the next response's status line.
        let next = try client.get("/")
        XCTAssertEqual(next.text, "Hello, World!")

        // A streamed response: its head alone, then the connection closes.
        let streamed = try client.get("/stream?parts=3", method: "HEAD")
        XCTAssertEqual(streamed.status, 200)
        XCTAssertEqual(streamed.headers["connection"], "close", "the length is unknown and no body follows")
        XCTAssertTrue(client.isClosedByPeer(timeout: 5))
        XCTAssertEqual(client.socket.bufferedByteCount, 0, "neither a part nor the last chunk was sent")
    }

    func testAMalformedRequestBehindAPendingOneIsAnsweredAfterIt() throws {
        let server = try startHTTP(["--worker-num", "1"])
        let client = try raw(server)
        try client.send(RawHTTPClient.request("GET", "/sleep?ms=200") + "GARBAGE\r\n\r\n")
        XCTAssertEqual(try client.readResponse().text, "slept 200", "the request before the garbage is answered")
        XCTAssertEqual(try client.readResponse().status, 400)
        XCTAssertTrue(client.isClosedByPeer(timeout: 5))
    }

    func testHTTP10ClosesUnlessKeepAlive() throws {
        let server = try startHTTP(["--worker-num", "1"])
        let keep = try raw(server)
        try keep.send("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        let reply = try keep.readResponse()
        XCTAssertEqual(reply.headers["connection"], "keep-alive")
        try keep.send("GET / HTTP/1.0\r\n\r\n")
        XCTAssertEqual(try keep.readResponse().text, "Hello, World!")
        XCTAssertTrue(keep.isClosedByPeer(timeout: 5), "an HTTP/1.0 request without keep-alive closes")
    }

    func testCrashInAHandlerGets503AndTheNextRequestIsServed() throws {
        try XCTSkipIf(serverMode == "base", "base mode: the connection dies with its worker (see HTTPBaseModeTests)")
        let server = try startHTTP(["--worker-num", "1"])
        let client = try raw(server)
        let before = try XCTUnwrap(WhoAmI.parseTCP(try client.get("/whoami").text))
        let crashed = try client.get("/crash")
        XCTAssertEqual(crashed.status, 503)
        let after = try XCTUnwrap(WhoAmI.parseTCP(try client.get("/whoami").text),
                                  "the same connection is served by the replacement")
        XCTAssertNotEqual(before.pid, after.pid)
        XCTAssertEqual(before.conn, after.conn)
        assertMasterAndManagerUnchanged(server)
    }

    func testHandlerThatThrowsGets500AndTheConnectionGoesOn() throws {
        let server = try startHTTP(["--worker-num", "1"])
        let client = try raw(server)
        XCTAssertEqual(try client.get("/throw").status, 500)
        XCTAssertEqual(try client.get("/").text, "Hello, World!")
    }

    func testNoAnswerWithinTheResponseTimeoutGets504() throws {
        let server = try startHTTP(["--worker-num", "1", "--http-response-timeout", "1"])
        let client = try raw(server)
        let started = Date()
        let late = try client.get("/sleep?ms=1500")
        XCTAssertEqual(late.status, 504)
        XCTAssertLessThan(Date().timeIntervalSince(started), 1.45, "504 at the timeout, not when the worker answers")
        // The worker answers the sleep at 1.5 s; that late answer is dropped, and the next
        // request of the connection (handled after it, in order) gets its own response.
        XCTAssertEqual(try client.get("/").text, "Hello, World!")
        assertMasterAndManagerUnchanged(server)
    }

    func testSlowClientsAreBoundedByTimeouts() throws {
        let server = try startHTTP(["--worker-num", "1", "--http-header-timeout", "0.5", "--http-body-timeout", "0.5"])
        let head = try raw(server)
        try head.send("GET / HTTP/1.1\r\nHost: t\r\n")
        XCTAssertTrue(head.isClosedByPeer(timeout: 5), "a head never finished is cut off")

        let body = try raw(server)
        try body.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
        XCTAssertEqual(try body.readResponse().status, 408)
        XCTAssertTrue(body.isClosedByPeer(timeout: 5))

        // An idle keep-alive connection is closed after the header timeout too.
        let idle = try raw(server)
        XCTAssertEqual(try idle.get("/").status, 200)
        XCTAssertTrue(idle.isClosedByPeer(timeout: 5))
    }

    func testKeepAliveConnectionSurvivesAReload() throws {
        try XCTSkipIf(serverMode == "base", "base mode: a reload closes the connections (see HTTPBaseModeTests)")
        let server = try startHTTP(["--worker-num", "2"])
        let client = try raw(server)
        let before = try XCTUnwrap(WhoAmI.parseTCP(try client.get("/whoami").text))
        try server.signal(SIGUSR1)
        try eventually("a new worker answers on the same connection", timeout: 15) {
            let now = try XCTUnwrap(WhoAmI.parseTCP(try client.get("/whoami").text))
            XCTAssertEqual(now.conn, before.conn)
            return now.pid != before.pid
        }
        XCTAssertEqual(try client.get("/").text, "Hello, World!")
    }

    func testHTTPAndLineProtocolShareTheWorkers() throws {
        let server = try startHTTP(["--worker-num", "1"])
        let line = try connect(server)
        XCTAssertEqual(try line.request("ping"), "pong")
        let viaHTTP = try XCTUnwrap(WhoAmI.parseTCP(try curl([url(server, "/whoami")])))
        let viaLine = try whoami(line)
        XCTAssertEqual(viaHTTP.pid, viaLine.pid)
    }

    func testGzipForTextResponsesWhenEnabled() throws {
        let server = try startHTTP(["--worker-num", "1", "--http-compression"])
        let expected = (0..<200).map { "line \($0) of some compressible text" }.joined(separator: "\n")
        XCTAssertEqual(try curl(["--compressed", url(server, "/text?lines=200")]), expected)

        let client = try raw(server)
        let gzipped = try client.get("/text?lines=200", headers: ["Accept-Encoding: gzip"])
        XCTAssertEqual(gzipped.headers["content-encoding"], "gzip")
        XCTAssertLessThan(gzipped.body.count, expected.utf8.count / 4)
        XCTAssertEqual(gzipped.body.prefix(2), [0x1f, 0x8b], "a gzip stream")
        let plain = try client.get("/text?lines=200")
        XCTAssertNil(plain.headers["content-encoding"], "not for a client that does not accept it")
        XCTAssertEqual(plain.text, expected)
        let small = try client.get("/", headers: ["Accept-Encoding: gzip"])
        XCTAssertNil(small.headers["content-encoding"], "not for a body under httpCompressionMinLength")
        XCTAssertEqual(small.text, "Hello, World!")
        try client.send(RawHTTPClient.request("POST", "/echo", headers: ["Accept-Encoding: gzip", "Content-Type: image/png"],
                                              body: String(repeating: "p", count: 500)))
        let binary = try client.readResponse()
        XCTAssertNil(binary.headers["content-encoding"], "not for a type that is not text")
        XCTAssertEqual(binary.body.count, 500)

        // An interim 100 does not upset the compressor's pairing of requests and responses.
        try client.send("POST /echo HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\nContent-Type: text/plain\r\n"
                        + "Content-Length: 300\r\nExpect: 100-continue\r\n\r\n")
        XCTAssertEqual(try client.readResponse().status, 100)
        try client.send(String(repeating: "t", count: 300))
        let echoed = try client.readResponse()
        XCTAssertEqual(echoed.headers["content-encoding"], "gzip")
        let streamed = try client.get("/stream?parts=50", headers: ["Accept-Encoding: gzip"])
        XCTAssertEqual(streamed.headers["content-encoding"], "gzip", "streamed text too")
        XCTAssertEqual(try client.get("/").text, "Hello, World!")
    }

    func testSendfileIsStreamedByTheMaster() throws {
        // 8 MiB: four times bufferOutputSize, which a reply through the IPC socket could not exceed.
        let server = try startHTTP(["--worker-num", "1", "--http-compression"])
        let path = NSTemporaryDirectory() + "swoop-sendfile-big-\(getpid()).txt"
        let line = Array("0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ!?\n".utf8)
        var bytes: [UInt8] = []
        while bytes.count < 8 << 20 { bytes += line }
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(bytes)))
        defer { unlink(path) }
        let out = NSTemporaryDirectory() + "swoop-sendfile-out-\(getpid()).txt"
        defer { unlink(out) }
        let headers = try curl(["--compressed", "-D", "-", "-o", out, url(server, "/file?path=\(path)")])
        XCTAssertTrue(FileManager.default.contents(atPath: out) == Data(bytes), "the whole file arrived intact")
        XCTAssertTrue(headers.lowercased().contains("content-length: \(bytes.count)"), headers)
        XCTAssertFalse(headers.lowercased().contains("content-encoding"), "a file region is not compressed: \(headers)")
        XCTAssertFalse(headers.lowercased().contains("x-swoop"), "no internal marker leaks: \(headers)")

        let client = try raw(server)
        let part = try client.get("/file?path=\(path)&offset=10&length=26")
        XCTAssertEqual(part.text, "abcdefghijklmnopqrstuvwxyz")
        XCTAssertEqual(part.headers["content-type"], "text/plain; charset=utf-8")
        let head = try client.get("/file?path=\(path)", method: "HEAD")
        XCTAssertEqual(head.headers["content-length"], String(bytes.count))
        XCTAssertEqual(try client.get("/file?path=\(path)&offset=\(bytes.count)&length=1").status, 500,
                       "a range outside the file makes the handler throw")
        XCTAssertEqual(try client.get("/file?path=\(NSTemporaryDirectory())swoop-missing-\(getpid())").status, 500)
        XCTAssertEqual(try client.get("/").text, "Hello, World!", "the connection goes on")
    }

    func testRequestsSentBeforeAHalfCloseAreAnswered() throws {
        let server = try startHTTP(["--worker-num", "2"])
        let client = try raw(server)
        try client.send(RawHTTPClient.request("GET", "/sleep?ms=100") + RawHTTPClient.request("GET", "/")
                        + RawHTTPClient.request("POST", "/echo", body: "bye"))
        XCTAssertEqual(Glibc.shutdown(client.socket.fd, Int32(SHUT_WR)), 0)
        XCTAssertEqual(try client.readResponse().text, "slept 100")
        XCTAssertEqual(try client.readResponse().text, "Hello, World!")
        XCTAssertEqual(try client.readResponse().text, "bye")
        XCTAssertTrue(client.isClosedByPeer(timeout: 5), "closed once the last response is sent")
    }

    func testASlowDownloadOutlastsTheHeaderTimeout() throws {
        // The keep-alive wait (httpHeaderTimeout) starts once a response has left, so a
        // download that takes longer than it is not cut.
        let server = try startHTTP(["--worker-num", "1", "--http-header-timeout", "0.5"])
        let path = NSTemporaryDirectory() + "swoop-slow-\(getpid()).bin"
        let bytes = Data(repeating: 0x5a, count: 24 << 20)
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: bytes))
        defer { unlink(path) }
        let size = try curl(["--limit-rate", "16M", "-o", "/dev/null", "-w", "%{size_download}",
                             url(server, "/file?path=\(path)")])
        XCTAssertEqual(size, String(bytes.count))
    }

    func testStatusesAHandlerSets() throws {
        let server = try startHTTP(["--worker-num", "1"])
        let client = try raw(server)
        let created = try client.get("/status?code=201")
        XCTAssertEqual(created.status, 201)
        XCTAssertEqual(created.text, "status 201")
        let empty = try client.get("/status?code=204")
        XCTAssertEqual(empty.status, 204)
        XCTAssertNil(empty.headers["content-length"], "no body, no length for 204")
        XCTAssertEqual(try client.get("/status?code=304").status, 304)
        // An interim status cannot end a response: the master answers 500 and goes on.
        XCTAssertEqual(try client.get("/status?code=101").status, 500)
        XCTAssertEqual(try client.get("/status?code=599").status, 599)
        XCTAssertEqual(try client.get("/").text, "Hello, World!")
        assertMasterAndManagerUnchanged(server)
    }

    /// Common responses are encoded whole (RawResponse); with compression on, every response
    /// takes the general path (ResponseEncoder, whose bytes are NIO's encoder's: see
    /// ResponseEncoderTests). Both must put the same bytes on the wire (the Date's value aside).
    func testWholeResponsesMatchTheGeneralEncoding() throws {
        let fast = try startHTTP(["--worker-num", "1"])
        let general = try startHTTP(["--worker-num", "1", "--http-compression"])
        let requests: [String] = [
            RawHTTPClient.request("GET", "/"),
            RawHTTPClient.request("GET", "/status?code=201"),
            RawHTTPClient.request("GET", "/status?code=404"),
            RawHTTPClient.request("GET", "/status?code=599"),
            RawHTTPClient.request("GET", "/cookies", headers: ["Cookie: a=1; b=2"]),
            RawHTTPClient.request("POST", "/echo", headers: ["Content-Type: application/x-thing"], body: "payload"),
            RawHTTPClient.request("GET", "/nowhere"),
            "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            "GET /status?code=202 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            RawHTTPClient.request("GET", "/", headers: ["Connection: close"]),
            "GET / HTTP/1.0\r\n\r\n",
        ]
        func exchange(_ server: DemoServer, _ request: String) throws -> ([String], [UInt8]) {
            let client = try raw(server)
            try client.send(request)
            let reply = try client.readResponse()
            // The Date's value may differ by a second between the two servers.
            let lines = reply.lines.map { $0.lowercased().hasPrefix("date:") ? "Date: <now>" : $0 }
            return (lines, reply.body)
        }
        for request in requests {
            let (fastLines, fastBody) = try exchange(fast, request)
            let (generalLines, generalBody) = try exchange(general, request)
            XCTAssertEqual(fastLines, generalLines, "head for \(request.debugDescription)")
            XCTAssertEqual(fastBody, generalBody, "body for \(request.debugDescription)")
            XCTAssertTrue(fastLines.contains("Date: <now>"), "a Date header: \(fastLines)")
        }
    }

    func testAWorkerKilledMidRequestGets503AtOnce() throws {
        try XCTSkipIf(serverMode == "base", "base mode: the connection dies with its worker (see HTTPBaseModeTests)")
        let server = try startHTTP(["--worker-num", "1"])
        let client = try raw(server)
        let worker = try XCTUnwrap(WhoAmI.parseTCP(try client.get("/whoami").text))
        try client.send(RawHTTPClient.request("GET", "/sleep?ms=30000"))
        // The master has handed the sleep to the worker once it counted it: whoami, the sleep
        // and this stats request make three.
        let line = try connect(server)
        try eventually("the sleep request was dispatched") {
            (try stats(line).int("request_count") ?? 0) >= 3
        }
        let started = Date()
        try server.signalProcess(worker.pid, SIGKILL)
        let reply = try client.readResponse(timeout: 5)
        XCTAssertEqual(reply.status, 503)
        XCTAssertLessThan(Date().timeIntervalSince(started), 3, "at once, not after a timeout")
        let next = try XCTUnwrap(WhoAmI.parseTCP(try client.get("/whoami").text))
        XCTAssertNotEqual(next.pid, worker.pid)
        XCTAssertEqual(next.conn, worker.conn, "the same connection goes on")
    }

    func testStaticFilesAreServedByTheReactor() throws {
        let base = NSTemporaryDirectory() + "swoop-static-\(getpid())"
        let root = base + "/root"
        try FileManager.default.createDirectory(atPath: root + "/sub", withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: base) }
        try "hello static".write(toFile: root + "/a.txt", atomically: true, encoding: .utf8)
        try "<h1>index</h1>".write(toFile: root + "/index.html", atomically: true, encoding: .utf8)
        try "secret".write(toFile: base + "/secret.txt", atomically: true, encoding: .utf8)
        try FileManager.default.createSymbolicLink(atPath: root + "/link", withDestinationPath: base + "/secret.txt")

        let server = try startHTTP(["--worker-num", "1", "--document-root", root])
        let line = try connect(server)
        let before = try XCTUnwrap(try stats(line).int("request_count"))
        let client = try raw(server)
        let file = try client.get("/a.txt")
        XCTAssertEqual(file.status, 200)
        XCTAssertEqual(file.text, "hello static")
        XCTAssertEqual(file.headers["server"], "swoop")
        XCTAssertNotNil(file.headers["date"])
        let modified = try XCTUnwrap(file.headers["last-modified"])
        XCTAssertTrue(file.headers["content-type"]?.hasPrefix("text/plain") == true, "\(file.headers)")
        XCTAssertEqual(try client.get("/").text, "<h1>index</h1>")
        XCTAssertEqual(try client.get("/a.txt", method: "HEAD").headers["content-length"], "12")
        let range = try client.get("/a.txt", headers: ["Range: bytes=0-4"])
        XCTAssertEqual(range.status, 206)
        XCTAssertEqual(range.text, "hello")
        XCTAssertEqual(try client.get("/a.txt", headers: ["If-Modified-Since: \(modified)"]).status, 304)
        for attack in ["/../secret.txt", "/%2e%2e/secret.txt", "/sub%2f..%2f..%2fsecret.txt", "/link", "/sub/../../secret.txt"] {
            let refused = try client.get(attack)
            XCTAssertEqual(refused.status, 403, "for \(attack): \(refused)")
            XCTAssertFalse(refused.text.contains("secret"))
        }
        let after = try XCTUnwrap(try stats(line).int("request_count"))
        XCTAssertEqual(after - before, 1, "only the stats request reached a worker")

        // Not a file under the root: the worker answers. Mixed in a pipeline, order holds.
        try client.send(RawHTTPClient.request("GET", "/sleep?ms=100") + RawHTTPClient.request("GET", "/a.txt")
                        + RawHTTPClient.request("GET", "/whoami"))
        XCTAssertEqual(try client.readResponse().text, "slept 100")
        XCTAssertEqual(try client.readResponse().text, "hello static")
        XCTAssertNotNil(WhoAmI.parseTCP(try client.readResponse().text))
    }
}
