import NIOCore
import Swoop
import XCTest

#if canImport(NIOEmbedded)
import NIOEmbedded
#endif

/// Unit tests for `EOFFramer`, `LengthFieldFramer` and the shared framing types.
///
/// Every stream is decoded twice: once through `NIOSingleStepByteToMessageProcessor` (NIOCore
/// only, so the suite runs in any test target) and, when NIOEmbedded is linked, once through
/// `ByteToMessageHandler` on an `EmbeddedChannel`, the way a reactor channel runs the framers.
/// Both must produce the same packets and the same error.
final class FramerTests: XCTestCase {

    // MARK: - EOFFramer

    func testEOFSinglePacket() {
        assertDecodes(EOFFramer(eof: bytes("\n"), maxLength: 1024), chunks: [bytes("hello\n")], packets: ["hello\n"])
    }

    func testEOFManyPacketsInOneRead() {
        assertDecodes(
            EOFFramer(eof: bytes("\n"), maxLength: 1024),
            chunks: [bytes("a\nbb\nccc\ndddd\n")],
            packets: ["a\n", "bb\n", "ccc\n", "dddd\n"]
        )
    }

    func testEOFPacketsSplitByteByByte() {
        let stream = bytes("first\nsecond\r\n\nthird\n")
        assertDecodes(
            EOFFramer(eof: bytes("\n"), maxLength: 1024),
            chunks: stream.map { [$0] },
            packets: ["first\n", "second\r\n", "\n", "third\n"]
        )
    }

    func testEOFMultiByteTerminatorSplitAtEveryPosition() {
        let stream = bytes("GET / HTTP/1.1\r\nHost: x\r\n\r\nPOST")
        let expected = ["GET / HTTP/1.1\r\nHost: x\r\n\r\n"]
        for cut in 1..<stream.count {
            assertDecodes(
                EOFFramer(eof: bytes("\r\n\r\n"), maxLength: 1024),
                chunks: [Array(stream[..<cut]), Array(stream[cut...])],
                packets: expected,
                "cut at \(cut)"
            )
        }
        assertDecodes(
            EOFFramer(eof: bytes("\r\n\r\n"), maxLength: 1024),
            chunks: stream.map { [$0] },
            packets: expected,
            "byte by byte"
        )
    }

    func testEOFMultiByteTerminatorSplitOverThreeReads() {
        assertDecodes(
            EOFFramer(eof: bytes("\r\n\r\n"), maxLength: 1024),
            chunks: [bytes("abc\r"), bytes("\n\r"), bytes("\nxyz\r\n\r\n")],
            packets: ["abc\r\n\r\n", "xyz\r\n\r\n"]
        )
    }

    func testEOFPartialTerminatorInsideBodyIsNotASplit() {
        assertDecodes(
            EOFFramer(eof: bytes("\r\n\r\n"), maxLength: 1024),
            chunks: [bytes("a\r\n\rb\r\nc\r\n\r\n")],
            packets: ["a\r\n\rb\r\nc\r\n\r\n"]
        )
    }

    func testEOFOverlappingPrefixIsFound() {
        // The terminator starts one byte after the first candidate: a search that skips past
        // a failed partial match would miss it.
        assertDecodes(EOFFramer(eof: bytes("aab"), maxLength: 64), chunks: [bytes("xaaab")], packets: ["xaaab"])
        assertDecodes(
            EOFFramer(eof: bytes("aab"), maxLength: 64),
            chunks: [bytes("xa"), bytes("a"), bytes("ab")],
            packets: ["xaaab"]
        )
    }

    func testEOFAtVeryStart() {
        assertDecodes(
            EOFFramer(eof: bytes("\r\n"), maxLength: 1024),
            chunks: [bytes("\r\nabc\r\n")],
            packets: ["\r\n", "abc\r\n"]
        )
    }

    func testEOFEmptyPackets() {
        assertDecodes(
            EOFFramer(eof: bytes("\n"), maxLength: 1024),
            chunks: [bytes("\n\n"), bytes("\n")],
            packets: ["\n", "\n", "\n"]
        )
    }

    func testEOFMaxLengthExactlyAtLimitIsAccepted() {
        let packet = "1234567\n"  // 8 bytes, terminator included
        assertDecodes(EOFFramer(eof: bytes("\n"), maxLength: 8), chunks: [bytes(packet + packet)], packets: [packet, packet])
        assertDecodes(EOFFramer(eof: bytes("\n"), maxLength: 8), chunks: bytes(packet).map { [$0] }, packets: [packet])
        assertDecodes(
            EOFFramer(eof: bytes("\r\n"), maxLength: 8),
            chunks: [bytes("123456\r"), bytes("\n")],
            packets: ["123456\r\n"]
        )
    }

    func testEOFOneOverMaxLengthThrows() {
        let packet = bytes("12345678\n")  // 9 bytes
        assertDecodes(
            EOFFramer(eof: bytes("\n"), maxLength: 8),
            chunks: [packet],
            packets: noPackets,
            error: .packageTooLong(length: 9, max: 8)
        )
        // Byte by byte it fails once 8 bytes hold no terminator, before the 9th arrives.
        let result = assertDecodes(
            EOFFramer(eof: bytes("\n"), maxLength: 8),
            chunks: packet.map { [$0] },
            packets: noPackets,
            error: .packageTooLong(length: 8, max: 8)
        )
        XCTAssertEqual(result.failedAfterChunks, 8)
    }

    func testEOFLimitShorterThanTerminatorRejectsEverything() {
        assertDecodes(
            EOFFramer(eof: bytes("\r\n\r\n"), maxLength: 2),
            chunks: [bytes("\r\n\r\n")],
            packets: noPackets,
            error: .packageTooLong(length: 4, max: 2)
        )
    }

    func testEOFGoodPacketsBeforeOversizedOneAreDelivered() {
        assertDecodes(
            EOFFramer(eof: bytes("\n"), maxLength: 4),
            chunks: [bytes("ok\nyes\ntoolong\n")],
            packets: ["ok\n", "yes\n"],
            error: .packageTooLong(length: 8, max: 4)
        )
    }

    func testEOFSixteenMebibytesWithoutTerminatorThrowsEarly() {
        let chunkSize = 64 * 1024
        let chunk = [UInt8](repeating: UInt8(ascii: "x"), count: chunkSize)
        let chunks = [[UInt8]](repeating: chunk, count: 16 * 1024 * 1024 / chunkSize)
        let maxLength = 2 * 1024 * 1024
        let result = decodeBothWays(EOFFramer(eof: bytes("\r\n"), maxLength: maxLength), chunks: chunks)
        XCTAssertEqual(result.packets, [])
        guard case .packageTooLong(_, let max)? = result.error as? FramingError else {
            return XCTFail("expected packageTooLong, got \(String(describing: result.error))")
        }
        XCTAssertEqual(max, maxLength)
        // Fails once maxLength bytes are in, not after buffering all 16 MiB.
        XCTAssertEqual(result.failedAfterChunks, maxLength / chunkSize)
    }

    func testEOFTrailingUnterminatedBytesAreDroppedAtClose() {
        assertDecodes(
            EOFFramer(eof: bytes("\n"), maxLength: 1024),
            chunks: [bytes("one\ntw"), bytes("o")],
            packets: ["one\n"]
        )
        assertDecodes(
            EOFFramer(eof: bytes("\r\n"), maxLength: 1024),
            chunks: [bytes("one\r\ntwo\r")],
            packets: ["one\r\n"]
        )
    }

    func testEOFStreamEndingOnTerminatorLeavesNothing() {
        assertDecodes(EOFFramer(eof: bytes("\n"), maxLength: 1024), chunks: [], packets: noPackets)
        assertDecodes(EOFFramer(eof: bytes("\n"), maxLength: 1024), chunks: [bytes("a\n")], packets: ["a\n"])
    }

    func testEOFBinaryGarbageWithBinaryTerminator() {
        let eof: [UInt8] = [0x00, 0xFF]
        let first: [UInt8] = [0xFF, 0x00, 0x00, 0xFE, 0xFF, 0x00] + eof
        let second: [UInt8] = [0x80, 0x7F, 0x00] + eof
        let result = decodeBothWays(EOFFramer(eof: eof, maxLength: 64), chunks: [Array((first + second)[..<5]), Array((first + second)[5...])])
        XCTAssertNil(result.error)
        XCTAssertEqual(result.packets, [first, second])
    }

    func testEOFPacketsAreSlicesOfTheInput() throws {
        var framer = EOFFramer(eof: bytes("\n"), maxLength: 1024)
        var buffer = ByteBuffer(string: "abc\ndef\n")
        let first = try XCTUnwrap(try framer.decode(buffer: &buffer))
        // A slice shares storage with its parent, so no bytes were copied.
        let sharesStorage = first.withUnsafeReadableBytes { packet in
            buffer.withUnsafeReadableBytes { rest in packet.baseAddress! + 4 == rest.baseAddress! }
        }
        XCTAssertTrue(sharesStorage)
        XCTAssertEqual(String(buffer: first), "abc\n")
    }

    // MARK: - LengthFieldFramer

    func testLengthEveryTypeRoundTrips() {
        for type in PackageLengthType.allCases {
            let bodies: [[UInt8]] = [[], bytes("x"), [UInt8](repeating: 7, count: 100)]
            let packets = bodies.map { header(type, value: $0.count) + $0 }
            let stream = packets.flatMap { $0 }
            let framer = LengthFieldFramer(lengthType: type, lengthOffset: 0, bodyOffset: type.size, maxLength: 1024)
            assertDecodes(framer, chunks: [stream], packets: packets, "\(type) one read")
            assertDecodes(framer, chunks: stream.map { [$0] }, packets: packets, "\(type) byte by byte")
        }
    }

    func testLengthFieldEndiannessIsHonoured() {
        // 0x0102 read the wrong way round would be 0x0201 = 513 and fail maxLength.
        let body = [UInt8](repeating: 1, count: 0x0102)
        let big = LengthFieldFramer(lengthType: .uint16BE, lengthOffset: 0, bodyOffset: 2, maxLength: 300)
        assertDecodes(big, chunks: [[0x01, 0x02] + body], packets: [[0x01, 0x02] + body])
        let little = LengthFieldFramer(lengthType: .uint16LE, lengthOffset: 0, bodyOffset: 2, maxLength: 300)
        assertDecodes(little, chunks: [[0x02, 0x01] + body], packets: [[0x02, 0x01] + body])
        assertDecodes(little, chunks: [[0x01, 0x02] + body], packets: noPackets, error: .packageTooLong(length: 515, max: 300))
    }

    func testLengthSignedNegativeValuesThrow() {
        let cases: [(PackageLengthType, Int)] = [
            (.int8, -1), (.int8, Int(Int8.min)),
            (.int16BE, -1), (.int16BE, Int(Int16.min)),
            (.int16LE, -2), (.int16LE, Int(Int16.min)),
            (.int32BE, -1), (.int32BE, Int(Int32.min)),
            (.int32LE, -300), (.int32LE, Int(Int32.min)),
        ]
        for (type, value) in cases {
            assertDecodes(
                LengthFieldFramer(lengthType: type, lengthOffset: 0, bodyOffset: type.size, maxLength: 1024),
                chunks: [header(type, value: value) + bytes("body")],
                packets: noPackets,
                error: .negativeLength(value),
                "\(type) \(value)"
            )
        }
    }

    func testLengthUnsignedHighBitIsLargeNotNegative() {
        let cases: [(PackageLengthType, Int)] = [
            (.uint8, 0xFF), (.uint16BE, 0xFFFF), (.uint16LE, 0xFFFF),
            (.uint32BE, 0xFFFF_FFFF), (.uint32LE, 0xFFFF_FFFF),
        ]
        for (type, value) in cases {
            assertDecodes(
                LengthFieldFramer(lengthType: type, lengthOffset: 0, bodyOffset: type.size, maxLength: 64),
                chunks: [header(type, value: value)],
                packets: noPackets,
                error: .packageTooLong(length: value + type.size, max: 64),
                "\(type)"
            )
        }
    }

    func testLengthBodyOffsetZeroCountsWholePacket() {
        let body = bytes("hello")
        let packet = header(.uint32BE, value: 4 + body.count) + body
        assertDecodes(
            LengthFieldFramer(lengthType: .uint32BE, lengthOffset: 0, bodyOffset: 0, maxLength: 1024),
            chunks: [packet + packet],
            packets: [packet, packet]
        )
    }

    func testLengthBodyOffsetBeyondLengthField() {
        // Swoole's common layout: length (N), then a request id (N), then the body.
        let body = bytes("payload")
        let packet = header(.uint32BE, value: body.count) + [0, 0, 0, 42] + body
        assertDecodes(
            LengthFieldFramer(lengthType: .uint32BE, lengthOffset: 0, bodyOffset: 8, maxLength: 1024),
            chunks: [Array(packet[..<6]), Array(packet[6...]) + packet],
            packets: [packet, packet]
        )
    }

    func testLengthFieldAfterMagic() {
        let magic: [UInt8] = [0xCA, 0xFE]
        let bodies = [bytes("ab"), bytes(""), bytes("cdef")]
        let packets = bodies.map { magic + header(.uint16BE, value: $0.count) + $0 }
        let stream = packets.flatMap { $0 }
        let framer = LengthFieldFramer(lengthType: .uint16BE, lengthOffset: 2, bodyOffset: 4, maxLength: 1024)
        assertDecodes(framer, chunks: [stream], packets: packets)
        assertDecodes(framer, chunks: stream.map { [$0] }, packets: packets)
    }

    func testLengthFieldAfterMagicWithWholePacketLength() {
        let packet: [UInt8] = [0xCA, 0xFE] + header(.uint16LE, value: 7) + bytes("xyz")
        assertDecodes(
            LengthFieldFramer(lengthType: .uint16LE, lengthOffset: 2, bodyOffset: 0, maxLength: 1024),
            chunks: [packet],
            packets: [packet]
        )
    }

    func testLengthHeaderOnlyPacketIsValid() {
        let packet = header(.uint16BE, value: 0)
        assertDecodes(
            LengthFieldFramer(lengthType: .uint16BE, lengthOffset: 0, bodyOffset: 2, maxLength: 16),
            chunks: [packet + packet],
            packets: [packet, packet]
        )
    }

    func testLengthTooSmallTotalIsInvalid() {
        // Zero with bodyOffset 0 would be an empty packet forever.
        assertDecodes(
            LengthFieldFramer(lengthType: .uint32BE, lengthOffset: 0, bodyOffset: 0, maxLength: 1024),
            chunks: [header(.uint32BE, value: 0) + bytes("junk")],
            packets: noPackets,
            error: .invalidLength(0)
        )
        // Three bytes cannot contain a four-byte length field.
        assertDecodes(
            LengthFieldFramer(lengthType: .uint32LE, lengthOffset: 0, bodyOffset: 0, maxLength: 1024),
            chunks: [header(.uint32LE, value: 3) + bytes("junk")],
            packets: noPackets,
            error: .invalidLength(3)
        )
        // The field sits after a 2-byte magic, so 3 bytes cannot reach its end either.
        assertDecodes(
            LengthFieldFramer(lengthType: .uint16BE, lengthOffset: 2, bodyOffset: 0, maxLength: 1024),
            chunks: [[0xCA, 0xFE] + header(.uint16BE, value: 3)],
            packets: noPackets,
            error: .invalidLength(3)
        )
        // Exactly the header is the smallest legal packet.
        assertDecodes(
            LengthFieldFramer(lengthType: .uint16BE, lengthOffset: 2, bodyOffset: 0, maxLength: 1024),
            chunks: [[0xCA, 0xFE] + header(.uint16BE, value: 4)],
            packets: [[0xCA, 0xFE] + header(.uint16BE, value: 4)]
        )
    }

    func testLengthMaxLengthExactlyAtLimitIsAccepted() {
        let packet = header(.uint16BE, value: 6) + bytes("123456")  // 8 bytes
        assertDecodes(
            LengthFieldFramer(lengthType: .uint16BE, lengthOffset: 0, bodyOffset: 2, maxLength: 8),
            chunks: [packet + packet],
            packets: [packet, packet]
        )
    }

    func testLengthOneOverMaxLengthThrowsAsSoonAsHeaderIsReadable() {
        let framer = LengthFieldFramer(lengthType: .uint16BE, lengthOffset: 0, bodyOffset: 2, maxLength: 8)
        // Only the header is sent; the body is never needed to reject it.
        assertDecodes(framer, chunks: [header(.uint16BE, value: 7)], packets: noPackets, error: .packageTooLong(length: 9, max: 8))
        let result = assertDecodes(
            framer,
            chunks: (header(.uint16BE, value: 7) + bytes("1234567")).map { [$0] },
            packets: noPackets,
            error: .packageTooLong(length: 9, max: 8)
        )
        XCTAssertEqual(result.failedAfterChunks, 2)
    }

    func testLengthLimitBelowHeaderRejectsEverything() {
        assertDecodes(
            LengthFieldFramer(lengthType: .uint32BE, lengthOffset: 0, bodyOffset: 4, maxLength: 0),
            chunks: [header(.uint32BE, value: 0)],
            packets: noPackets,
            error: .packageTooLong(length: 4, max: 0)
        )
    }

    func testLengthHugeDeclaredLengthFailsWithoutBuffering() {
        let framer = LengthFieldFramer(lengthType: .uint32BE, lengthOffset: 0, bodyOffset: 4, maxLength: 2 * 1024 * 1024)
        let result = assertDecodes(
            framer,
            chunks: [header(.uint32BE, value: 16 * 1024 * 1024), [UInt8](repeating: 0, count: 1024)],
            packets: noPackets,
            error: .packageTooLong(length: 16 * 1024 * 1024 + 4, max: 2 * 1024 * 1024)
        )
        XCTAssertEqual(result.failedAfterChunks, 1)
    }

    func testLengthGarbageIsRejected() {
        // Text sent to a binary port: "GET " as a big-endian length is about 1.2 GB.
        assertDecodes(
            LengthFieldFramer(lengthType: .uint32BE, lengthOffset: 0, bodyOffset: 4, maxLength: 2 * 1024 * 1024),
            chunks: [bytes("GET / HTTP/1.1\r\n\r\n")],
            packets: noPackets,
            error: .packageTooLong(length: 0x4745_5420 + 4, max: 2 * 1024 * 1024)
        )
        // High bytes in a signed field read as negative.
        assertDecodes(
            LengthFieldFramer(lengthType: .int16LE, lengthOffset: 0, bodyOffset: 2, maxLength: 1024),
            chunks: [[0xDE, 0xAD, 0xBE, 0xEF]],
            packets: noPackets,
            error: .negativeLength(Int(Int16(bitPattern: 0xADDE)))
        )
    }

    func testLengthGoodPacketsBeforeMalformedOneAreDelivered() {
        let good = header(.int8, value: 1) + bytes("a")
        assertDecodes(
            LengthFieldFramer(lengthType: .int8, lengthOffset: 0, bodyOffset: 1, maxLength: 64),
            chunks: [good + good + header(.int8, value: -5)],
            packets: [good, good],
            error: .negativeLength(-5)
        )
    }

    func testLengthPartialPacketIsDroppedAtClose() {
        let packet = header(.uint16BE, value: 3) + bytes("abc")
        let framer = LengthFieldFramer(lengthType: .uint16BE, lengthOffset: 0, bodyOffset: 2, maxLength: 64)
        assertDecodes(framer, chunks: [packet + Array(packet[..<4])], packets: [packet])
        assertDecodes(framer, chunks: [packet + [0x00]], packets: [packet])
    }

    func testLengthPacketsAreSlicesOfTheInput() throws {
        var framer = LengthFieldFramer(lengthType: .uint8, lengthOffset: 0, bodyOffset: 1, maxLength: 64)
        var buffer = ByteBuffer(bytes: [2, 0x61, 0x62, 1, 0x63])
        let first = try XCTUnwrap(try framer.decode(buffer: &buffer))
        let sharesStorage = first.withUnsafeReadableBytes { packet in
            buffer.withUnsafeReadableBytes { rest in packet.baseAddress! + 3 == rest.baseAddress! }
        }
        XCTAssertTrue(sharesStorage)
        XCTAssertEqual(Array(first.readableBytesView), [2, 0x61, 0x62])
    }

    // MARK: - Randomised round trips

    func testEOFRandomPacketsSurviveRandomCuts() {
        var rng = SplitMix64(seed: 0x5300_0001)
        let terminators = [bytes("\n"), bytes("\r\n"), bytes("\r\n\r\n"), [0x00, 0x00]]
        // A small alphabet rich in terminator bytes makes near-misses common.
        let alphabet = bytes("ab\r\n") + [0x00, 0xFF]
        for round in 0..<200 {
            let eof = terminators[Int.random(in: 0..<terminators.count, using: &rng)]
            var packets: [[UInt8]] = []
            for _ in 0..<Int.random(in: 0...20, using: &rng) {
                packets.append(randomEOFPacket(eof: eof, alphabet: alphabet, maxBody: 40, using: &rng))
            }
            let stream = packets.flatMap { $0 }
            let chunks = randomCuts(stream, using: &rng)
            let result = decodeBothWays(EOFFramer(eof: eof, maxLength: 64), chunks: chunks)
            XCTAssertNil(result.error, "round \(round)")
            XCTAssertEqual(result.packets, packets, "round \(round) eof \(eof) cuts \(chunks.map(\.count))")
        }
    }

    func testLengthRandomPacketsSurviveRandomCuts() {
        var rng = SplitMix64(seed: 0x5300_0002)
        for round in 0..<200 {
            let type = PackageLengthType.allCases[Int.random(in: 0..<PackageLengthType.allCases.count, using: &rng)]
            let lengthOffset = Int.random(in: 0...3, using: &rng)
            let headerLength = lengthOffset + type.size
            let extraHeader = Int.random(in: 0...2, using: &rng)
            let countsWholePacket = Bool.random(using: &rng)
            let bodyOffset = countsWholePacket ? 0 : headerLength + extraHeader
            var packets: [[UInt8]] = []
            for _ in 0..<Int.random(in: 0...20, using: &rng) {
                let body = (0..<Int.random(in: 0...60, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
                let prefix = (0..<lengthOffset).map { _ in UInt8.random(in: 0...255, using: &rng) }
                let suffix = (0..<extraHeader).map { _ in UInt8.random(in: 0...255, using: &rng) }
                let total = headerLength + extraHeader + body.count
                let value = countsWholePacket ? total : total - bodyOffset
                packets.append(prefix + header(type, value: value) + suffix + body)
            }
            let stream = packets.flatMap { $0 }
            let chunks = randomCuts(stream, using: &rng)
            let framer = LengthFieldFramer(lengthType: type, lengthOffset: lengthOffset, bodyOffset: bodyOffset, maxLength: 127)
            let result = decodeBothWays(framer, chunks: chunks)
            XCTAssertNil(result.error, "round \(round) \(type)")
            XCTAssertEqual(result.packets, packets, "round \(round) \(type) offset \(lengthOffset) body \(bodyOffset)")
        }
    }

    // MARK: - Shared types

    func testSwooleCodes() {
        XCTAssertEqual(PackageLengthType(swooleCode: "c"), .int8)
        XCTAssertEqual(PackageLengthType(swooleCode: "C"), .uint8)
        XCTAssertEqual(PackageLengthType(swooleCode: "n"), .uint16BE)
        XCTAssertEqual(PackageLengthType(swooleCode: "N"), .uint32BE)
        XCTAssertEqual(PackageLengthType(swooleCode: "v"), .uint16LE)
        XCTAssertEqual(PackageLengthType(swooleCode: "V"), .uint32LE)
        #if _endian(little)
        XCTAssertEqual(PackageLengthType(swooleCode: "s"), .int16LE)
        XCTAssertEqual(PackageLengthType(swooleCode: "S"), .uint16LE)
        XCTAssertEqual(PackageLengthType(swooleCode: "l"), .int32LE)
        XCTAssertEqual(PackageLengthType(swooleCode: "L"), .uint32LE)
        #endif
        for unknown: Character in ["q", "J", "x", " ", "é"] {
            XCTAssertNil(PackageLengthType(swooleCode: unknown), "\(unknown)")
        }
    }

    func testLengthTypeSizesAndSignedness() {
        XCTAssertEqual(PackageLengthType.allCases.count, 10)
        for type in PackageLengthType.allCases {
            let expectedSize: Int
            switch type {
            case .int8, .uint8: expectedSize = 1
            case .int16BE, .uint16BE, .int16LE, .uint16LE: expectedSize = 2
            default: expectedSize = 4
            }
            XCTAssertEqual(type.size, expectedSize, "\(type)")
        }
        XCTAssertEqual(PackageLengthType.allCases.filter(\.isSigned), [.int8, .int16BE, .int16LE, .int32BE, .int32LE])
    }

    func testFramingErrorDescriptionsNameTheNumbers() {
        XCTAssertTrue(FramingError.packageTooLong(length: 9, max: 8).description.contains("9"))
        XCTAssertTrue(FramingError.packageTooLong(length: 9, max: 8).description.contains("8"))
        XCTAssertTrue(FramingError.negativeLength(-3).description.contains("-3"))
        XCTAssertTrue(FramingError.invalidLength(2).description.contains("2"))
    }
}

// MARK: - Harness

/// What decoding one stream produced, and where it stopped if it failed.
private struct DecodeResult {
    /// Packets in the order emitted, including any emitted at end of stream.
    var packets: [[UInt8]] = []
    /// The first error raised, if any.
    var error: Error?
    /// How many input chunks had been fed when the error was raised (nil if none was).
    var failedAfterChunks: Int?
    /// Bytes the decoder left unconsumed after the stream ended.
    var leftoverBytes = 0
}

/// Raised by the harness when a decoder emits packets without end, which would otherwise
/// hang the suite (for example a framer accepting zero-length packets).
private struct RunawayDecoder: Error {}

/// More packets than any test stream holds.
private let runawayLimit = 10_000

/// Spelled out so calls expecting nothing don't pick between the two `assertDecodes` overloads.
private let noPackets: [[UInt8]] = []

private func bytes(_ string: String) -> [UInt8] {
    Array(string.utf8)
}

/// Encodes `value` the way `type` does on the wire; values out of range for the type are
/// truncated to their bit pattern, which lets tests forge any raw field.
private func header(_ type: PackageLengthType, value: Int) -> [UInt8] {
    var buffer = ByteBuffer()
    switch type {
    case .int8, .uint8: buffer.writeInteger(UInt8(truncatingIfNeeded: value))
    case .int16BE, .uint16BE: buffer.writeInteger(UInt16(truncatingIfNeeded: value), endianness: .big)
    case .int16LE, .uint16LE: buffer.writeInteger(UInt16(truncatingIfNeeded: value), endianness: .little)
    case .int32BE, .uint32BE: buffer.writeInteger(UInt32(truncatingIfNeeded: value), endianness: .big)
    case .int32LE, .uint32LE: buffer.writeInteger(UInt32(truncatingIfNeeded: value), endianness: .little)
    }
    return Array(buffer.readableBytesView)
}

/// Feeds `chunks` to a fresh copy of `decoder` outside any pipeline, then ends the stream.
private func decodeWithProcessor<D: NIOSingleStepByteToMessageDecoder>(
    _ decoder: D,
    chunks: [[UInt8]]
) -> DecodeResult where D.InboundOut == ByteBuffer {
    let processor = NIOSingleStepByteToMessageProcessor(decoder)
    var result = DecodeResult()
    func receive(_ packet: ByteBuffer) throws {
        guard result.packets.count < runawayLimit else { throw RunawayDecoder() }
        result.packets.append(Array(packet.readableBytesView))
    }
    for (index, chunk) in chunks.enumerated() {
        do {
            try processor.process(buffer: ByteBuffer(bytes: chunk), receive)
        } catch {
            result.error = error
            result.failedAfterChunks = index + 1
            return result
        }
    }
    do {
        try processor.finishProcessing(seenEOF: true, receive)
    } catch {
        result.error = error
    }
    result.leftoverBytes = processor.unprocessedBytes
    return result
}

#if canImport(NIOEmbedded)
/// Feeds `chunks` through `ByteToMessageHandler` on an `EmbeddedChannel`, then closes it,
/// as the reactor does for a client that disconnects.
private func decodeWithChannel<D: ByteToMessageDecoder>(
    _ decoder: D,
    chunks: [[UInt8]]
) -> DecodeResult where D.InboundOut == ByteBuffer {
    let channel = EmbeddedChannel(handler: ByteToMessageHandler(decoder))
    var result = DecodeResult()
    func drain() {
        while let packet = try? channel.readInbound(as: ByteBuffer.self) {
            result.packets.append(Array(packet.readableBytesView))
        }
    }
    for (index, chunk) in chunks.enumerated() {
        do {
            try channel.writeInbound(ByteBuffer(bytes: chunk))
        } catch {
            drain()
            result.error = error
            result.failedAfterChunks = index + 1
            _ = try? channel.finish(acceptAlreadyClosed: true)
            return result
        }
        drain()
    }
    do {
        // finish() would report leftover input as an error; the framers must consume it.
        _ = try channel.finish()
    } catch {
        result.error = error
    }
    drain()
    return result
}
#endif

/// Decodes through every available path and checks they agree before returning the result.
private func decodeBothWays<D: NIOSingleStepByteToMessageDecoder>(
    _ decoder: D,
    chunks: [[UInt8]],
    file: StaticString = #filePath,
    line: UInt = #line
) -> DecodeResult where D.InboundOut == ByteBuffer {
    let viaProcessor = decodeWithProcessor(decoder, chunks: chunks)
    if viaProcessor.error is RunawayDecoder {
        // ByteToMessageHandler would spin forever on the same input.
        XCTFail("decoder emitted more than \(runawayLimit) packets", file: file, line: line)
        return viaProcessor
    }
    #if canImport(NIOEmbedded)
    let viaChannel = decodeWithChannel(decoder, chunks: chunks)
    XCTAssertEqual(viaChannel.packets, viaProcessor.packets, "channel vs processor packets", file: file, line: line)
    XCTAssertEqual(
        viaChannel.error as? FramingError,
        viaProcessor.error as? FramingError,
        "channel vs processor error: \(String(describing: viaChannel.error))",
        file: file,
        line: line
    )
    XCTAssertEqual(viaChannel.failedAfterChunks, viaProcessor.failedAfterChunks, "channel vs processor failure point", file: file, line: line)
    #endif
    return viaProcessor
}

/// Asserts that `chunks` decode to exactly `packets` followed by `error` (or no error).
@discardableResult
private func assertDecodes<D: NIOSingleStepByteToMessageDecoder>(
    _ decoder: D,
    chunks: [[UInt8]],
    packets: [[UInt8]],
    error: FramingError? = nil,
    _ message: String = "",
    file: StaticString = #filePath,
    line: UInt = #line
) -> DecodeResult where D.InboundOut == ByteBuffer {
    let result = decodeBothWays(decoder, chunks: chunks, file: file, line: line)
    XCTAssertEqual(result.packets, packets, message, file: file, line: line)
    if let error {
        XCTAssertEqual(result.error as? FramingError, error, "\(message) got \(String(describing: result.error))", file: file, line: line)
    } else {
        XCTAssertNil(result.error, message, file: file, line: line)
        // The framers consume an incomplete tail at end of stream instead of leaving it.
        XCTAssertEqual(result.leftoverBytes, 0, "\(message) leftover", file: file, line: line)
    }
    return result
}

/// String convenience for the common text-protocol case.
@discardableResult
private func assertDecodes<D: NIOSingleStepByteToMessageDecoder>(
    _ decoder: D,
    chunks: [[UInt8]],
    packets: [String],
    error: FramingError? = nil,
    _ message: String = "",
    file: StaticString = #filePath,
    line: UInt = #line
) -> DecodeResult where D.InboundOut == ByteBuffer {
    assertDecodes(decoder, chunks: chunks, packets: packets.map(bytes), error: error, message, file: file, line: line)
}

/// Splits `stream` at random points, including empty chunks, which a reader can deliver.
private func randomCuts(_ stream: [UInt8], using rng: inout SplitMix64) -> [[UInt8]] {
    var chunks: [[UInt8]] = []
    var start = 0
    while start < stream.count {
        let length = Int.random(in: 0...min(stream.count - start, 17), using: &rng)
        chunks.append(Array(stream[start..<start + length]))
        start += length
    }
    return chunks
}

/// A random body plus `eof`, resampled until the terminator occurs only at its end, so the
/// expected split is unambiguous.
private func randomEOFPacket(eof: [UInt8], alphabet: [UInt8], maxBody: Int, using rng: inout SplitMix64) -> [UInt8] {
    while true {
        let body = (0..<Int.random(in: 0...maxBody, using: &rng)).map { _ in alphabet[Int.random(in: 0..<alphabet.count, using: &rng)] }
        let packet = body + eof
        if firstEnd(of: eof, in: packet) == packet.count {
            return packet
        }
    }
}

/// Naive reference search: the end offset of the first occurrence of `needle`.
private func firstEnd(of needle: [UInt8], in haystack: [UInt8]) -> Int? {
    guard haystack.count >= needle.count else { return nil }
    for start in 0...(haystack.count - needle.count) where Array(haystack[start..<start + needle.count]) == needle {
        return start + needle.count
    }
    return nil
}

/// A tiny seeded generator so a failing random round reproduces exactly.
private struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) {
        self.state = seed
    }

    mutating func next() -> UInt64 {
        self.state &+= 0x9E37_79B9_7F4A_7C15
        var z = self.state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
