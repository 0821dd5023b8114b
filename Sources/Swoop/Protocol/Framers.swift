import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Cuts a byte stream into packets that each end with a terminator byte string
/// (Swoole's `open_eof_split` with `package_eof`).
///
/// Every occurrence of `eof` ends exactly one packet, and the emitted packet keeps the
/// terminator at its end, as Swoole hands it to `onReceive`. Packets are zero-copy slices of
/// the connection's receive buffer.
///
/// Conforming to `NIOSingleStepByteToMessageDecoder` gives the `ByteToMessageDecoder`
/// conformance for free, so the framer works both inside `ByteToMessageHandler` on a reactor
/// channel and in a `NIOSingleStepByteToMessageProcessor` outside any pipeline.
public struct EOFFramer: NIOSingleStepByteToMessageDecoder, Sendable {
    /// Each decoded packet: a slice of the input, terminator included.
    public typealias InboundOut = ByteBuffer

    /// The terminator that ends every packet; never empty.
    public let eof: [UInt8]

    /// The longest packet accepted, terminator included (Swoole's `package_max_length`).
    public let maxLength: Int

    /// How many bytes at the front of the buffer are known not to start a terminator.
    ///
    /// Kept relative to the reader index (not absolute) because the handler may compact
    /// the buffer between calls. It lets a packet that trickles in over many reads be
    /// scanned once in total instead of once per read.
    private var scanned = 0

    /// Creates a framer for one connection.
    ///
    /// - Parameters:
    ///   - eof: The terminator, for example `Array("\r\n".utf8)`. Must not be empty
    ///     (`ServerSettings` validation guarantees it).
    ///   - maxLength: The longest packet accepted, terminator included. A limit shorter than
    ///     the terminator is legal but admits nothing: every packet fails as too long, which
    ///     beats trapping the master over a setting.
    public init(eof: [UInt8], maxLength: Int) {
        precondition(!eof.isEmpty, "EOFFramer needs a non-empty terminator")
        self.eof = eof
        self.maxLength = maxLength
    }

    /// Returns the next complete packet, or `nil` until a terminator has arrived.
    ///
    /// - Throws: `FramingError.packageTooLong` as soon as the buffered bytes prove the current
    ///   packet cannot end within `maxLength`, without waiting for its terminator.
    public mutating func decode(buffer: inout ByteBuffer) throws -> ByteBuffer? {
        let readable = buffer.readableBytes
        if self.scanned > readable {
            // Only possible if someone else consumed from the buffer; start over rather than
            // skip bytes that were never looked at.
            self.scanned = 0
        }
        // A terminator ending past maxLength would make an oversized packet anyway, so the
        // search never needs to look further; this bounds work on a flood without newlines.
        let window = min(readable, self.maxLength)
        if let packetLength = self.packetLength(in: buffer, window: window) {
            self.scanned = 0
            return buffer.readSlice(length: packetLength)
        }
        if readable >= self.maxLength {
            // No terminator ends within the first maxLength bytes, so this packet needs at
            // least maxLength + 1 bytes. Swoole rejects at the same point.
            throw FramingError.packageTooLong(length: readable, max: self.maxLength)
        }
        // The last eof.count - 1 bytes may be the start of a terminator split across reads.
        self.scanned = max(0, readable - (self.eof.count - 1))
        return nil
    }

    /// Delivers the packets still complete in the buffer when the stream ends, then drops
    /// any unterminated tail, matching Swoole, which never passes a partial packet to
    /// `onReceive`.
    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> ByteBuffer? {
        if let packet = try self.decode(buffer: &buffer) {
            return packet
        }
        // Consume the tail rather than leave it, so the buffer's owner sees nothing left
        // over and the bytes are released with the connection, never reinterpreted.
        buffer.moveReaderIndex(forwardBy: buffer.readableBytes)
        self.scanned = 0
        return nil
    }

    /// The length of the first packet (terminator included) if a terminator ends within the
    /// first `window` readable bytes, searching only bytes not scanned before.
    private func packetLength(in buffer: ByteBuffer, window: Int) -> Int? {
        let eof = self.eof
        let eofCount = eof.count
        let lastStart = window - eofCount
        var start = self.scanned
        guard start <= lastStart else { return nil }
        return buffer.withUnsafeReadableBytes { bytes -> Int? in
            guard let base = bytes.baseAddress else { return nil }
            let first = Int32(eof[0])
            // memchr for the first byte lets libc's vectorised scan skip packet bodies; the
            // (short) rest of the terminator is then checked by hand at each candidate.
            while start <= lastStart {
                guard let hit = memchr(base + start, first, lastStart - start + 1) else {
                    return nil
                }
                let candidate = base.distance(to: UnsafeRawPointer(hit))
                var matched = 1
                while matched < eofCount, bytes[candidate + matched] == eof[matched] {
                    matched += 1
                }
                if matched == eofCount {
                    return candidate + eofCount
                }
                start = candidate + 1
            }
            return nil
        }
    }
}

/// Cuts a byte stream into packets that carry their own length in a fixed-position header
/// field (Swoole's `open_length_check`).
///
/// The field of `lengthType` sits `lengthOffset` bytes into each packet, and the packet's
/// total length is `bodyOffset + value`; with `bodyOffset == 0` the value therefore counts the
/// whole packet, header included. Emitted packets include the header, as Swoole hands them to
/// `onReceive`, and are zero-copy slices of the connection's receive buffer.
///
/// Malformed headers throw `FramingError`:
/// - a negative value in a signed field: `.negativeLength(value)`;
/// - a total shorter than `lengthOffset + lengthType.size`, i.e. a packet that could not even
///   contain its own length field (such as a zero length with `bodyOffset == 0`):
///   `.invalidLength(value)`, because accepting it would emit empty packets forever;
/// - a total above `maxLength`: `.packageTooLong`, raised as soon as the header is readable
///   so an oversized body is never buffered.
public struct LengthFieldFramer: NIOSingleStepByteToMessageDecoder, Sendable {
    /// Each decoded packet: a slice of the input, header included.
    public typealias InboundOut = ByteBuffer

    /// Encoding of the length field (Swoole's `package_length_type`).
    public let lengthType: PackageLengthType

    /// Byte offset of the length field within the packet (Swoole's `package_length_offset`).
    public let lengthOffset: Int

    /// What the length value is added to to get the packet length; usually the header size
    /// (Swoole's `package_body_offset`).
    public let bodyOffset: Int

    /// The longest packet accepted, header included (Swoole's `package_max_length`).
    public let maxLength: Int

    /// Bytes needed before the length field can be read; also the smallest legal packet.
    private let headerLength: Int

    /// Creates a framer for one connection.
    ///
    /// - Parameters:
    ///   - lengthType: Encoding of the length field.
    ///   - lengthOffset: Byte offset of the length field within each packet; not negative.
    ///   - bodyOffset: Added to the field's value to get the packet length; not negative.
    ///   - maxLength: The longest packet accepted, header included. A limit below the header
    ///     size admits nothing (every packet fails as too long) rather than trapping.
    ///
    /// Negative offsets trap: they would read bytes before the packet. `ServerSettings`
    /// validation rejects them first.
    public init(lengthType: PackageLengthType, lengthOffset: Int, bodyOffset: Int, maxLength: Int) {
        precondition(lengthOffset >= 0, "LengthFieldFramer lengthOffset must not be negative")
        precondition(bodyOffset >= 0, "LengthFieldFramer bodyOffset must not be negative")
        self.lengthType = lengthType
        self.lengthOffset = lengthOffset
        self.bodyOffset = bodyOffset
        self.maxLength = maxLength
        self.headerLength = lengthOffset + lengthType.size
    }

    /// Returns the next complete packet, or `nil` until all of it has arrived.
    ///
    /// The header is re-read on each call instead of cached: it is a single fixed-offset
    /// load, cheaper than keeping state that must survive buffer compaction.
    ///
    /// - Throws: `FramingError` for a malformed or oversized length, as soon as the header
    ///   is readable.
    public mutating func decode(buffer: inout ByteBuffer) throws -> ByteBuffer? {
        guard buffer.readableBytes >= self.headerLength else {
            return nil
        }
        let packetLength = try self.packetLength(header: buffer)
        guard buffer.readableBytes >= packetLength else {
            return nil
        }
        return buffer.readSlice(length: packetLength)
    }

    /// Delivers the packets still complete in the buffer when the stream ends, then drops
    /// any partial tail, matching Swoole, which never passes a partial packet to `onReceive`.
    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> ByteBuffer? {
        if let packet = try self.decode(buffer: &buffer) {
            return packet
        }
        // Consume the tail rather than leave it, so the buffer's owner sees nothing left
        // over and the bytes are released with the connection, never reinterpreted.
        buffer.moveReaderIndex(forwardBy: buffer.readableBytes)
        return nil
    }

    /// Validates the length field at the front of `header` and returns the whole packet's
    /// length. The caller guarantees `headerLength` readable bytes.
    private func packetLength(header: ByteBuffer) throws -> Int {
        let value = self.lengthValue(in: header)
        if value < 0 {
            throw FramingError.negativeLength(value)
        }
        let (total, overflow) = self.bodyOffset.addingReportingOverflow(value)
        if overflow || total > self.maxLength {
            throw FramingError.packageTooLong(length: overflow ? Int.max : total, max: self.maxLength)
        }
        if total < self.headerLength {
            throw FramingError.invalidLength(value)
        }
        return total
    }

    /// Reads the length field, widened to `Int` so every type compares and adds uniformly
    /// (a 32-bit unsigned value always fits on the 64-bit hosts Swoop targets).
    private func lengthValue(in header: ByteBuffer) -> Int {
        let at = header.readerIndex + self.lengthOffset
        switch self.lengthType {
        case .int8: return Int(header.getInteger(at: at, as: Int8.self)!)
        case .uint8: return Int(header.getInteger(at: at, as: UInt8.self)!)
        case .int16BE: return Int(header.getInteger(at: at, endianness: .big, as: Int16.self)!)
        case .uint16BE: return Int(header.getInteger(at: at, endianness: .big, as: UInt16.self)!)
        case .int16LE: return Int(header.getInteger(at: at, endianness: .little, as: Int16.self)!)
        case .uint16LE: return Int(header.getInteger(at: at, endianness: .little, as: UInt16.self)!)
        case .int32BE: return Int(header.getInteger(at: at, endianness: .big, as: Int32.self)!)
        case .uint32BE: return Int(header.getInteger(at: at, endianness: .big, as: UInt32.self)!)
        case .int32LE: return Int(header.getInteger(at: at, endianness: .little, as: Int32.self)!)
        case .uint32LE: return Int(header.getInteger(at: at, endianness: .little, as: UInt32.self)!)
        }
    }
}
