// How nio-baseline cuts its byte stream into lines.
import NIOCore

/// Cuts a byte stream into lines, each one handed on with its terminating `"\n"`.
///
/// Each line is a slice of the bytes that were read, not a copy, so a server can write (part
/// of) it straight back. Bytes after the last `"\n"` wait for the next read; a stream that
/// ends in the middle of a line drops that fragment, as it is no complete request.
struct LineSplitter: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer

    /// A line this long without a terminator is an error: a peer must not make the decoder
    /// buffer without bound.
    let maximumLineLength: Int

    /// How many bytes at the front of the buffer were already searched for `"\n"`, so that a
    /// line arriving in many small reads is not searched again from its start on each one.
    private var searched = 0

    /// Creates a splitter that refuses lines longer than `maximumLineLength` bytes.
    init(maximumLineLength: Int = 64 * 1024) {
        self.maximumLineLength = maximumLineLength
    }

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        let view = buffer.readableBytesView
        let from = view.index(view.startIndex, offsetBy: searched)
        guard let newline = view[from...].firstIndex(of: UInt8(ascii: "\n")) else {
            searched = view.count
            if searched > maximumLineLength { throw LineTooLongError(length: searched) }
            return .needMoreData
        }
        searched = 0
        let line = buffer.readSlice(length: view.distance(from: view.startIndex, to: newline) + 1)!
        context.fireChannelRead(Self.wrapInboundOut(line))
        return .continue
    }
}

/// A peer sent more than ``LineSplitter/maximumLineLength`` bytes without a `"\n"`.
struct LineTooLongError: Error, CustomStringConvertible {
    /// The bytes buffered when the splitter gave up.
    let length: Int
    var description: String { "a line of more than \(length) bytes without a terminator" }
}
