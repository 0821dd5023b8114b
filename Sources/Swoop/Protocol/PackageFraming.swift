/// The integer encoding of a packet's length field, for listeners that cut their byte
/// stream by a length header (Swoole's `open_length_check` with `package_length_type`).
///
/// The EOF-delimited alternative (Swoole's `open_eof_split`) needs no such type; see `EOFFramer`.
public enum PackageLengthType: Sendable, Hashable, CaseIterable {
    /// Signed 8-bit.
    case int8
    /// Unsigned 8-bit.
    case uint8
    /// Signed 16-bit, big endian.
    case int16BE
    /// Unsigned 16-bit, big endian (network order).
    case uint16BE
    /// Signed 16-bit, little endian.
    case int16LE
    /// Unsigned 16-bit, little endian.
    case uint16LE
    /// Signed 32-bit, big endian.
    case int32BE
    /// Unsigned 32-bit, big endian (network order).
    case uint32BE
    /// Signed 32-bit, little endian.
    case int32LE
    /// Unsigned 32-bit, little endian.
    case uint32LE

    /// Maps Swoole's `package_length_type`, which borrows PHP `pack()` letters:
    /// `c C s S n N l L v V`.
    ///
    /// `s S l L` are "machine byte order" in PHP, so they follow the host's endianness
    /// (little endian on x86-64 and arm64 Linux) to stay wire-compatible with a Swoole
    /// server on the same kind of machine. Returns `nil` for any other character,
    /// including PHP letters Swoole rejects such as `q`/`J` (64-bit).
    public init?(swooleCode: Character) {
        switch swooleCode {
        case "c": self = .int8
        case "C": self = .uint8
        case "n": self = .uint16BE
        case "N": self = .uint32BE
        case "v": self = .uint16LE
        case "V": self = .uint32LE
        #if _endian(big)
        case "s": self = .int16BE
        case "S": self = .uint16BE
        case "l": self = .int32BE
        case "L": self = .uint32BE
        #else
        case "s": self = .int16LE
        case "S": self = .uint16LE
        case "l": self = .int32LE
        case "L": self = .uint32LE
        #endif
        default: return nil
        }
    }

    /// Width of the length field in bytes.
    public var size: Int {
        switch self {
        case .int8, .uint8: return 1
        case .int16BE, .uint16BE, .int16LE, .uint16LE: return 2
        case .int32BE, .uint32BE, .int32LE, .uint32LE: return 4
        }
    }

    /// Whether the field can encode negative values, which a framer must reject.
    public var isSigned: Bool {
        switch self {
        case .int8, .int16BE, .int16LE, .int32BE, .int32LE: return true
        case .uint8, .uint16BE, .uint16LE, .uint32BE, .uint32LE: return false
        }
    }
}

/// A protocol violation found while cutting a connection's byte stream into packets.
///
/// A framer that throws one of these cannot resynchronise (it no longer knows where the
/// next packet starts), so the connection handler closes that client and logs the error.
public enum FramingError: Error, Equatable, CustomStringConvertible {
    /// The packet is longer than the listener's `package_max_length`.
    ///
    /// `length` is the packet's full length when the framer knows it (a length header was
    /// read, or the terminator was found). For an unterminated EOF-delimited packet it is
    /// the number of bytes buffered so far, which already proves the limit is exceeded.
    case packageTooLong(length: Int, max: Int)
    /// A signed length field held a negative value.
    case negativeLength(Int)
    /// A length field produced a packet too short to contain the length field itself
    /// (for example a zero length with `bodyOffset == 0`).
    ///
    /// Accepting it would make the framer emit empty or overlapping packets forever, so it
    /// is malformed input rather than an empty message. The payload is the raw field value.
    case invalidLength(Int)

    /// A one-line message meant for the server log.
    public var description: String {
        switch self {
        case .packageTooLong(let length, let max):
            return "package too long: \(length) bytes exceeds package_max_length \(max)"
        case .negativeLength(let value):
            return "invalid package: negative length field \(value)"
        case .invalidLength(let value):
            return "invalid package: length field \(value) is shorter than the package header"
        }
    }
}
