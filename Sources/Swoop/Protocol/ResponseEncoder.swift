import CNIOExtrasZlib
import NIOCore
import NIOHTTP1

/// HTTP/1 responses as bytes, for the responses ``RawResponse`` does not take (streams, HEAD,
/// refusals, static files). The rules and bytes are those of NIO's `HTTPResponseEncoder`, which
/// wrote them before the session left NIO's pipeline: the framing headers are corrected (a
/// status without a body loses Content-Length and Transfer-Encoding; a body of unknown length
/// is chunked on HTTP/1.1), then the status line and the fields in order.
enum ResponseEncoder {
    /// The head's bytes, and whether the body that follows is chunked.
    static func encode(_ head: HTTPResponseHead, allocator: ByteBufferAllocator) -> (bytes: ByteBuffer, chunked: Bool) {
        var fields = head.headers
        var chunked = false
        if !head.status.mayHaveResponseBody {
            fields.remove(name: "content-length")
            fields.remove(name: "transfer-encoding")
        } else if fields.contains(name: "content-length") {
            fields.remove(name: "transfer-encoding")
        } else if head.version.major == 1 && head.version.minor >= 1 {
            fields.replaceOrAdd(name: "transfer-encoding", value: "chunked")
            chunked = true
        }
        var buffer = allocator.buffer(capacity: 256)
        buffer.writeString("HTTP/\(head.version.major).\(head.version.minor) \(head.status.code) \(head.status.reasonPhrase)\r\n")
        for (name, value) in fields {
            buffer.writeString(name)
            buffer.writeStaticString(": ")
            buffer.writeString(value)
            buffer.writeStaticString("\r\n")
        }
        buffer.writeStaticString("\r\n")
        return (buffer, chunked)
    }

    /// A chunk's size line, to go before its bytes (and `chunkEnd` after them).
    static func chunkStart(_ length: Int, allocator: ByteBufferAllocator) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: 12)
        buffer.writeString(String(length, radix: 16))
        buffer.writeStaticString("\r\n")
        return buffer
    }

    static let chunkEnd = ByteBuffer(staticString: "\r\n")
    /// The end of a chunked body (no trailers).
    static let lastChunk = ByteBuffer(staticString: "0\r\n\r\n")
}

/// A response body compressed with gzip or deflate (zlib, as vendored by swift-nio-extras),
/// when `httpCompression` is on and the client accepts it: whole, or part by part for a
/// stream (each part flushed, so that the client gets it at once).
final class ResponseCompressor {
    enum Algorithm: String {
        case gzip, deflate
    }

    let algorithm: Algorithm
    private let stream = UnsafeMutablePointer<cnioextras_z_stream>.allocate(capacity: 1)

    init(_ algorithm: Algorithm) {
        self.algorithm = algorithm
        stream.initialize(to: cnioextras_z_stream())
        // 15: a 32 KiB window; 16 more asks zlib for the gzip wrapper instead of zlib's own.
        let result = CNIOExtrasZlib_deflateInit2(stream, CNIOEXTRAS_Z_DEFAULT_COMPRESSION, CNIOEXTRAS_Z_DEFLATED,
                                                 algorithm == .gzip ? 16 + 15 : 15, 8, CNIOEXTRAS_Z_DEFAULT_STRATEGY)
        precondition(result == CNIOEXTRAS_Z_OK, "zlib could not start a stream: \(result)")
    }

    deinit {
        cnioextras_z_deflateEnd(stream)
        stream.deinitialize(count: 1)
        stream.deallocate()
    }

    /// Compresses the next part; `last`: the body ends with it (the stream is finished).
    func compress(_ input: ByteBuffer, last: Bool, allocator: ByteBufferAllocator) -> ByteBuffer {
        let flush = last ? CNIOEXTRAS_Z_FINISH : CNIOEXTRAS_Z_SYNC_FLUSH
        var output = allocator.buffer(capacity: Int(cnioextras_z_deflateBound(stream, UInt(input.readableBytes))) + 16)
        input.withUnsafeReadableBytes { source in
            stream.pointee.next_in = UnsafeMutablePointer(mutating: source.bindMemory(to: UInt8.self).baseAddress)
            stream.pointee.avail_in = UInt32(source.count)
            while true {
                if output.writableBytes == 0 { output.reserveCapacity(minimumWritableBytes: 4096) }
                var result: Int32 = 0
                output.writeWithUnsafeMutableBytes(minimumWritableBytes: 1) { space in
                    stream.pointee.next_out = space.bindMemory(to: UInt8.self).baseAddress
                    stream.pointee.avail_out = UInt32(space.count)
                    result = cnioextras_z_deflate(stream, flush)
                    return space.count - Int(stream.pointee.avail_out)
                }
                precondition(result == CNIOEXTRAS_Z_OK || result == CNIOEXTRAS_Z_STREAM_END || result == CNIOEXTRAS_Z_BUF_ERROR,
                             "zlib failed to compress: \(result)")
                // Done once zlib took all the input and had room to spare (a flush is then
                // complete), or ended the stream.
                if result == CNIOEXTRAS_Z_STREAM_END { break }
                if stream.pointee.avail_in == 0 && stream.pointee.avail_out > 0 && !last { break }
            }
            stream.pointee.next_in = nil
            stream.pointee.next_out = nil
        }
        return output
    }

    /// The coding to use for a request's Accept-Encoding values: gzip or deflate, whichever
    /// has the higher q-value (gzip on a tie, and for `*`); nil when neither is accepted.
    static func algorithm(accepting values: [String]) -> Algorithm? {
        var gzip: Double = -1, deflate: Double = -1, any: Double = -1
        for value in values {
            for item in value.split(separator: ",") {
                let parts = item.split(separator: ";")
                guard let name = parts.first?.trimmingSpaces.lowercased() else { continue }
                var quality = 1.0
                for parameter in parts.dropFirst() {
                    let pair = parameter.trimmingSpaces
                    if pair.lowercased().hasPrefix("q="), let q = Double(pair.dropFirst(2)) { quality = q }
                }
                switch name {
                case "gzip", "x-gzip": gzip = quality
                case "deflate": deflate = quality
                case "*": any = quality
                default: break
                }
            }
        }
        if gzip > 0 || deflate > 0 { return gzip >= deflate ? .gzip : .deflate }
        return any > 0 ? .gzip : nil
    }

    /// Which responses are compressed: text of at least `minLength` bytes, or streamed text
    /// (its length unknown), and nothing the handler encoded itself.
    static func applies(to fields: HTTPHeaders, status: HTTPResponseStatus, minLength: Int) -> Bool {
        guard status.mayHaveResponseBody, !fields.contains(name: "Content-Encoding") else { return false }
        if let length = fields.first(name: "Content-Length").flatMap(Int.init), length < minLength { return false }
        let type = fields.first(name: "Content-Type")?.lowercased() ?? ""
        return type.hasPrefix("text/") || type.hasPrefix("application/json") || type.contains("javascript")
            || type.hasPrefix("application/xml") || type.hasPrefix("image/svg+xml") || type.hasSuffix("+json")
    }
}
