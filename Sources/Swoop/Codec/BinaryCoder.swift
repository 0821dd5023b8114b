import Foundation
import NIOCore

// MARK: - Wire format

/// Constants of the compact binary format that `BinaryEncoder` writes and `BinaryDecoder` reads.
///
/// Task payloads cross process boundaries (master, workers, task workers), so the format
/// favours speed and size over readability, yet every value stays self-describing enough
/// that a reader can check kinds, skip what it does not need and report what it found.
///
/// A payload is laid out as
///
///     header      0xCB, then version << 4 | flags, then the type fingerprint (UInt32, little endian)
///     [type name] only when flag 0x1 is set: varint length + UTF-8 of the encoded type's name
///     root value  one value, see below
///     key table   varint count, then count × (varint length + UTF-8 key name)
///
/// Each value starts with a one-byte tag (`BinaryTag`):
///
///     nil | false | true                           the tag alone
///     unsigned   varint (LEB128)                   UInt, UInt8 … UInt64
///     signed     zigzag varint                     Int, Int8 … Int64
///     float32    4 bytes, IEEE 754 bits, LE        Float  (bit-exact: NaN payloads, ±inf, -0)
///     float64    8 bytes, IEEE 754 bits, LE        Double, Date (seconds since 2001-01-01)
///     int128 | uint128   16 bytes, LE              Int128 / UInt128 values outside 64 bits
///     string     varint byte count + UTF-8         String, URL (absolute string)
///     bytes      varint byte count + raw bytes     Data, [UInt8], UUID (16 bytes)
///     keyed      varint byte count + entries       structs, classes, enums, dictionaries
///     unkeyed    varint byte count + values        arrays, sets, other dictionaries
///     some       the wrapped value follows         marks `.some` of a nested Optional
///
/// A keyed entry is a key reference followed by a value. The reference is one varint:
/// `index << 1` names entry `index` of the payload's key table, and
/// `zigzag(n) << 1 | 1` is the integer key `n` (dictionary `Int` keys and other keys whose
/// string form is just their integer), which needs no table entry at all. Each distinct key
/// name is therefore written once per payload however many containers use it — an array of
/// 1,000 structs costs one byte per field name, not the name — and because values are found
/// by key rather than by position, a decoder whose type declares its keys in another order,
/// adds optional fields or drops fields still reads the payload.
///
/// Containers carry their byte length so that a reader skips an unneeded field in O(1) and
/// can never run past its parent. The table sits after the root value because the encoder
/// only knows every key once the value is written; the root's length makes it findable.
///
/// The fingerprint is the 32-bit FNV-1a hash of `String(reflecting: T.self)` with the
/// process-specific part of private types' names (`(unknown context at $…)`) removed, since
/// payloads go to other processes of the same program whose load address differs. It lets a
/// decoder refuse a payload written for another type with `BinaryCodingError.typeMismatch`.
enum BinaryWire {
    static let magic: UInt8 = 0xCB
    static let version: UInt8 = 1
    /// Header flag: the encoded type's name follows the fingerprint.
    static let flagTypeName: UInt8 = 0x01
    /// The default of `BinaryDecoder.maximumDepth`. A level of a simple recursive type takes
    /// 2–4 KiB of stack, so this stays around 1 MiB even in a debug build.
    static let defaultMaximumDepth = 256
    /// Linear search beats hashing for the handful of keys a typical container has.
    static let linearSearchLimit = 12
}

/// The first byte of every encoded value.
enum BinaryTag {
    static let null: UInt8 = 0x00
    static let `false`: UInt8 = 0x01
    static let `true`: UInt8 = 0x02
    static let unsigned: UInt8 = 0x03
    static let signed: UInt8 = 0x04
    static let float32: UInt8 = 0x05
    static let float64: UInt8 = 0x06
    static let string: UInt8 = 0x07
    static let bytes: UInt8 = 0x08
    static let keyed: UInt8 = 0x09
    static let unkeyed: UInt8 = 0x0A
    static let some: UInt8 = 0x0B
    static let int128: UInt8 = 0x0C
    static let uint128: UInt8 = 0x0D

    /// What a tag means, in the words an error message uses.
    static func describe(_ tag: UInt8) -> String {
        switch tag {
        case null: return "nil"
        case `false`, `true`: return "a Bool"
        case unsigned: return "an unsigned integer"
        case signed: return "a signed integer"
        case float32: return "a Float"
        case float64: return "a Double"
        case string: return "a String"
        case bytes: return "bytes"
        case keyed: return "a keyed container (struct, class, enum or dictionary)"
        case unkeyed: return "an unkeyed container (array or set)"
        case some: return "a present optional"
        case int128: return "a 128-bit signed integer"
        case uint128: return "a 128-bit unsigned integer"
        default: return "unknown tag 0x\(String(tag, radix: 16))"
        }
    }
}

// MARK: - Errors

/// Why a value could not be encoded or decoded in the binary format.
///
/// Paths name where in the value the problem is, e.g. `jobs[3].size.width`; `(root)` is the
/// top-level value. Errors that a type's own `init(from:)` throws pass through unchanged.
enum BinaryCodingError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The payload was written for another type than the one being decoded.
    case typeMismatch(expected: String, found: String)
    /// A value in the payload is of another kind than the decoded type expects there.
    case valueMismatch(path: String, expected: String, found: String)
    /// A key that the decoded type requires is absent from the payload.
    case keyNotFound(key: String, path: String)
    /// An unkeyed container (array) has no more elements but the type asks for one.
    case valueNotFound(path: String, expected: String)
    /// A number does not fit the type it is decoded as.
    case valueOutOfRange(path: String, value: String, type: String)
    /// The payload ends in the middle of a value.
    case truncated(path: String)
    /// The payload's bytes do not follow the format.
    case corrupted(path: String, reason: String)
    /// The bytes are not a payload of this format or of a version this build reads.
    case unsupportedFormat(reason: String)
    /// Containers nest deeper than the decoder allows.
    case nestingTooDeep(path: String, limit: Int)
    /// The value's `encode(to:)` used the encoder in a way the format cannot represent.
    case invalidEncoding(path: String, reason: String)

    public var description: String {
        switch self {
        case let .typeMismatch(expected, found):
            return "Type mismatch: the payload holds \(found), but \(expected) was requested."
        case let .valueMismatch(path, expected, found):
            return "Value mismatch at \(path): expected \(expected), found \(found)."
        case let .keyNotFound(key, path):
            return "Key not found: \(path) has no value for the required key \"\(key)\"."
        case let .valueNotFound(path, expected):
            return "Value not found at \(path): expected \(expected), but the container has no more elements."
        case let .valueOutOfRange(path, value, type):
            return "Value out of range at \(path): \(value) does not fit in \(type)."
        case let .truncated(path):
            return "Truncated payload: it ends inside the value at \(path)."
        case let .corrupted(path, reason):
            return "Corrupted payload at \(path): \(reason)."
        case let .unsupportedFormat(reason):
            return "Not a readable binary payload: \(reason)."
        case let .nestingTooDeep(path, limit):
            return "Nesting too deep at \(path): more than \(limit) levels."
        case let .invalidEncoding(path, reason):
            return "Cannot encode the value at \(path): \(reason)."
        }
    }
}

/// Renders a coding path the way error messages show it: `jobs[3].size.width`.
func binaryPathDescription(_ path: [any CodingKey]) -> String {
    if path.isEmpty { return "(root)" }
    var text = ""
    for key in path {
        if let index = key.intValue, key.stringValue == "Index \(index)" || key.stringValue == String(index) {
            text += "[\(index)]"
        } else {
            if !text.isEmpty { text += "." }
            text += key.stringValue
        }
    }
    return text
}

/// The key the encoder and decoder use for elements of unkeyed containers in coding paths.
struct BinaryIndexKey: CodingKey {
    let intValue: Int?
    var stringValue: String { "Index \(intValue ?? 0)" }
    init(_ index: Int) { intValue = index }
    init?(stringValue: String) { return nil }
    init?(intValue: Int) { self.intValue = intValue }
}

/// A key with only a name; `superEncoder()` stores the superclass under "super".
struct BinaryNamedKey: CodingKey {
    let stringValue: String
    var intValue: Int? { nil }
    init(_ name: String) { stringValue = name }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { return nil }
    static let `super` = BinaryNamedKey("super")
}

// MARK: - Integers

@inline(__always)
func binaryZigZag(_ value: Int64) -> UInt64 {
    UInt64(bitPattern: (value << 1) ^ (value >> 63))
}

@inline(__always)
func binaryUnZigZag(_ value: UInt64) -> Int64 {
    Int64(bitPattern: value >> 1) ^ -Int64(bitPattern: value & 1)
}

@inline(__always)
func binaryVarintSize(_ value: UInt64) -> Int {
    value < 0x80 ? 1 : (70 - value.leadingZeroBitCount) / 7
}

/// The key reference of an integer key, or nil when the key must go through the key table.
///
/// Only keys whose name is exactly their integer's decimal form qualify (dictionary `Int`
/// keys, numeric `String` keys): an enum `CodingKeys: Int` is still identified by its names,
/// so that reordering or renumbering its cases keeps payloads readable.
@inline(__always)
func binaryIntegerKeyReference(_ key: some CodingKey) -> UInt64? {
    guard let number = key.intValue, number > -(1 << 61), number < (1 << 61) else { return nil }
    guard key.stringValue == String(number) else { return nil }
    return binaryZigZag(Int64(number)) << 1 | 1
}

/// A payload's bytes, read through a pointer.
///
/// Every read checks its bounds here, so no input can make the decoder read outside the
/// payload. The pointer belongs to a `ByteBuffer` that the decoding state keeps alive and
/// never mutates, so it stays valid for as long as any decoder can reach it.
struct BinaryBytes {
    let base: UnsafeRawPointer
    let count: Int

    @inline(__always)
    func byte(at index: Int) -> UInt8? {
        guard index >= 0, index < count else { return nil }
        return base.load(fromByteOffset: index, as: UInt8.self)
    }

    @inline(__always)
    func littleEndian<I: FixedWidthInteger>(_ type: I.Type, at index: Int) -> I? {
        guard index >= 0, index <= count - MemoryLayout<I>.size else { return nil }
        return I(littleEndian: base.loadUnaligned(fromByteOffset: index, as: I.self))
    }

    @inline(__always)
    func raw(at start: Int, count length: Int) -> UnsafeRawBufferPointer? {
        guard start >= 0, length >= 0, start <= count - length else { return nil }
        return UnsafeRawBufferPointer(start: base + start, count: length)
    }

    /// Reads the varint at `index`; nil if it runs off the payload or exceeds 64 bits.
    @inline(__always)
    func varint(at index: Int) -> (value: UInt64, next: Int)? {
        guard let first = byte(at: index) else { return nil }
        if first < 0x80 { return (UInt64(first), index + 1) }
        return varintSlow(first: first, at: index)
    }

    private func varintSlow(first: UInt8, at index: Int) -> (value: UInt64, next: Int)? {
        var result = UInt64(first & 0x7F)
        var shift: UInt64 = 7
        var position = index + 1
        while true {
            guard let byte = byte(at: position) else { return nil }
            position += 1
            // The tenth byte may only hold the 64th bit.
            if shift == 63 && byte > 1 { return nil }
            result |= UInt64(byte & 0x7F) << shift
            if byte < 0x80 { return (result, position) }
            shift += 7
        }
    }

    /// Decodes UTF-8, refusing invalid sequences rather than repairing them, so corruption
    /// surfaces as an error instead of replacement characters in the data. ASCII, the common
    /// case for keys and identifiers, skips the generic validator, which is several times slower.
    static func string(from raw: UnsafeRawBufferPointer) -> String? {
        if isASCII(raw) {
            return raw.withMemoryRebound(to: UInt8.self) { String(decoding: $0, as: UTF8.self) }
        }
        if #available(macOS 15, iOS 18, tvOS 18, watchOS 11, visionOS 2, *) {
            return String(validating: raw, as: UTF8.self)
        }
        return raw.withMemoryRebound(to: UInt8.self) { String(decoding: $0, as: UTF8.self) }
    }

    private static func isASCII(_ raw: UnsafeRawBufferPointer) -> Bool {
        guard let base = raw.baseAddress else { return true }
        var index = 0
        var high: UInt64 = 0
        while index + 8 <= raw.count {
            high |= base.loadUnaligned(fromByteOffset: index, as: UInt64.self)
            index += 8
        }
        while index < raw.count {
            high |= UInt64(base.load(fromByteOffset: index, as: UInt8.self))
            index += 1
        }
        return high & 0x8080_8080_8080_8080 == 0
    }
}

/// Stores `value` as a varint at `target` and returns its size. The caller reserves at
/// least 10 bytes.
@inline(__always)
func binaryStoreVarint(_ value: UInt64, into target: UnsafeMutableRawPointer) -> Int {
    var rest = value
    var size = 0
    while rest >= 0x80 {
        target.storeBytes(of: UInt8(truncatingIfNeeded: rest) | 0x80, toByteOffset: size, as: UInt8.self)
        rest >>= 7
        size += 1
    }
    target.storeBytes(of: UInt8(truncatingIfNeeded: rest), toByteOffset: size, as: UInt8.self)
    return size + 1
}

// MARK: - Optionals

/// Lets the coders recognise `Optional` at run time without knowing its `Wrapped` type.
protocol BinaryOptionalMarker {}
extension Optional: BinaryOptionalMarker {}

// MARK: - Per-thread cache

/// Things worth keeping per thread: fingerprints already looked up, so the hot path takes no
/// lock, and an idle encoding state, so back-to-back encodes reuse its memory instead of
/// allocating it each time. Only its own thread ever touches it.
final class BinaryThreadCache {
    @exclusivity(unchecked) var identities: [ObjectIdentifier: BinaryTypeRegistry.Identity] = [:]
    @exclusivity(unchecked) private var idleEncoding: BinaryEncodingState?

    /// The calling thread's cache; nil on platforms where it is not implemented.
    static var current: BinaryThreadCache? {
        #if os(Linux)
        if let raw = pthread_getspecific(binaryThreadCacheKey) {
            return Unmanaged<BinaryThreadCache>.fromOpaque(raw).takeUnretainedValue()
        }
        let cache = BinaryThreadCache()
        // The thread-specific slot owns one reference, released when the thread exits.
        pthread_setspecific(binaryThreadCacheKey, Unmanaged.passRetained(cache).toOpaque())
        return cache
        #else
        return nil
        #endif
    }

    /// The idle state, if any; a nested encode (one inside an `encode(to:)`) finds none and
    /// allocates its own.
    func takeEncodingState() -> BinaryEncodingState? {
        defer { idleEncoding = nil }
        return idleEncoding
    }

    /// Keeps `state` for the next encode on this thread if nothing else references it.
    func recycle(_ state: consuming BinaryEncodingState) {
        var state = state
        let unique = isKnownUniquelyReferenced(&state)
        guard idleEncoding == nil, unique, state.prepareForReuse() else { return }
        idleEncoding = state
    }
}

#if os(Linux)
private let binaryThreadCacheKey: pthread_key_t = {
    var key = pthread_key_t()
    let status = pthread_key_create(&key) { raw in
        if let raw { Unmanaged<BinaryThreadCache>.fromOpaque(raw).release() }
    }
    precondition(status == 0, "pthread_key_create failed: \(status)")
    return key
}()
#endif

// MARK: - Type fingerprints

/// Fingerprints of types, cached per process because computing a type's name is slow.
///
/// It also remembers fingerprint → name for every type this process encoded or decoded, so a
/// mismatch can name the payload's type even when the payload does not carry the name.
final class BinaryTypeRegistry: @unchecked Sendable {
    /// A type's identity in payloads.
    struct Identity {
        let fingerprint: UInt32
        let name: String
    }

    static let shared = BinaryTypeRegistry()

    // Guards both tables; held only for a dictionary lookup or insert.
    private let lock = NSLock()
    private var byType: [ObjectIdentifier: Identity] = [:]
    private var names: [UInt32: String] = [:]

    /// The type's fingerprint and name. The thread's cache answers without taking the lock.
    func identity(of type: Any.Type, cache: BinaryThreadCache?) -> Identity {
        let id = ObjectIdentifier(type)
        if let known = cache?.identities[id] { return known }
        let identity = lockedIdentity(of: type, id: id)
        cache?.identities[id] = identity
        return identity
    }

    private func lockedIdentity(of type: Any.Type, id: ObjectIdentifier) -> Identity {
        lock.lock()
        if let known = byType[id] {
            lock.unlock()
            return known
        }
        lock.unlock()
        // Computed outside the lock: it is slow and the result is the same for every thread.
        let name = Self.stableName(of: type)
        let identity = Identity(fingerprint: Self.fnv1a(name), name: name)
        lock.lock()
        byType[id] = identity
        names[identity.fingerprint] = name
        lock.unlock()
        return identity
    }

    /// The name of a type with this fingerprint, if this process has met one.
    func name(for fingerprint: UInt32) -> String? {
        lock.lock()
        defer { lock.unlock() }
        return names[fingerprint]
    }

    /// Remembers a name read from a payload, for later error messages.
    func remember(name: String, for fingerprint: UInt32) {
        lock.lock()
        if names[fingerprint] == nil { names[fingerprint] = name }
        lock.unlock()
    }

    /// `String(reflecting:)` without the parts that differ between processes: private and
    /// local types print as `(unknown context at $55d0c3a1b2c4)`, an address that changes
    /// with every exec.
    static func stableName(of type: Any.Type) -> String {
        normalize(String(reflecting: type))
    }

    static func normalize(_ name: String) -> String {
        let marker = "(unknown context at $"
        guard name.contains(marker) else { return name }
        var result = ""
        var rest = Substring(name)
        while let range = rest.range(of: marker) {
            result += rest[..<range.lowerBound]
            result += "(private)"
            rest = rest[range.upperBound...]
            if let close = rest.firstIndex(of: ")") {
                rest = rest[rest.index(after: close)...]
            } else {
                rest = ""
            }
        }
        result += rest
        return result
    }

    /// 32-bit FNV-1a over the UTF-8 bytes.
    static func fnv1a(_ text: String) -> UInt32 {
        var hash: UInt32 = 0x811C_9DC5
        for byte in text.utf8 {
            hash ^= UInt32(byte)
            hash &*= 0x0100_0193
        }
        return hash
    }
}
