import CNIOExtrasZlib
import NIOCore
import NIOEmbedded
import NIOHTTP1
import XCTest
@testable import Swoop

/// `ResponseEncoder` writes what NIO's `HTTPResponseEncoder` wrote before it, and
/// `ResponseCompressor` what zlib's inflate reads back.
final class ResponseEncoderTests: XCTestCase {
    /// NIO's encoding of a head and a body given in parts, through its encoder in a channel.
    private func nio(_ head: HTTPResponseHead, parts: [String]) throws -> String {
        let channel = EmbeddedChannel(handler: HTTPResponseEncoder())
        defer { _ = try? channel.finish() }
        try channel.writeOutbound(HTTPServerResponsePart.head(head))
        for part in parts { try channel.writeOutbound(HTTPServerResponsePart.body(.byteBuffer(ByteBuffer(string: part)))) }
        try channel.writeOutbound(HTTPServerResponsePart.end(nil))
        var text = ""
        while let data = try channel.readOutbound(as: IOData.self) {
            if case .byteBuffer(let buffer) = data { text += String(buffer: buffer) }
        }
        return text
    }

    /// Swoop's encoding of the same, as `HTTPSession` writes a stream.
    private func swoop(_ head: HTTPResponseHead, parts: [String]) -> String {
        let (bytes, chunked) = ResponseEncoder.encode(head, allocator: ByteBufferAllocator())
        var text = String(buffer: bytes)
        for part in parts where !part.isEmpty {
            if chunked {
                text += String(buffer: ResponseEncoder.chunkStart(part.utf8.count, allocator: ByteBufferAllocator()))
                text += part + String(buffer: ResponseEncoder.chunkEnd)
            } else {
                text += part
            }
        }
        if chunked { text += String(buffer: ResponseEncoder.lastChunk) }
        return text
    }

    func testHeadsAndBodiesAreNIOsBytes() throws {
        let cases: [(HTTPResponseHead, [String])] = [
            (HTTPResponseHead(version: .http1_1, status: .ok, headers: ["Content-Length": "5", "X-A": "b"]), ["hello"]),
            (HTTPResponseHead(version: .http1_1, status: .ok, headers: ["Content-Type": "text/plain"]), ["a", "", "bcdefghijklmnopqrstuvwxyz0123"]),
            (HTTPResponseHead(version: .http1_0, status: .ok, headers: ["Connection": "keep-alive"]), ["streamed"]),
            (HTTPResponseHead(version: .http1_1, status: .noContent, headers: ["Content-Length": "3", "Transfer-Encoding": "chunked"]), []),
            (HTTPResponseHead(version: .http1_1, status: .notModified, headers: ["ETag": "\"x\""]), []),
            (HTTPResponseHead(version: .http1_1, status: .custom(code: 599, reasonPhrase: "Odd"), headers: ["Content-Length": "0"]), []),
            (HTTPResponseHead(version: .http1_1, status: .continue, headers: [:]), []),
            (HTTPResponseHead(version: .http1_1, status: .notFound, headers: ["Transfer-Encoding": "gzip", "Content-Length": "2"]), ["no"]),
        ]
        for (head, parts) in cases {
            XCTAssertEqual(swoop(head, parts: parts), try nio(head, parts: parts), "\(head)")
        }
    }

    /// zlib's inflate of what the compressor wrote (gzip or zlib wrapper, told apart by inflate).
    private func inflate(_ compressed: [UInt8]) -> [UInt8] {
        var stream = cnioextras_z_stream()
        XCTAssertEqual(CNIOExtrasZlib_inflateInit2(&stream, 15 + 32), CNIOEXTRAS_Z_OK)
        defer { cnioextras_z_inflateEnd(&stream) }
        var input = compressed
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        input.withUnsafeMutableBufferPointer { source in
            stream.next_in = source.baseAddress
            stream.avail_in = UInt32(source.count)
            while true {
                let produced = chunk.withUnsafeMutableBufferPointer { space -> Int in
                    stream.next_out = space.baseAddress
                    stream.avail_out = UInt32(space.count)
                    let result = cnioextras_z_inflate(&stream, CNIOEXTRAS_Z_NO_FLUSH)
                    XCTAssertTrue(result == CNIOEXTRAS_Z_OK || result == CNIOEXTRAS_Z_STREAM_END || result == CNIOEXTRAS_Z_BUF_ERROR)
                    return space.count - Int(stream.avail_out)
                }
                output += chunk[..<produced]
                if produced == 0 { break }
            }
        }
        return output
    }

    func testCompressedBodiesInflateToTheOriginalWholeOrInParts() {
        let text = (0..<2000).map { "line \($0) of some compressible text\n" }.joined()
        let allocator = ByteBufferAllocator()
        for algorithm in [ResponseCompressor.Algorithm.gzip, .deflate] {
            let whole = ResponseCompressor(algorithm).compress(ByteBuffer(string: text), last: true, allocator: allocator)
            XCTAssertLessThan(whole.readableBytes, text.utf8.count / 4)
            if algorithm == .gzip { XCTAssertEqual(Array(whole.readableBytesView.prefix(2)), [0x1f, 0x8b]) }
            XCTAssertEqual(String(decoding: inflate(Array(whole.readableBytesView)), as: UTF8.self), text)

            // A stream: each part flushed (readable as it comes), the last one ends it.
            let compressor = ResponseCompressor(algorithm)
            var streamed: [UInt8] = []
            var sent = ""
            for index in 0..<50 {
                let part = "part \(index)\n"
                sent += part
                streamed += compressor.compress(ByteBuffer(string: part), last: false, allocator: allocator).readableBytesView
                XCTAssertEqual(String(decoding: inflate(streamed), as: UTF8.self), sent, "part \(index) can be read at once")
            }
            streamed += compressor.compress(ByteBuffer(), last: true, allocator: allocator).readableBytesView
            XCTAssertEqual(String(decoding: inflate(streamed), as: UTF8.self), sent)
        }
    }

    func testTheCodingFollowsAcceptEncoding() {
        XCTAssertEqual(ResponseCompressor.algorithm(accepting: ["gzip"]), .gzip)
        XCTAssertEqual(ResponseCompressor.algorithm(accepting: ["deflate, gzip, br"]), .gzip, "gzip on a tie")
        XCTAssertEqual(ResponseCompressor.algorithm(accepting: ["gzip;q=0.5", "deflate;q=0.8"]), .deflate)
        XCTAssertEqual(ResponseCompressor.algorithm(accepting: ["x-gzip; q=1.0"]), .gzip)
        XCTAssertEqual(ResponseCompressor.algorithm(accepting: ["*"]), .gzip)
        XCTAssertNil(ResponseCompressor.algorithm(accepting: ["gzip;q=0, deflate;q=0"]))
        XCTAssertNil(ResponseCompressor.algorithm(accepting: ["br, identity"]))
        XCTAssertNil(ResponseCompressor.algorithm(accepting: []))
    }
}
