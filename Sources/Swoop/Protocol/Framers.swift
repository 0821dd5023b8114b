import NIOCore
// Temporary stub, replaced by the framing work.
struct EOFFramer: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer
    let eof: [UInt8]; let maxLength: Int
    init(eof: [UInt8], maxLength: Int) { self.eof = eof; self.maxLength = maxLength }
    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let i = buffer.readableBytesView.firstIndex(of: eof[0]) else { return .needMoreData }
        let n = i - buffer.readerIndex + 1
        context.fireChannelRead(Self.wrapInboundOut(buffer.readSlice(length: n)!))
        return .continue
    }
}
struct LengthFieldFramer: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer
    init(lengthType: PackageLengthType, lengthOffset: Int, bodyOffset: Int, maxLength: Int) {}
    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState { .needMoreData }
}
