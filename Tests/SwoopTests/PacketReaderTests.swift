import NIOCore
import NIOEmbedded
import XCTest
@testable import Swoop

/// `PacketReader` replaced NIO's `ByteToMessageHandler` in front of a client connection: for
/// any way a stream is cut into reads it must hand over the packets, and fail, as that
/// handler did with the same framer.
final class PacketReaderTests: XCTestCase {
    private struct Outcome: Equatable {
        var packets: [[UInt8]] = []
        var failed = false
    }

    private func viaReader(_ framer: PacketReader.Framer, _ reads: [[UInt8]]) -> Outcome {
        var reader = PacketReader(framer)
        var outcome = Outcome()
        do {
            for bytes in reads {
                try reader.read(ByteBuffer(bytes: bytes)) { packet in
                    outcome.packets.append(Array(packet.readableBytesView))
                    return true
                }
            }
            try reader.finish { packet in
                outcome.packets.append(Array(packet.readableBytesView))
                return true
            }
        } catch {
            outcome.failed = true
        }
        return outcome
    }

    private func viaNIO<D: NIOSingleStepByteToMessageDecoder>(_ decoder: D, _ reads: [[UInt8]]) -> Outcome
    where D.InboundOut == ByteBuffer {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(decoder))
        var outcome = Outcome()
        func drain() {
            while let packet = try? channel.readInbound(as: ByteBuffer.self) {
                outcome.packets.append(Array(packet.readableBytesView))
            }
        }
        for bytes in reads {
            do {
                try channel.writeInbound(ByteBuffer(bytes: bytes))
            } catch {
                drain()
                outcome.failed = true
                _ = try? channel.finish()
                return outcome
            }
            drain()
        }
        do { _ = try channel.finish() } catch { outcome.failed = true }
        drain()
        return outcome
    }

    /// The stream cut at random places, sometimes into single bytes.
    private func cut(_ stream: [UInt8], using random: inout SystemRandomNumberGenerator) -> [[UInt8]] {
        var reads: [[UInt8]] = []
        var at = 0
        while at < stream.count {
            let size = Int.random(in: 1...max(1, Int.random(in: 1...3, using: &random) == 1 ? 3 : 40), using: &random)
            let end = min(stream.count, at + size)
            reads.append(Array(stream[at..<end]))
            at = end
        }
        return reads
    }

    func testLinesCutAnywhereComeOutAsNIOsHandlerGaveThem() {
        var random = SystemRandomNumberGenerator()
        for round in 0..<300 {
            var stream: [UInt8] = []
            for line in 0..<Int.random(in: 0...12, using: &random) {
                stream += Array("line \(round)-\(line) \(String(repeating: "x", count: Int.random(in: 0...30, using: &random)))\r\n".utf8)
            }
            // Sometimes a partial tail, sometimes one line over the limit.
            if Bool.random(using: &random) { stream += Array("tail".utf8) }
            if round % 10 == 0 { stream += [UInt8](repeating: UInt8(ascii: "y"), count: 70) + Array("\r\n".utf8) }
            let reads = cut(stream, using: &random)
            let framer = EOFFramer(eof: Array("\r\n".utf8), maxLength: 64)
            XCTAssertEqual(viaReader(.eof(framer), reads), viaNIO(framer, reads), "reads \(reads)")
        }
    }

    func testLengthFramedPacketsCutAnywhereComeOutAsNIOsHandlerGaveThem() {
        var random = SystemRandomNumberGenerator()
        for round in 0..<300 {
            var stream: [UInt8] = []
            for _ in 0..<Int.random(in: 0...10, using: &random) {
                let body = [UInt8](repeating: UInt8(round % 256), count: Int.random(in: 0...50, using: &random))
                stream += [0, UInt8(body.count + 2)] + body
            }
            if round % 7 == 0 { stream += [0, 1] }      // shorter than its own header: malformed
            if round % 11 == 0 { stream += [0, 200] }   // over the limit
            if Bool.random(using: &random) { stream += [0, 40, 1, 2] }  // a partial tail
            let reads = cut(stream, using: &random)
            let framer = LengthFieldFramer(lengthType: .uint16BE, lengthOffset: 0, bodyOffset: 0, maxLength: 100)
            XCTAssertEqual(viaReader(.length(framer), reads), viaNIO(framer, reads), "reads \(reads)")
        }
    }

    func testNothingIsHandedOverOnceTheBodySaysTheConnectionClosed() throws {
        var reader = PacketReader(.eof(EOFFramer(eof: [UInt8(ascii: "\n")], maxLength: 100)))
        var seen: [String] = []
        try reader.read(ByteBuffer(string: "a\nb\nc\n")) { packet in
            seen.append(String(buffer: packet))
            return seen.count < 2
        }
        XCTAssertEqual(seen, ["a\n", "b\n"])
    }

    func testALeftoverIsCopiedOutOfTheReadThatCarriedIt() throws {
        var reader = PacketReader(.eof(EOFFramer(eof: [UInt8(ascii: "\n")], maxLength: 1 << 20)))
        var read = ByteBufferAllocator().buffer(capacity: 64 * 1024)
        read.writeString("first\n" + String(repeating: "z", count: 10))
        var packets: [ByteBuffer] = []
        try reader.read(read) { packets.append($0); return true }
        read = ByteBuffer()  // only the packet's slice still refers to the read's storage
        try reader.read(ByteBuffer(string: "\n")) { packets.append($0); return true }
        XCTAssertEqual(packets.map { String(buffer: $0) }, ["first\n", String(repeating: "z", count: 10) + "\n"])
        XCTAssertLessThan(packets[1].capacity, 64 * 1024, "the second packet lives in a buffer of its own size")
    }
}
