import NIOCore
import NIOEmbedded
import NIOHTTP1
import XCTest
@testable import Swoop

/// `HTTPReadAhead` keeps the socket reading while one request waits for its answer, and
/// leaves the pausing to NIO's pipelining handler once a second request is read.
final class HTTPReadAheadTests: XCTestCase {
    /// Counts the reads that reach the channel, i.e. that keep its socket registered for reading.
    private final class ReadCounter: ChannelOutboundHandler {
        typealias OutboundIn = Any
        var reads = 0
        func read(context: ChannelHandlerContext) {
            reads += 1
            context.read()
        }
    }

    /// The end of the pipeline, in `HTTPSession`'s place: counts every part it receives.
    private final class Requests: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        var uris: [String] = []
        var arrivals: HTTPReadAhead.Arrivals?
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            arrivals?.count += 1
            if case .head(let head) = unwrapInboundIn(data) { uris.append(head.uri) }
        }
    }

    /// A connection as the master builds it, and one read as NIO's channel performs it: the
    /// bytes, the read-complete event, then the channel's own request for the next read.
    private func connection(readAhead: Bool) throws -> (EmbeddedChannel, ReadCounter, Requests) {
        let channel = EmbeddedChannel()
        let counter = ReadCounter()
        let requests = Requests()
        let pipeline = channel.pipeline.syncOperations
        try pipeline.addHandler(counter)
        try pipeline.configureHTTPServerPipeline(withPipeliningAssistance: true, withErrorHandling: false)
        if readAhead {
            let handler = HTTPReadAhead()
            try pipeline.addHandler(handler, position: .before(try pipeline.handler(type: HTTPServerPipelineHandler.self)))
            requests.arrivals = handler.arrivals
        }
        try pipeline.addHandler(requests)
        return (channel, counter, requests)
    }

    private func deliver(_ text: String, to channel: EmbeddedChannel) throws {
        try channel.writeInbound(ByteBuffer(string: text))
        channel.read()
    }

    private func answer(on channel: EmbeddedChannel) throws {
        try channel.writeOutbound(HTTPServerResponsePart.head(HTTPResponseHead(version: .http1_1, status: .ok,
                                                                               headers: ["content-length": "0"])))
        try channel.writeOutbound(HTTPServerResponsePart.end(nil))
        while try channel.readOutbound(as: IOData.self) != nil {}
    }

    func testTheSocketStaysReadableWhileOneRequestIsWithAWorker() throws {
        let (channel, counter, requests) = try connection(readAhead: true)
        defer { _ = try? channel.finish() }
        try deliver("GET /a HTTP/1.1\r\nHost: x\r\n\r\n", to: channel)
        XCTAssertEqual(requests.uris, ["/a"])
        XCTAssertEqual(counter.reads, 1, "the read after the request reaches the channel although its response is pending")
        try answer(on: channel)
        let before = counter.reads
        try deliver("GET /b HTTP/1.1\r\nHost: x\r\n\r\n", to: channel)
        XCTAssertEqual(requests.uris, ["/a", "/b"])
        XCTAssertEqual(counter.reads, before + 1, "and again after the next one")
    }

    func testWithoutItNIOsPipeliningHandlerPausesReadingAfterEveryRequest() throws {
        // The reason the handler exists: this pause is an epoll_ctl each way per request.
        let (channel, counter, _) = try connection(readAhead: false)
        defer { _ = try? channel.finish() }
        try deliver("GET /a HTTP/1.1\r\nHost: x\r\n\r\n", to: channel)
        XCTAssertEqual(counter.reads, 0)
        try answer(on: channel)
        XCTAssertEqual(counter.reads, 1, "the paused read is resumed once the response ended")
    }

    func testAPipelinedRequestPausesReadingUntilTheFirstIsAnswered() throws {
        let (channel, counter, requests) = try connection(readAhead: true)
        defer { _ = try? channel.finish() }
        try deliver("GET /a HTTP/1.1\r\nHost: x\r\n\r\n", to: channel)
        XCTAssertEqual(counter.reads, 1)
        try deliver("GET /b HTTP/1.1\r\nHost: x\r\n\r\nGET /c HTTP/1.1\r\nHost: x\r\n\r\n", to: channel)
        XCTAssertEqual(requests.uris, ["/a"], "held by the pipelining handler until /a is answered")
        XCTAssertEqual(counter.reads, 1, "two requests outstanding: no more is read")
        try answer(on: channel)
        XCTAssertEqual(requests.uris, ["/a", "/b"])
        try answer(on: channel)
        XCTAssertEqual(requests.uris, ["/a", "/b", "/c"])
        XCTAssertEqual(counter.reads, 1, "nothing more is read while pipelined requests wait")
        try answer(on: channel)
        XCTAssertEqual(counter.reads, 2, "the pipelining handler resumed reading once all were answered")
        try deliver("GET /d HTTP/1.1\r\nHost: x\r\n\r\n", to: channel)
        XCTAssertEqual(requests.uris, ["/a", "/b", "/c", "/d"])
        XCTAssertEqual(counter.reads, 3, "one request outstanding again: read on")
    }
}
