// Fuzz harnesses for the stream framers, `EOFFramer` and `LengthFieldFramer`.
//
// Each run cuts an arbitrary stream into arbitrary reads and decodes it twice, through
// `NIOSingleStepByteToMessageProcessor` and through `ByteToMessageHandler` on an
// `EmbeddedChannel` (the reactor's path). Both must agree with each other and with a naive
// reference that sees the whole stream at once: the same packets, then the same error or none.
// Every packet must respect `maxLength`, and the packets must be the stream's own bytes, in order.

import NIOCore
import NIOEmbedded

public enum FramerFuzz {
    /// Input: [config] [maxLength] [chunk mode] [chunk seed] [terminator (1–4 bytes)] stream…
    /// config bits 0–1: terminator length − 1.
    public static func eofFramer(_ data: UnsafeRawBufferPointer) {
        var input = FuzzInput(data)
        let config = input.byte()
        let limitByte = input.byte()
        // 1…128, or 64…8128 in steps of 64: small limits make the too-long path common.
        let maxLength = limitByte & 0x80 == 0 ? Int(limitByte) + 1 : Int(limitByte & 0x7F) * 64 + 64
        let chunking = Chunking(&input)
        let eof = input.take(Int(config & 3) + 1)
        guard eof.count == Int(config & 3) + 1 else { return }
        let stream = input.rest()

        let expected = referenceEOF(stream, eof: eof, maxLength: maxLength)
        let chunks = chunking.split(stream)
        let what = "EOFFramer(eof: \(fuzzDescribe(eof)), maxLength: \(maxLength)), \(chunking)"
        for (path, result) in decodeBothWays(EOFFramer(eof: eof, maxLength: maxLength), chunks: chunks) {
            checkCommon(result, stream: stream, maxLength: maxLength, what: "\(what) via \(path)")
            fuzzCheck(result.packets == expected.packets,
                      "\(what) via \(path): \(result.packets.count) packets, the reference \(expected.packets.count)")
            for packet in result.packets {
                fuzzCheck(packet.count >= eof.count && Array(packet.suffix(eof.count)) == eof,
                          "\(what) via \(path): a packet does not end with the terminator: \(fuzzDescribe(packet))")
            }
            switch (result.error, expected.tooLong) {
            case (nil, false):
                break
            case (.packageTooLong(let length, let max)?, true):
                fuzzCheck(max == maxLength && length >= maxLength,
                          "\(what) via \(path): packageTooLong(\(length), \(max))")
            default:
                fuzzFail("\(what) via \(path): error \(String(describing: result.error)), the reference expects "
                         + (expected.tooLong ? "packageTooLong" : "none"))
            }
        }
    }

    /// Input: [type] [lengthOffset] [bodyOffset] [maxLength hi] [maxLength lo] [chunk mode] [chunk seed] stream…
    public static func lengthFieldFramer(_ data: UnsafeRawBufferPointer) {
        var input = FuzzInput(data)
        let types = PackageLengthType.allCases
        let type = types[Int(input.byte()) % types.count]
        let lengthOffset = Int(input.byte() % 8)
        let bodyOffset = Int(input.byte() % 16)
        let maxLength = Int(input.uint16() % 4096)
        let chunking = Chunking(&input)
        let stream = input.rest()

        let expected = referenceLength(stream, type: type, lengthOffset: lengthOffset, bodyOffset: bodyOffset,
                                       maxLength: maxLength)
        let chunks = chunking.split(stream)
        let framer = LengthFieldFramer(lengthType: type, lengthOffset: lengthOffset, bodyOffset: bodyOffset,
                                       maxLength: maxLength)
        let what = "LengthFieldFramer(\(type), lengthOffset: \(lengthOffset), bodyOffset: \(bodyOffset), "
            + "maxLength: \(maxLength)), \(chunking)"
        for (path, result) in decodeBothWays(framer, chunks: chunks) {
            checkCommon(result, stream: stream, maxLength: maxLength, what: "\(what) via \(path)")
            fuzzCheck(result.packets == expected.packets,
                      "\(what) via \(path): \(result.packets.count) packets, the reference \(expected.packets.count)")
            fuzzCheck(result.error == expected.error,
                      "\(what) via \(path): error \(String(describing: result.error)), the reference "
                      + String(describing: expected.error))
            for packet in result.packets {
                fuzzCheck(packet.count >= lengthOffset + type.size,
                          "\(what) via \(path): a packet of \(packet.count) bytes is shorter than its header")
            }
        }
    }

    // MARK: References

    /// The first end of `needle` in `haystack`, by brute force.
    private static func firstEnd(of needle: [UInt8], in haystack: ArraySlice<UInt8>) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        var start = haystack.startIndex
        while start + needle.count <= haystack.endIndex {
            if haystack[start..<start + needle.count].elementsEqual(needle) {
                return start + needle.count - haystack.startIndex
            }
            start += 1
        }
        return nil
    }

    private static func referenceEOF(_ stream: [UInt8], eof: [UInt8], maxLength: Int)
        -> (packets: [[UInt8]], tooLong: Bool)
    {
        var packets: [[UInt8]] = []
        var start = 0
        while true {
            let remaining = stream.count - start
            // A terminator must end within maxLength bytes of the packet's start.
            let window = stream[start..<start + min(remaining, maxLength)]
            if let end = firstEnd(of: eof, in: window) {
                packets.append(Array(stream[start..<start + end]))
                start += end
                continue
            }
            // maxLength bytes without a terminator ending among them: the packet is too long.
            return (packets, remaining >= maxLength)
        }
    }

    private static func referenceLength(_ stream: [UInt8], type: PackageLengthType, lengthOffset: Int,
                                        bodyOffset: Int, maxLength: Int) -> (packets: [[UInt8]], error: FramingError?)
    {
        var packets: [[UInt8]] = []
        var start = 0
        let header = lengthOffset + type.size
        while stream.count - start >= header {
            let field = Array(stream[(start + lengthOffset)..<(start + header)])
            let bigEndian: [UInt8]
            switch type {
            case .int16LE, .uint16LE, .int32LE, .uint32LE: bigEndian = field.reversed()
            default: bigEndian = field
            }
            var unsigned = 0
            for byte in bigEndian { unsigned = unsigned << 8 | Int(byte) }
            let bits = type.size * 8
            let value = type.isSigned && unsigned >= 1 << (bits - 1) ? unsigned - (1 << bits) : unsigned
            if value < 0 { return (packets, .negativeLength(value)) }
            let total = bodyOffset + value
            if total > maxLength { return (packets, .packageTooLong(length: total, max: maxLength)) }
            if total < header { return (packets, .invalidLength(value)) }
            guard stream.count - start >= total else { break }
            packets.append(Array(stream[start..<start + total]))
            start += total
        }
        return (packets, nil)
    }

    // MARK: Decoding

    struct Decoded {
        var packets: [[UInt8]] = []
        var error: FramingError?
        var leftover = 0
    }

    /// Checks what holds for any framer: packets within the limit, the stream's own bytes in
    /// order, nothing left in the buffer after a clean end.
    private static func checkCommon(_ result: Decoded, stream: [UInt8], maxLength: Int, what: String) {
        var offset = 0
        for packet in result.packets {
            fuzzCheck(packet.count <= maxLength, "\(what): a packet of \(packet.count) bytes exceeds \(maxLength)")
            fuzzCheck(!packet.isEmpty, "\(what): an empty packet")
            fuzzCheck(offset + packet.count <= stream.count && stream[offset..<offset + packet.count].elementsEqual(packet),
                      "\(what): packet at \(offset) is not the stream's next bytes")
            offset += packet.count
        }
        if result.error == nil {
            fuzzCheck(result.leftover == 0, "\(what): \(result.leftover) bytes left in the buffer at the end")
        }
    }

    private static func decodeBothWays<D: NIOSingleStepByteToMessageDecoder>(_ decoder: D, chunks: [[UInt8]])
        -> [(String, Decoded)] where D.InboundOut == ByteBuffer
    {
        let bound = chunks.reduce(1) { $0 + $1.count }
        let viaProcessor = decodeWithProcessor(decoder, chunks: chunks, bound: bound)
        let viaChannel = decodeWithChannel(decoder, chunks: chunks, bound: bound)
        return [("processor", viaProcessor), ("ByteToMessageHandler", viaChannel)]
    }

    private struct Runaway: Error {}

    private static func decodeWithProcessor<D: NIOSingleStepByteToMessageDecoder>(
        _ decoder: D, chunks: [[UInt8]], bound: Int
    ) -> Decoded where D.InboundOut == ByteBuffer {
        let processor = NIOSingleStepByteToMessageProcessor(decoder)
        var result = Decoded()
        func receive(_ packet: ByteBuffer) throws {
            result.packets.append(Array(packet.readableBytesView))
            // Every packet takes at least one byte of the stream.
            if result.packets.count > bound { throw Runaway() }
        }
        do {
            for chunk in chunks {
                try processor.process(buffer: ByteBuffer(bytes: chunk), receive)
            }
            try processor.finishProcessing(seenEOF: true, receive)
        } catch let error as FramingError {
            result.error = error
            return result
        } catch is Runaway {
            fuzzFail("the framer emitted more packets than the stream has bytes")
        } catch {
            fuzzFail("unexpected error \(error)")
        }
        result.leftover = processor.unprocessedBytes
        return result
    }

    private static func decodeWithChannel<D: ByteToMessageDecoder>(
        _ decoder: D, chunks: [[UInt8]], bound: Int
    ) -> Decoded where D.InboundOut == ByteBuffer {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(decoder))
        var result = Decoded()
        func drain() {
            while let packet = try? channel.readInbound(as: ByteBuffer.self) {
                result.packets.append(Array(packet.readableBytesView))
                if result.packets.count > bound { fuzzFail("the framer emitted more packets than the stream has bytes") }
            }
        }
        do {
            for chunk in chunks {
                try channel.writeInbound(ByteBuffer(bytes: chunk))
                drain()
            }
            // finish() reports input left in the handler as an error: the framers consume it.
            _ = try channel.finish()
            drain()
        } catch let error as FramingError {
            drain()
            result.error = error
            _ = try? channel.finish(acceptAlreadyClosed: true)
        } catch {
            fuzzFail("unexpected error \(error) from the channel")
        }
        return result
    }
}
