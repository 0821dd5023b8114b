// Shared pieces of the fuzz harnesses: reading options off the front of an input, cutting a
// byte stream into reads, and failing loudly when an invariant breaks.

#if canImport(Glibc)
import Glibc
#endif

/// The input libFuzzer hands over, read from the front: option bytes first, then the stream.
/// Reading past the end gives zeros, so every input, however short, is a valid run.
struct FuzzInput {
    private let bytes: [UInt8]
    private var position = 0

    init(_ data: UnsafeRawBufferPointer) {
        bytes = Array(data)
    }

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
    }

    var isAtEnd: Bool { position >= bytes.count }

    mutating func byte() -> UInt8 {
        guard position < bytes.count else { return 0 }
        defer { position += 1 }
        return bytes[position]
    }

    mutating func uint16() -> UInt16 {
        UInt16(byte()) << 8 | UInt16(byte())
    }

    /// Up to `count` bytes (fewer at the end of the input).
    mutating func take(_ count: Int) -> [UInt8] {
        let end = min(bytes.count, position + max(0, count))
        defer { position = end }
        return Array(bytes[position..<end])
    }

    /// Everything not read yet.
    mutating func rest() -> [UInt8] {
        defer { position = bytes.count }
        return Array(bytes[min(position, bytes.count)...])
    }
}

/// A small seeded generator: the same input always gives the same run.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// How a stream is cut into the reads a socket could deliver: whole, byte by byte, in small
/// pieces, or in pieces of any size, empty reads included. Chosen by one option byte; the
/// next one seeds the random cuts.
struct Chunking: CustomStringConvertible {
    enum Mode: UInt8 { case whole = 0, bytes, small, any }
    let mode: Mode
    let seed: UInt8

    init(mode: UInt8, seed: UInt8) {
        self.mode = Mode(rawValue: mode & 3)!
        self.seed = seed
    }

    init(_ input: inout FuzzInput) {
        self.init(mode: input.byte(), seed: input.byte())
    }

    func split(_ stream: [UInt8]) -> [[UInt8]] {
        switch mode {
        case .whole:
            return [stream]
        case .bytes:
            return stream.map { [$0] }
        case .small, .any:
            var rng = SplitMix64(seed: UInt64(seed) &+ UInt64(stream.count) << 8)
            let most = mode == .small ? 7 : max(1, stream.count / 2)
            var chunks: [[UInt8]] = []
            var start = 0
            while start < stream.count {
                let length = Int.random(in: 0...min(most, stream.count - start), using: &rng)
                chunks.append(Array(stream[start..<start + length]))
                start += length
            }
            return chunks
        }
    }

    var description: String { "\(mode) cuts (seed \(seed))" }
}

/// Stops the run when an invariant does not hold; libFuzzer then saves the input as a crash.
func fuzzCheck(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
               file: StaticString = #fileID, line: UInt = #line) {
    if !condition() {
        fuzzFail(message(), file: file, line: line)
    }
}

func fuzzFail(_ message: String, file: StaticString = #fileID, line: UInt = #line) -> Never {
    let text = "fuzz invariant broken at \(file):\(line): \(message)\n"
    var bytes = Array(text.utf8)
    _ = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
    abort()
}

/// A short, printable form of some bytes for failure messages.
func fuzzDescribe(_ bytes: some Collection<UInt8>, limit: Int = 96) -> String {
    var text = ""
    for byte in bytes.prefix(limit) {
        switch byte {
        case 0x20...0x7E where byte != UInt8(ascii: "\\"): text.append(Character(Unicode.Scalar(byte)))
        case UInt8(ascii: "\n"): text += "\\n"
        case UInt8(ascii: "\r"): text += "\\r"
        default: text += "\\x" + (byte < 16 ? "0" : "") + String(byte, radix: 16)
        }
    }
    if bytes.count > limit { text += "…(\(bytes.count) bytes)" }
    return text
}
