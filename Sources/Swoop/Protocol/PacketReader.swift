import NIOCore

/// Cuts a client connection's byte stream into packets with its listener's framer, read
/// after read. `ClientConnection` calls it itself rather than through NIO's
/// `ByteToMessageHandler`, which cost about 3k instructions per packet on the echo
/// benchmark (its buffer bookkeeping, each packet boxed in `NIOAny` and sent through one
/// more handler), a seventh of the base-mode worker's whole cost per packet.
///
/// Packets are slices of the read that carried them. Only bytes a read leaves over (the
/// start of the next packet) are copied, into a buffer of their own that the following
/// reads are appended to until the packet is whole.
struct PacketReader {
    /// A listener's framing (Swoole's `open_eof_split` or `open_length_check`).
    enum Framer {
        case eof(EOFFramer)
        case length(LengthFieldFramer)
    }

    // One of the two is set. Kept apart rather than in the enum so that each packet's
    // decode mutates its framer in place (a framer taken out of an enum and put back is
    // a copy, with its terminator array retained and released, per packet).
    private var eof: EOFFramer?
    private var length: LengthFieldFramer?
    /// The start of a packet that the reads so far ended in the middle of.
    private var held: ByteBuffer?

    init(_ framer: Framer) {
        switch framer {
        case .eof(let framer): eof = framer
        case .length(let framer): length = framer
        }
    }

    /// Hands each whole packet of what has arrived to `body`, in order, until `body` returns
    /// false (the connection closed meanwhile: what is left is dropped). Throws the
    /// framer's `FramingError` at a packet that is too long or malformed.
    mutating func read(_ incoming: ByteBuffer, _ body: (ByteBuffer) -> Bool) throws {
        var buffer: ByteBuffer
        let fromHeld: Bool
        if var stored = held {
            held = nil
            stored.writeImmutableBuffer(incoming)
            buffer = stored
            fromHeld = true
        } else {
            buffer = incoming
            fromHeld = false
        }
        let start = buffer.readerIndex
        while let packet = try next(&buffer, last: false) {
            guard body(packet) else { return }
        }
        guard buffer.readableBytes > 0 else { return }
        if fromHeld && buffer.readerIndex == start {
            // Still the same packet: keep appending to its buffer.
            held = buffer
        } else {
            // A copy of the leftover alone, so that the read's memory goes with its packets.
            var leftover = ByteBufferAllocator().buffer(capacity: buffer.readableBytes)
            leftover.writeImmutableBuffer(buffer)
            held = leftover
        }
    }

    /// The stream ended: hands over the packets still whole in what was held, as
    /// `ByteToMessageHandler` did; the framers drop a partial tail.
    mutating func finish(_ body: (ByteBuffer) -> Bool) throws {
        guard var buffer = held else { return }
        held = nil
        while let packet = try next(&buffer, last: true) {
            guard body(packet) else { return }
        }
    }

    private mutating func next(_ buffer: inout ByteBuffer, last: Bool) throws -> ByteBuffer? {
        if eof != nil {
            return last ? try eof!.decodeLast(buffer: &buffer, seenEOF: true) : try eof!.decode(buffer: &buffer)
        }
        return last ? try length!.decodeLast(buffer: &buffer, seenEOF: true) : try length!.decode(buffer: &buffer)
    }
}
