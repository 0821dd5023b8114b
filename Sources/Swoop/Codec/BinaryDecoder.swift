import Foundation
import NIOCore

/// Decodes `Decodable` values from payloads written by `BinaryEncoder`.
///
/// Checks first that the payload was written for the requested type (see
/// `BinaryCodingError.typeMismatch`), then finds fields by key, so the decoding type may
/// order its keys differently, add optional fields or drop fields. Malformed, truncated or
/// hostile input makes it throw `BinaryCodingError`, never trap; errors that a type's own
/// `init(from:)` throws pass through unchanged.
struct BinaryDecoder: Sendable {
    /// Whether to refuse payloads whose type fingerprint differs from the requested type's.
    /// Turn off to read a payload as a structurally compatible type of another name.
    public var checksTypeFingerprint = true

    /// Values the decoded types see as `decoder.userInfo`.
    public var userInfo: [CodingUserInfoKey: any Sendable] = [:]

    /// How many values with their own `init(from:)` may nest inside one another.
    ///
    /// Decoding recurses once per level, taking a few KiB of stack each, so without a bound a
    /// crafted payload for a recursive type (a tree, a linked list) could exhaust the stack.
    /// The default leaves a wide margin on the usual 8 MiB thread stacks.
    public var maximumDepth = BinaryWire.defaultMaximumDepth

    public init() {}

    /// Decodes a `T` from the readable bytes of `buffer`, which must hold exactly one payload.
    public func decode<T: Decodable>(_ type: T.Type, from buffer: ByteBuffer) throws -> T {
        guard buffer.readableBytes > 0,
            let base = buffer.withUnsafeReadableBytes({ $0.baseAddress })
        else {
            throw BinaryCodingError.unsupportedFormat(reason: "the payload is empty")
        }
        let bytes = BinaryBytes(base: base, count: buffer.readableBytes)
        guard let magic = bytes.byte(at: 0), magic == BinaryWire.magic else {
            throw BinaryCodingError.unsupportedFormat(
                reason: "it starts with byte 0x\(String(bytes.byte(at: 0) ?? 0, radix: 16)) instead of 0xcb")
        }
        guard let versionAndFlags = bytes.byte(at: 1), let fingerprint = bytes.littleEndian(UInt32.self, at: 2) else {
            throw BinaryCodingError.truncated(path: "(header)")
        }
        guard versionAndFlags >> 4 == BinaryWire.version else {
            throw BinaryCodingError.unsupportedFormat(
                reason: "format version \(versionAndFlags >> 4); this build reads version \(BinaryWire.version)")
        }
        let flags = versionAndFlags & 0x0F
        guard flags & ~BinaryWire.flagTypeName == 0 else {
            throw BinaryCodingError.unsupportedFormat(reason: "unknown header flags 0x\(String(flags, radix: 16))")
        }
        var position = 6

        var embeddedName: String?
        if flags & BinaryWire.flagTypeName != 0 {
            guard let (length, start) = bytes.varint(at: position), length <= UInt64(bytes.count - start),
                let raw = bytes.raw(at: start, count: Int(length))
            else {
                throw BinaryCodingError.truncated(path: "(header)")
            }
            guard let name = BinaryBytes.string(from: raw) else {
                throw BinaryCodingError.corrupted(path: "(header)", reason: "the type name is not valid UTF-8")
            }
            BinaryTypeRegistry.shared.remember(name: name, for: fingerprint)
            embeddedName = name
            position = start + Int(length)
        }

        if checksTypeFingerprint {
            let expected = BinaryTypeRegistry.shared.identity(of: T.self, cache: BinaryThreadCache.current)
            if expected.fingerprint != fingerprint || (embeddedName.map { $0 != expected.name } ?? false) {
                let found =
                    embeddedName ?? BinaryTypeRegistry.shared.name(for: fingerprint)
                    ?? "a value of another type (fingerprint 0x\(String(fingerprint, radix: 16)))"
                throw BinaryCodingError.typeMismatch(expected: expected.name, found: found)
            }
        }

        let state = try BinaryDecodingState(
            buffer: buffer, bytes: bytes, root: position, userInfo: userInfo, maximumDepth: maximumDepth)
        return try state.decodeValue(T.self, at: position, limit: state.rootEnd, parent: nil, key: nil)
    }
}

// MARK: - Shared state

/// Why a value's bytes are unusable, before it is known where in the value that is.
enum BinaryFault {
    case truncated
    case overrun
    case unknownTag(UInt8)
    case badVarint
    case badKeyReference(UInt64, tableSize: Int)

    func error(at path: String) -> BinaryCodingError {
        switch self {
        case .truncated:
            return .truncated(path: path)
        case .overrun:
            return .corrupted(path: path, reason: "a value extends past the end of its container")
        case .unknownTag(let tag):
            return .corrupted(path: path, reason: "unknown value tag 0x\(String(tag, radix: 16))")
        case .badVarint:
            return .corrupted(path: path, reason: "an integer is longer than 64 bits")
        case .badKeyReference(let index, let size):
            return .corrupted(path: path, reason: "key reference \(index) is outside the key table of \(size) names")
        }
    }
}

/// Where a value ends, or why that cannot be told.
enum BinaryExtent {
    case end(Int)
    case fault(BinaryFault)
}

/// Where a key table name's bytes are in the payload.
struct BinaryKeyName {
    let start: Int
    let count: Int
}

/// A keyed entry's value: where it starts and where the next entry starts.
struct BinaryEntry {
    let value: Int
    let next: Int
}

/// How a decoding key is looked for among a container's entries.
enum BinaryKeyTarget {
    /// An integer key, matched by its reference.
    case reference(UInt64)
    /// A named key, matched against the key table.
    case name(String)

    @inline(__always)
    init(_ key: some CodingKey) {
        if key.intValue != nil, let reference = binaryIntegerKeyReference(key) {
            self = .reference(reference)
        } else {
            self = .name(key.stringValue)
        }
    }
}

/// What every decoder of one payload shares.
final class BinaryDecodingState {
    /// Keeps the payload's storage alive (and unmodified) for `bytes`.
    let buffer: ByteBuffer
    let bytes: BinaryBytes
    /// Where the root value ends and the key table starts.
    let rootEnd: Int
    /// Where each key table name's UTF-8 is. Names are compared as bytes and only become
    /// Strings for `allKeys`, which saves creating a String per key on every decode.
    let keyNames: [BinaryKeyName]
    /// Key name → reference, built when a large container needs a hashed lookup.
    @exclusivity(unchecked) private var references: [String: UInt64]?
    let userInfo: [CodingUserInfoKey: Any]
    @exclusivity(unchecked) private var depth = 0
    private let maximumDepth: Int

    init(
        buffer: ByteBuffer, bytes: BinaryBytes, root: Int, userInfo: [CodingUserInfoKey: any Sendable],
        maximumDepth: Int
    ) throws {
        self.buffer = buffer
        self.bytes = bytes
        self.maximumDepth = maximumDepth
        let end = bytes.count
        self.userInfo = userInfo.isEmpty ? [:] : userInfo.mapValues { $0 as Any }
        // The root's extent is read before the key table it refers to; see `BinaryWire`.
        let rootEnd: Int
        switch Self.extent(of: bytes, at: root, limit: end) {
        case .end(let position): rootEnd = position
        case .fault(let fault): throw fault.error(at: "(root)")
        }
        self.rootEnd = rootEnd
        guard let (count, first) = bytes.varint(at: rootEnd) else {
            throw BinaryCodingError.truncated(path: "(key table)")
        }
        // Every name takes at least its length byte, which bounds the allocation below by the
        // payload's size whatever count a corrupted payload claims.
        guard count <= UInt64(end - first) else {
            throw BinaryCodingError.truncated(path: "(key table)")
        }
        var names: [BinaryKeyName] = []
        names.reserveCapacity(Int(count))
        var position = first
        for _ in 0..<count {
            guard let (length, start) = bytes.varint(at: position), length <= UInt64(end - start) else {
                throw BinaryCodingError.truncated(path: "(key table)")
            }
            names.append(BinaryKeyName(start: start, count: Int(length)))
            position = start + Int(length)
        }
        guard position == end else {
            throw BinaryCodingError.corrupted(
                path: "(key table)", reason: "\(end - position) unexpected bytes after the end of the payload")
        }
        self.keyNames = names
    }

    // MARK: Extents

    /// Where the value at `offset` ends, without looking inside containers.
    static func extent(of bytes: BinaryBytes, at offset: Int, limit: Int) -> BinaryExtent {
        @inline(__always) func fits(_ end: Int) -> BinaryExtent {
            if end <= limit { return .end(end) }
            return .fault(end > bytes.count ? .truncated : .overrun)
        }
        var position = offset
        // A loop rather than recursion: a run of `some` markers must not grow the stack.
        while true {
            guard position < limit, let tag = bytes.byte(at: position) else {
                return .fault(limit < bytes.count ? .overrun : .truncated)
            }
            switch tag {
            case BinaryTag.null, BinaryTag.false, BinaryTag.true:
                return fits(position + 1)
            case BinaryTag.unsigned, BinaryTag.signed:
                guard let (_, next) = bytes.varint(at: position + 1) else {
                    return .fault(varintFault(in: bytes, at: position + 1))
                }
                return fits(next)
            case BinaryTag.float32:
                return fits(position + 5)
            case BinaryTag.float64:
                return fits(position + 9)
            case BinaryTag.int128, BinaryTag.uint128:
                return fits(position + 17)
            case BinaryTag.string, BinaryTag.bytes, BinaryTag.keyed, BinaryTag.unkeyed:
                guard let (length, start) = bytes.varint(at: position + 1) else {
                    return .fault(varintFault(in: bytes, at: position + 1))
                }
                guard start <= limit, length <= UInt64(limit - start) else {
                    return .fault(length > UInt64(max(0, bytes.count - start)) ? .truncated : .overrun)
                }
                return .end(start + Int(length))
            case BinaryTag.some:
                position += 1
            default:
                return .fault(.unknownTag(tag))
            }
        }
    }

    /// Tells a varint cut off by the end of the payload from one that is too long.
    static func varintFault(in bytes: BinaryBytes, at offset: Int) -> BinaryFault {
        var position = offset
        while let byte = bytes.byte(at: position) {
            if byte < 0x80 { return .badVarint }
            position += 1
        }
        return .truncated
    }

    @inline(__always)
    func extent(at offset: Int, limit: Int) -> BinaryExtent {
        Self.extent(of: bytes, at: offset, limit: limit)
    }

    /// Where the value ends; throws with the value's path if that cannot be told.
    @inline(__always)
    func requireExtent(at offset: Int, limit: Int, parent: BinaryValueDecoder?, key: (any CodingKey)?) throws -> Int {
        switch extent(at: offset, limit: limit) {
        case .end(let end): return end
        case .fault(let fault): throw fault.error(at: path(parent, key))
        }
    }

    // MARK: Keys

    @inline(__always)
    func matches(_ reference: UInt64, _ target: BinaryKeyTarget) -> Bool {
        switch target {
        case .reference(let wanted):
            return reference == wanted
        case .name(let name):
            guard reference & 1 == 0 else { return false }
            let index = Int(truncatingIfNeeded: reference >> 1)
            guard index < keyNames.count else { return false }
            let stored = keyNames[index]
            var name = name
            return name.withUTF8 { utf8 in
                guard utf8.count == stored.count else { return false }
                // Keys are short; a loop beats a call to memcmp.
                var index = 0
                while index < utf8.count {
                    if utf8[index] != bytes.base.load(fromByteOffset: stored.start + index, as: UInt8.self) { return false }
                    index += 1
                }
                return true
            }
        }
    }

    /// A key table name as a String; nil if it is not valid UTF-8.
    func keyName(at index: Int) -> String? {
        guard index >= 0, index < keyNames.count,
            let raw = bytes.raw(at: keyNames[index].start, count: keyNames[index].count)
        else { return nil }
        return BinaryBytes.string(from: raw)
    }

    /// The reference that a named key would have in this payload, if the table has the name.
    func reference(named name: String) -> UInt64? {
        if references == nil {
            var table: [String: UInt64] = [:]
            table.reserveCapacity(keyNames.count)
            for index in keyNames.indices {
                if let keyName = keyName(at: index), table[keyName] == nil { table[keyName] = UInt64(index) << 1 }
            }
            references = table
        }
        return references?[name]
    }

    /// The decoding type's key for a reference; nil when the type has no such key.
    func makeKey<Key: CodingKey>(_ type: Key.Type, reference: UInt64) -> Key? {
        if reference & 1 == 1 {
            let number = Int(truncatingIfNeeded: binaryUnZigZag(reference >> 1))
            return Key(intValue: number) ?? Key(stringValue: String(number))
        }
        guard let name = keyName(at: Int(truncatingIfNeeded: reference >> 1)) else { return nil }
        return Key(stringValue: name)
    }

    // MARK: Paths and errors

    func path(_ parent: BinaryValueDecoder?, _ key: (any CodingKey)?) -> String {
        var path = parent?.codingPath ?? []
        if let key { path.append(key) }
        return binaryPathDescription(path)
    }

    func mismatch(
        _ expected: String, tag: UInt8, parent: BinaryValueDecoder?, key: (any CodingKey)?
    ) -> BinaryCodingError {
        .valueMismatch(path: path(parent, key), expected: expected, found: BinaryTag.describe(tag))
    }

    func outOfRange(
        _ value: some CustomStringConvertible, _ type: Any.Type, parent: BinaryValueDecoder?, key: (any CodingKey)?
    ) -> BinaryCodingError {
        .valueOutOfRange(path: path(parent, key), value: value.description, type: "\(type)")
    }

    // MARK: Values

    /// Decodes the value at `offset`; it must end by `limit`.
    ///
    /// Types the format stores natively are read directly; the comparisons are of metatypes,
    /// a few instructions each, and the casts cannot fail because the types are identical.
    /// (Returning through an optional `T?` instead would cost a generic metadata lookup.)
    @inline(__always)
    func decodeValue<T: Decodable>(
        _ type: T.Type, at offset: Int, limit: Int, parent: BinaryValueDecoder?, key: (any CodingKey)?
    ) throws -> T {
        if T.self == String.self {
            return unsafeBitCast(try readString(at: offset, limit: limit, parent: parent, key: key), to: T.self)
        } else if T.self == Int.self {
            return unsafeBitCast(try readSigned(Int.self, at: offset, limit: limit, parent: parent, key: key), to: T.self)
        } else if T.self == Double.self {
            return unsafeBitCast(try readDouble(at: offset, limit: limit, parent: parent, key: key), to: T.self)
        } else if T.self == Bool.self {
            return unsafeBitCast(try readBool(at: offset, limit: limit, parent: parent, key: key), to: T.self)
        } else if T.self == Data.self {
            if let data = try readData(at: offset, limit: limit, parent: parent, key: key) {
                return unsafeBitCast(data, to: T.self)
            }
        } else if T.self == [UInt8].self {
            if let bytes = try readByteArray(at: offset, limit: limit, parent: parent, key: key) {
                return unsafeBitCast(bytes, to: T.self)
            }
        } else if T.self == Date.self {
            let seconds = try readDouble(at: offset, limit: limit, parent: parent, key: key)
            return unsafeBitCast(Date(timeIntervalSinceReferenceDate: seconds), to: T.self)
        } else if T.self == UUID.self {
            return unsafeBitCast(try readUUID(at: offset, limit: limit, parent: parent, key: key), to: T.self)
        } else if T.self == URL.self {
            return unsafeBitCast(try readURL(at: offset, limit: limit, parent: parent, key: key), to: T.self)
        } else if T.self == Float.self {
            return unsafeBitCast(try readFloat(at: offset, limit: limit, parent: parent, key: key), to: T.self)
        } else if T.self == Int64.self {
            return unsafeBitCast(try readSigned(Int64.self, at: offset, limit: limit, parent: parent, key: key), to: T.self)
        } else if T.self == UInt64.self {
            return unsafeBitCast(try readUnsigned(UInt64.self, at: offset, limit: limit, parent: parent, key: key), to: T.self)
        } else if T.self == Int32.self {
            return unsafeBitCast(try readSigned(Int32.self, at: offset, limit: limit, parent: parent, key: key), to: T.self)
        } else if T.self == UInt32.self {
            return unsafeBitCast(try readUnsigned(UInt32.self, at: offset, limit: limit, parent: parent, key: key), to: T.self)
        } else if T.self == UInt.self {
            return unsafeBitCast(try readUnsigned(UInt.self, at: offset, limit: limit, parent: parent, key: key), to: T.self)
        } else if T.self == Int16.self {
            return unsafeBitCast(try readSigned(Int16.self, at: offset, limit: limit, parent: parent, key: key), to: T.self)
        } else if T.self == UInt16.self {
            return unsafeBitCast(try readUnsigned(UInt16.self, at: offset, limit: limit, parent: parent, key: key), to: T.self)
        } else if T.self == Int8.self {
            return unsafeBitCast(try readSigned(Int8.self, at: offset, limit: limit, parent: parent, key: key), to: T.self)
        } else if T.self == UInt8.self {
            return unsafeBitCast(try readUnsigned(UInt8.self, at: offset, limit: limit, parent: parent, key: key), to: T.self)
        } else if #available(macOS 15, iOS 18, tvOS 18, watchOS 11, visionOS 2, *), T.self == Int128.self {
            return unsafeBitCast(try readInt128(at: offset, limit: limit, parent: parent, key: key), to: T.self)
        } else if #available(macOS 15, iOS 18, tvOS 18, watchOS 11, visionOS 2, *), T.self == UInt128.self {
            return unsafeBitCast(try readUInt128(at: offset, limit: limit, parent: parent, key: key), to: T.self)
        }
        return try decodeComposite(T.self, at: offset, limit: limit, parent: parent, key: key)
    }

    /// Decodes a value that is not one of the natively stored types, through its `init(from:)`.
    func decodeComposite<T: Decodable>(
        _ type: T.Type, at offset: Int, limit: Int, parent: BinaryValueDecoder?, key: (any CodingKey)?
    ) throws -> T {
        depth += 1
        defer { depth -= 1 }
        guard depth <= maximumDepth else {
            throw BinaryCodingError.nestingTooDeep(path: path(parent, key), limit: maximumDepth)
        }
        let decoder = BinaryValueDecoder(
            state: self, offset: offset, limit: limit, parent: parent, key: key, type: T.self)
        return try T(from: decoder)
    }

    // MARK: Scalar readers

    /// The value's tag and where its body starts. `some` markers are skipped: they only tell
    /// nested optionals apart, and a non-optional reader may safely look through them.
    @inline(__always)
    func head(at offset: Int, limit: Int, parent: BinaryValueDecoder?, key: (any CodingKey)?) throws -> (
        tag: UInt8, body: Int
    ) {
        var position = offset
        while true {
            guard position >= 0, position < limit, let tag = bytes.byte(at: position) else {
                throw headFault(at: position, limit: limit, parent: parent, key: key)
            }
            if tag != BinaryTag.some { return (tag, position + 1) }
            position += 1
        }
    }

    private func headFault(at position: Int, limit: Int, parent: BinaryValueDecoder?, key: (any CodingKey)?)
        -> BinaryCodingError
    {
        if position < 0, let key {
            return .keyNotFound(key: key.stringValue, path: path(parent, nil))
        }
        return (limit < bytes.count ? BinaryFault.overrun : .truncated).error(at: path(parent, key))
    }

    /// The varint at `position`, which must end by `limit`.
    @inline(__always)
    func varint(at position: Int, limit: Int, parent: BinaryValueDecoder?, key: (any CodingKey)?) throws -> (
        value: UInt64, next: Int
    ) {
        guard let (value, next) = bytes.varint(at: position), next <= limit else {
            let fault = bytes.varint(at: position) == nil ? Self.varintFault(in: bytes, at: position) : .overrun
            throw fault.error(at: path(parent, key))
        }
        return (value, next)
    }

    /// The bytes of a length-prefixed body at `position`.
    @inline(__always)
    func span(at position: Int, limit: Int, parent: BinaryValueDecoder?, key: (any CodingKey)?) throws
        -> UnsafeRawBufferPointer
    {
        let (length, start) = try varint(at: position, limit: limit, parent: parent, key: key)
        guard length <= UInt64(limit - start), let raw = bytes.raw(at: start, count: Int(length)) else {
            let fault: BinaryFault = length > UInt64(max(0, bytes.count - start)) ? .truncated : .overrun
            throw fault.error(at: path(parent, key))
        }
        return raw
    }

    /// Like `span`, as offsets: where the body starts and how long it is.
    @inline(__always)
    func spanRange(at position: Int, limit: Int, parent: BinaryValueDecoder?, key: (any CodingKey)?) throws -> (
        start: Int, count: Int
    ) {
        let raw = try span(at: position, limit: limit, parent: parent, key: key)
        guard let start = raw.baseAddress else { return (limit, 0) }
        return (start - bytes.base, raw.count)
    }

    /// Reads any integer as an Int64; unsigned values above Int64.max are out of range.
    @inline(__always)
    func readSigned<I: FixedWidthInteger & SignedInteger>(
        _ type: I.Type, at offset: Int, limit: Int, parent: BinaryValueDecoder?, key: (any CodingKey)?
    ) throws -> I {
        let (tag, body) = try head(at: offset, limit: limit, parent: parent, key: key)
        let raw = try varintBody(tag, I.self, at: body, limit: limit, parent: parent, key: key)
        if tag == BinaryTag.signed {
            let value = binaryUnZigZag(raw)
            guard let result = I(exactly: value) else { throw outOfRange(value, I.self, parent: parent, key: key) }
            return result
        }
        guard let result = I(exactly: raw) else { throw outOfRange(raw, I.self, parent: parent, key: key) }
        return result
    }

    /// Reads any integer as a UInt64; negative values are out of range.
    @inline(__always)
    func readUnsigned<I: FixedWidthInteger & UnsignedInteger>(
        _ type: I.Type, at offset: Int, limit: Int, parent: BinaryValueDecoder?, key: (any CodingKey)?
    ) throws -> I {
        let (tag, body) = try head(at: offset, limit: limit, parent: parent, key: key)
        let raw = try varintBody(tag, I.self, at: body, limit: limit, parent: parent, key: key)
        if tag == BinaryTag.signed {
            let value = binaryUnZigZag(raw)
            guard let result = I(exactly: value) else { throw outOfRange(value, I.self, parent: parent, key: key) }
            return result
        }
        guard let result = I(exactly: raw) else { throw outOfRange(raw, I.self, parent: parent, key: key) }
        return result
    }

    @inline(__always)
    private func varintBody(
        _ tag: UInt8, _ type: Any.Type, at body: Int, limit: Int, parent: BinaryValueDecoder?, key: (any CodingKey)?
    ) throws -> UInt64 {
        guard tag == BinaryTag.signed || tag == BinaryTag.unsigned else {
            throw mismatch("\(type)", tag: tag, parent: parent, key: key)
        }
        return try varint(at: body, limit: limit, parent: parent, key: key).value
    }

    /// Reads 16 little-endian bytes as (low, high) halves.
    private func wide(at body: Int, limit: Int, parent: BinaryValueDecoder?, key: (any CodingKey)?) throws -> (
        low: UInt64, high: UInt64
    ) {
        guard body + 16 <= limit,
            let low = bytes.littleEndian(UInt64.self, at: body),
            let high = bytes.littleEndian(UInt64.self, at: body + 8)
        else {
            throw (body + 16 > bytes.count ? BinaryFault.truncated : .overrun).error(at: path(parent, key))
        }
        return (low, high)
    }

    @available(macOS 15, iOS 18, tvOS 18, watchOS 11, visionOS 2, *)
    func readInt128(at offset: Int, limit: Int, parent: BinaryValueDecoder?, key: (any CodingKey)?) throws -> Int128 {
        let (tag, body) = try head(at: offset, limit: limit, parent: parent, key: key)
        switch tag {
        case BinaryTag.signed, BinaryTag.unsigned:
            let raw = try varint(at: body, limit: limit, parent: parent, key: key).value
            return tag == BinaryTag.signed ? Int128(binaryUnZigZag(raw)) : Int128(raw)
        case BinaryTag.int128:
            let (low, high) = try wide(at: body, limit: limit, parent: parent, key: key)
            return Int128(Int64(bitPattern: high)) << 64 | Int128(low)
        case BinaryTag.uint128:
            let (low, high) = try wide(at: body, limit: limit, parent: parent, key: key)
            let value = UInt128(high) << 64 | UInt128(low)
            guard let result = Int128(exactly: value) else { throw outOfRange(value, Int128.self, parent: parent, key: key) }
            return result
        default:
            throw mismatch("Int128", tag: tag, parent: parent, key: key)
        }
    }

    @available(macOS 15, iOS 18, tvOS 18, watchOS 11, visionOS 2, *)
    func readUInt128(at offset: Int, limit: Int, parent: BinaryValueDecoder?, key: (any CodingKey)?) throws -> UInt128 {
        let (tag, body) = try head(at: offset, limit: limit, parent: parent, key: key)
        switch tag {
        case BinaryTag.signed:
            let value = binaryUnZigZag(try varint(at: body, limit: limit, parent: parent, key: key).value)
            guard let result = UInt128(exactly: value) else { throw outOfRange(value, UInt128.self, parent: parent, key: key) }
            return result
        case BinaryTag.unsigned:
            return UInt128(try varint(at: body, limit: limit, parent: parent, key: key).value)
        case BinaryTag.uint128:
            let (low, high) = try wide(at: body, limit: limit, parent: parent, key: key)
            return UInt128(high) << 64 | UInt128(low)
        case BinaryTag.int128:
            let (low, high) = try wide(at: body, limit: limit, parent: parent, key: key)
            let value = Int128(Int64(bitPattern: high)) << 64 | Int128(low)
            guard let result = UInt128(exactly: value) else { throw outOfRange(value, UInt128.self, parent: parent, key: key) }
            return result
        default:
            throw mismatch("UInt128", tag: tag, parent: parent, key: key)
        }
    }

    @inline(__always)
    func readBool(at offset: Int, limit: Int, parent: BinaryValueDecoder?, key: (any CodingKey)?) throws -> Bool {
        let (tag, _) = try head(at: offset, limit: limit, parent: parent, key: key)
        switch tag {
        case BinaryTag.true: return true
        case BinaryTag.false: return false
        default: throw mismatch("Bool", tag: tag, parent: parent, key: key)
        }
    }

    /// Reads a Double; a Float widens exactly, so a field may change from Float to Double.
    @inline(__always)
    func readDouble(at offset: Int, limit: Int, parent: BinaryValueDecoder?, key: (any CodingKey)?) throws -> Double {
        let (tag, body) = try head(at: offset, limit: limit, parent: parent, key: key)
        switch tag {
        case BinaryTag.float64:
            return Double(bitPattern: try fixed(UInt64.self, at: body, limit: limit, parent: parent, key: key))
        case BinaryTag.float32:
            return Double(Float(bitPattern: try fixed(UInt32.self, at: body, limit: limit, parent: parent, key: key)))
        default:
            throw mismatch("Double", tag: tag, parent: parent, key: key)
        }
    }

    /// Reads a Float; a Double is accepted only if it converts without loss.
    @inline(__always)
    func readFloat(at offset: Int, limit: Int, parent: BinaryValueDecoder?, key: (any CodingKey)?) throws -> Float {
        let (tag, body) = try head(at: offset, limit: limit, parent: parent, key: key)
        switch tag {
        case BinaryTag.float32:
            return Float(bitPattern: try fixed(UInt32.self, at: body, limit: limit, parent: parent, key: key))
        case BinaryTag.float64:
            let value = Double(bitPattern: try fixed(UInt64.self, at: body, limit: limit, parent: parent, key: key))
            let narrowed = Float(value)
            guard value.isNaN || Double(narrowed) == value else {
                throw outOfRange(value, Float.self, parent: parent, key: key)
            }
            return narrowed
        default:
            throw mismatch("Float", tag: tag, parent: parent, key: key)
        }
    }

    @inline(__always)
    private func fixed<I: FixedWidthInteger>(
        _ type: I.Type, at body: Int, limit: Int, parent: BinaryValueDecoder?, key: (any CodingKey)?
    ) throws -> I {
        let size = MemoryLayout<I>.size
        guard body + size <= limit, let value = bytes.littleEndian(I.self, at: body) else {
            throw (body + size > bytes.count ? BinaryFault.truncated : .overrun).error(at: path(parent, key))
        }
        return value
    }

    @inline(__always)
    func readString(at offset: Int, limit: Int, parent: BinaryValueDecoder?, key: (any CodingKey)?) throws -> String {
        let (tag, body) = try head(at: offset, limit: limit, parent: parent, key: key)
        guard tag == BinaryTag.string else { throw mismatch("String", tag: tag, parent: parent, key: key) }
        let raw = try span(at: body, limit: limit, parent: parent, key: key)
        guard let string = BinaryBytes.string(from: raw) else {
            throw BinaryCodingError.corrupted(path: path(parent, key), reason: "a string is not valid UTF-8")
        }
        return string
    }

    /// The bytes of a `bytes` value, or nil for an unkeyed container (which the caller then
    /// decodes element by element, as a payload from a `Codable` of bytes would be).
    @inline(__always)
    private func rawBytes(at offset: Int, limit: Int, expected: String, parent: BinaryValueDecoder?, key: (any CodingKey)?)
        throws -> UnsafeRawBufferPointer?
    {
        let (tag, body) = try head(at: offset, limit: limit, parent: parent, key: key)
        if tag == BinaryTag.unkeyed { return nil }
        guard tag == BinaryTag.bytes else { throw mismatch(expected, tag: tag, parent: parent, key: key) }
        return try span(at: body, limit: limit, parent: parent, key: key)
    }

    func readData(at offset: Int, limit: Int, parent: BinaryValueDecoder?, key: (any CodingKey)?) throws -> Data? {
        guard let raw = try rawBytes(at: offset, limit: limit, expected: "Data", parent: parent, key: key) else {
            return nil
        }
        return Data(raw)
    }

    func readByteArray(at offset: Int, limit: Int, parent: BinaryValueDecoder?, key: (any CodingKey)?) throws -> [UInt8]? {
        guard let raw = try rawBytes(at: offset, limit: limit, expected: "[UInt8]", parent: parent, key: key) else {
            return nil
        }
        return [UInt8](raw)
    }

    /// Reads the 16 raw bytes the encoder writes, or a UUID string.
    func readUUID(at offset: Int, limit: Int, parent: BinaryValueDecoder?, key: (any CodingKey)?) throws -> UUID {
        let (tag, body) = try head(at: offset, limit: limit, parent: parent, key: key)
        if tag == BinaryTag.string {
            let text = try readString(at: offset, limit: limit, parent: parent, key: key)
            guard let uuid = UUID(uuidString: text) else {
                throw BinaryCodingError.corrupted(path: path(parent, key), reason: "\"\(text)\" is not a UUID")
            }
            return uuid
        }
        guard tag == BinaryTag.bytes else { throw mismatch("UUID", tag: tag, parent: parent, key: key) }
        let raw = try span(at: body, limit: limit, parent: parent, key: key)
        guard raw.count == 16 else {
            throw BinaryCodingError.corrupted(path: path(parent, key), reason: "a UUID has \(raw.count) bytes instead of 16")
        }
        var uuid: uuid_t = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        withUnsafeMutableBytes(of: &uuid) { $0.copyMemory(from: raw) }
        return UUID(uuid: uuid)
    }

    func readURL(at offset: Int, limit: Int, parent: BinaryValueDecoder?, key: (any CodingKey)?) throws -> URL {
        let text = try readString(at: offset, limit: limit, parent: parent, key: key)
        guard let url = URL(string: text) else {
            throw BinaryCodingError.corrupted(path: path(parent, key), reason: "\"\(text)\" is not a valid URL")
        }
        return url
    }
}

// MARK: - Value decoders

/// The `Decoder` for one value of the payload.
final class BinaryValueDecoder: Decoder {
    let state: BinaryDecodingState
    /// Where the value's tag is; -1 for the absent value behind `superDecoder(forKey:)`.
    let offset: Int
    /// The end of the enclosing container, which the value may not cross.
    let limit: Int
    let parent: BinaryValueDecoder?
    let key: (any CodingKey)?
    /// The type being decoded, for error messages; nil for nested containers.
    let type: Any.Type?

    /// The container body, once a container has been opened.
    @exclusivity(unchecked) private(set) var contentStart = 0
    @exclusivity(unchecked) private(set) var contentEnd = 0
    /// Keyed lookup: where the next entry in encoding order starts. Types usually decode
    /// keys in the order they encoded them, so this is nearly always the wanted entry.
    @exclusivity(unchecked) var cursor = 0
    @exclusivity(unchecked) private(set) var entryCount = -1
    @exclusivity(unchecked) private var entryIndex: [UInt64: BinaryEntry]?
    @exclusivity(unchecked) private var cachedElementCount: Int?

    init(
        state: BinaryDecodingState, offset: Int, limit: Int, parent: BinaryValueDecoder?, key: (any CodingKey)?,
        type: Any.Type?
    ) {
        self.state = state
        self.offset = offset
        self.limit = limit
        self.parent = parent
        self.key = key
        self.type = type
    }

    var codingPath: [any CodingKey] {
        var path = parent?.codingPath ?? []
        if let key { path.append(key) }
        return path
    }

    var userInfo: [CodingUserInfoKey: Any] { state.userInfo }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        try open(BinaryTag.keyed, kind: "keyed container")
        if entryCount < 0 { try validateEntries() }
        return KeyedDecodingContainer(BinaryKeyedDecoding<Key>(decoder: self))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        try open(BinaryTag.unkeyed, kind: "unkeyed container")
        return BinaryUnkeyedDecoding(decoder: self, position: contentStart)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer {
        BinarySingleValueDecoding(decoder: self)
    }

    private func open(_ wanted: UInt8, kind: String) throws {
        let (tag, body) = try state.head(at: offset, limit: limit, parent: parent, key: key)
        guard tag == wanted else {
            let expected = type.map { "\($0) (a \(kind))" } ?? "a \(kind)"
            throw state.mismatch(expected, tag: tag, parent: parent, key: key)
        }
        let (start, count) = try state.spanRange(at: body, limit: limit, parent: parent, key: key)
        contentStart = start
        contentEnd = start + count
        cursor = start
    }

    /// Checks every entry once so that lookups, which may not throw, can trust the bytes.
    private func validateEntries() throws {
        var position = contentStart
        var count = 0
        while position < contentEnd {
            let (reference, value) = try state.varint(at: position, limit: contentEnd, parent: parent, key: key)
            if reference & 1 == 0 && reference >> 1 >= UInt64(state.keyNames.count) {
                throw BinaryFault.badKeyReference(reference >> 1, tableSize: state.keyNames.count)
                    .error(at: state.path(parent, key))
            }
            guard value < contentEnd else {
                throw BinaryCodingError.corrupted(path: state.path(parent, key), reason: "a key has no value")
            }
            position = try state.requireExtent(at: value, limit: contentEnd, parent: parent, key: key)
            count += 1
        }
        entryCount = count
    }

    /// The entry at `position`: its key reference, value and the next entry's start.
    @inline(__always)
    private func entry(at position: Int) -> (reference: UInt64, entry: BinaryEntry)? {
        guard let (reference, value) = state.bytes.varint(at: position), value < contentEnd,
            case .end(let next) = state.extent(at: value, limit: contentEnd)
        else { return nil }
        return (reference, BinaryEntry(value: value, next: next))
    }

    /// Finds the entry for `key`: at the cursor, else by a scan or, for big containers, a hash.
    func locate(_ key: some CodingKey) -> BinaryEntry? {
        let target = BinaryKeyTarget(key)
        if cursor < contentEnd, let (reference, entry) = entry(at: cursor), state.matches(reference, target) {
            return entry
        }
        if entryCount > BinaryWire.linearSearchLimit {
            return indexedLookup(target)
        }
        var position = contentStart
        while position < contentEnd, let (reference, entry) = entry(at: position) {
            if state.matches(reference, target) { return entry }
            position = entry.next
        }
        return nil
    }

    private func indexedLookup(_ target: BinaryKeyTarget) -> BinaryEntry? {
        if entryIndex == nil {
            var index: [UInt64: BinaryEntry] = [:]
            index.reserveCapacity(entryCount)
            var position = contentStart
            while position < contentEnd, let (reference, entry) = entry(at: position) {
                if index[reference] == nil { index[reference] = entry }
                position = entry.next
            }
            entryIndex = index
        }
        switch target {
        case .reference(let reference):
            return entryIndex?[reference]
        case .name(let name):
            guard let reference = state.reference(named: name) else { return nil }
            return entryIndex?[reference]
        }
    }

    func allKeys<Key: CodingKey>(_ type: Key.Type) -> [Key] {
        var keys: [Key] = []
        keys.reserveCapacity(max(entryCount, 0))
        var position = contentStart
        while position < contentEnd, let (reference, entry) = entry(at: position) {
            if let key = state.makeKey(Key.self, reference: reference) { keys.append(key) }
            position = entry.next
        }
        return keys
    }

    /// The number of elements of the unkeyed container, counted once on demand.
    func elementCount() -> Int? {
        if let cachedElementCount { return cachedElementCount }
        var count = 0
        var position = contentStart
        while position < contentEnd {
            guard case .end(let next) = state.extent(at: position, limit: contentEnd) else { return nil }
            position = next
            count += 1
        }
        cachedElementCount = count
        return count
    }

    /// A decoder for a value inside this one's container.
    func child(at offset: Int, limit: Int, key: any CodingKey) -> BinaryValueDecoder {
        BinaryValueDecoder(state: state, offset: offset, limit: limit, parent: self, key: key, type: nil)
    }
}

// MARK: - Containers

struct BinaryKeyedDecoding<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let decoder: BinaryValueDecoder

    var codingPath: [any CodingKey] { decoder.codingPath }

    var allKeys: [Key] { decoder.allKeys(Key.self) }

    func contains(_ key: Key) -> Bool { decoder.locate(key) != nil }

    @inline(__always)
    private func require(_ key: some CodingKey) throws -> BinaryEntry {
        guard let entry = decoder.locate(key) else {
            throw BinaryCodingError.keyNotFound(key: key.stringValue, path: binaryPathDescription(decoder.codingPath))
        }
        return entry
    }

    @inline(__always)
    private func isNil(_ entry: BinaryEntry) -> Bool {
        decoder.state.bytes.byte(at: entry.value) == BinaryTag.null
    }

    /// Decodes the entry for `key` with `read` and moves the cursor past it.
    @inline(__always)
    private func value<T>(_ key: Key, _ read: (BinaryDecodingState, BinaryEntry) throws -> T) throws -> T {
        let entry = try require(key)
        let result = try read(decoder.state, entry)
        decoder.cursor = entry.next
        return result
    }

    /// Like `value`, but nil when the key is absent or its value is nil.
    @inline(__always)
    private func valueIfPresent<T>(_ key: Key, _ read: (BinaryDecodingState, BinaryEntry) throws -> T) throws -> T? {
        guard let entry = decoder.locate(key) else { return nil }
        if isNil(entry) {
            decoder.cursor = entry.next
            return nil
        }
        let result = try read(decoder.state, entry)
        decoder.cursor = entry.next
        return result
    }

    func decodeNil(forKey key: Key) throws -> Bool {
        let entry = try require(key)
        guard isNil(entry) else { return false }
        decoder.cursor = entry.next
        return true
    }

    func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool {
        try value(key) { try $0.readBool(at: $1.value, limit: $1.next, parent: decoder, key: key) }
    }
    func decode(_ type: String.Type, forKey key: Key) throws -> String {
        try value(key) { try $0.readString(at: $1.value, limit: $1.next, parent: decoder, key: key) }
    }
    func decode(_ type: Double.Type, forKey key: Key) throws -> Double {
        try value(key) { try $0.readDouble(at: $1.value, limit: $1.next, parent: decoder, key: key) }
    }
    func decode(_ type: Float.Type, forKey key: Key) throws -> Float {
        try value(key) { try $0.readFloat(at: $1.value, limit: $1.next, parent: decoder, key: key) }
    }
    func decode(_ type: Int.Type, forKey key: Key) throws -> Int {
        try value(key) { try $0.readSigned(Int.self, at: $1.value, limit: $1.next, parent: decoder, key: key) }
    }
    func decode(_ type: Int8.Type, forKey key: Key) throws -> Int8 {
        try value(key) { try $0.readSigned(Int8.self, at: $1.value, limit: $1.next, parent: decoder, key: key) }
    }
    func decode(_ type: Int16.Type, forKey key: Key) throws -> Int16 {
        try value(key) { try $0.readSigned(Int16.self, at: $1.value, limit: $1.next, parent: decoder, key: key) }
    }
    func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 {
        try value(key) { try $0.readSigned(Int32.self, at: $1.value, limit: $1.next, parent: decoder, key: key) }
    }
    func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 {
        try value(key) { try $0.readSigned(Int64.self, at: $1.value, limit: $1.next, parent: decoder, key: key) }
    }
    func decode(_ type: UInt.Type, forKey key: Key) throws -> UInt {
        try value(key) { try $0.readUnsigned(UInt.self, at: $1.value, limit: $1.next, parent: decoder, key: key) }
    }
    func decode(_ type: UInt8.Type, forKey key: Key) throws -> UInt8 {
        try value(key) { try $0.readUnsigned(UInt8.self, at: $1.value, limit: $1.next, parent: decoder, key: key) }
    }
    func decode(_ type: UInt16.Type, forKey key: Key) throws -> UInt16 {
        try value(key) { try $0.readUnsigned(UInt16.self, at: $1.value, limit: $1.next, parent: decoder, key: key) }
    }
    func decode(_ type: UInt32.Type, forKey key: Key) throws -> UInt32 {
        try value(key) { try $0.readUnsigned(UInt32.self, at: $1.value, limit: $1.next, parent: decoder, key: key) }
    }
    func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 {
        try value(key) { try $0.readUnsigned(UInt64.self, at: $1.value, limit: $1.next, parent: decoder, key: key) }
    }
    @available(macOS 15, iOS 18, tvOS 18, watchOS 11, visionOS 2, *)
    func decode(_ type: Int128.Type, forKey key: Key) throws -> Int128 {
        try value(key) { try $0.readInt128(at: $1.value, limit: $1.next, parent: decoder, key: key) }
    }
    @available(macOS 15, iOS 18, tvOS 18, watchOS 11, visionOS 2, *)
    func decode(_ type: UInt128.Type, forKey key: Key) throws -> UInt128 {
        try value(key) { try $0.readUInt128(at: $1.value, limit: $1.next, parent: decoder, key: key) }
    }
    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        try value(key) { try $0.decodeValue(T.self, at: $1.value, limit: $1.next, parent: decoder, key: key) }
    }

    func decodeIfPresent(_ type: Bool.Type, forKey key: Key) throws -> Bool? {
        try valueIfPresent(key) { try $0.readBool(at: $1.value, limit: $1.next, parent: decoder, key: key) }
    }
    func decodeIfPresent(_ type: String.Type, forKey key: Key) throws -> String? {
        try valueIfPresent(key) { try $0.readString(at: $1.value, limit: $1.next, parent: decoder, key: key) }
    }
    func decodeIfPresent(_ type: Double.Type, forKey key: Key) throws -> Double? {
        try valueIfPresent(key) { try $0.readDouble(at: $1.value, limit: $1.next, parent: decoder, key: key) }
    }
    func decodeIfPresent(_ type: Float.Type, forKey key: Key) throws -> Float? {
        try valueIfPresent(key) { try $0.readFloat(at: $1.value, limit: $1.next, parent: decoder, key: key) }
    }
    func decodeIfPresent(_ type: Int.Type, forKey key: Key) throws -> Int? {
        try valueIfPresent(key) { try $0.readSigned(Int.self, at: $1.value, limit: $1.next, parent: decoder, key: key) }
    }
    func decodeIfPresent(_ type: Int8.Type, forKey key: Key) throws -> Int8? {
        try valueIfPresent(key) { try $0.readSigned(Int8.self, at: $1.value, limit: $1.next, parent: decoder, key: key) }
    }
    func decodeIfPresent(_ type: Int16.Type, forKey key: Key) throws -> Int16? {
        try valueIfPresent(key) { try $0.readSigned(Int16.self, at: $1.value, limit: $1.next, parent: decoder, key: key) }
    }
    func decodeIfPresent(_ type: Int32.Type, forKey key: Key) throws -> Int32? {
        try valueIfPresent(key) { try $0.readSigned(Int32.self, at: $1.value, limit: $1.next, parent: decoder, key: key) }
    }
    func decodeIfPresent(_ type: Int64.Type, forKey key: Key) throws -> Int64? {
        try valueIfPresent(key) { try $0.readSigned(Int64.self, at: $1.value, limit: $1.next, parent: decoder, key: key) }
    }
    func decodeIfPresent(_ type: UInt.Type, forKey key: Key) throws -> UInt? {
        try valueIfPresent(key) { try $0.readUnsigned(UInt.self, at: $1.value, limit: $1.next, parent: decoder, key: key) }
    }
    func decodeIfPresent(_ type: UInt8.Type, forKey key: Key) throws -> UInt8? {
        try valueIfPresent(key) { try $0.readUnsigned(UInt8.self, at: $1.value, limit: $1.next, parent: decoder, key: key) }
    }
    func decodeIfPresent(_ type: UInt16.Type, forKey key: Key) throws -> UInt16? {
        try valueIfPresent(key) { try $0.readUnsigned(UInt16.self, at: $1.value, limit: $1.next, parent: decoder, key: key) }
    }
    func decodeIfPresent(_ type: UInt32.Type, forKey key: Key) throws -> UInt32? {
        try valueIfPresent(key) { try $0.readUnsigned(UInt32.self, at: $1.value, limit: $1.next, parent: decoder, key: key) }
    }
    func decodeIfPresent(_ type: UInt64.Type, forKey key: Key) throws -> UInt64? {
        try valueIfPresent(key) { try $0.readUnsigned(UInt64.self, at: $1.value, limit: $1.next, parent: decoder, key: key) }
    }
    @available(macOS 15, iOS 18, tvOS 18, watchOS 11, visionOS 2, *)
    func decodeIfPresent(_ type: Int128.Type, forKey key: Key) throws -> Int128? {
        try valueIfPresent(key) { try $0.readInt128(at: $1.value, limit: $1.next, parent: decoder, key: key) }
    }
    @available(macOS 15, iOS 18, tvOS 18, watchOS 11, visionOS 2, *)
    func decodeIfPresent(_ type: UInt128.Type, forKey key: Key) throws -> UInt128? {
        try valueIfPresent(key) { try $0.readUInt128(at: $1.value, limit: $1.next, parent: decoder, key: key) }
    }

    /// Unlike the default, a nil value of an optional `T` (the `.some(nil)` of an `Int??`
    /// property) reads back as `.some(nil)` rather than collapsing to nil.
    func decodeIfPresent<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T? {
        guard let entry = decoder.locate(key) else { return nil }
        if isNil(entry) && !(T.self is any BinaryOptionalMarker.Type) {
            decoder.cursor = entry.next
            return nil
        }
        let result = try decoder.state.decodeValue(T.self, at: entry.value, limit: entry.next, parent: decoder, key: key)
        decoder.cursor = entry.next
        return result
    }

    func nestedContainer<NestedKey: CodingKey>(
        keyedBy type: NestedKey.Type, forKey key: Key
    ) throws -> KeyedDecodingContainer<NestedKey> {
        let entry = try require(key)
        decoder.cursor = entry.next
        return try decoder.child(at: entry.value, limit: entry.next, key: key).container(keyedBy: NestedKey.self)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        let entry = try require(key)
        decoder.cursor = entry.next
        return try decoder.child(at: entry.value, limit: entry.next, key: key).unkeyedContainer()
    }

    func superDecoder() throws -> any Decoder {
        superDecoder(BinaryNamedKey.super)
    }

    func superDecoder(forKey key: Key) throws -> any Decoder {
        superDecoder(key)
    }

    /// A decoder for the value under `key`; an absent key gives a decoder of a missing value,
    /// whose containers then report the key as not found.
    private func superDecoder(_ key: some CodingKey) -> any Decoder {
        guard let entry = decoder.locate(key) else {
            return decoder.child(at: -1, limit: 0, key: key)
        }
        decoder.cursor = entry.next
        return decoder.child(at: entry.value, limit: entry.next, key: key)
    }
}

struct BinaryUnkeyedDecoding: UnkeyedDecodingContainer {
    let decoder: BinaryValueDecoder
    /// Where the next element starts.
    var position: Int
    private(set) var currentIndex = 0

    init(decoder: BinaryValueDecoder, position: Int) {
        self.decoder = decoder
        self.position = position
    }

    var codingPath: [any CodingKey] { decoder.codingPath }
    var count: Int? { decoder.elementCount() }
    var isAtEnd: Bool { position >= decoder.contentEnd }

    /// Decodes the next element with `read`; the index only advances on success.
    @inline(__always)
    private mutating func next<T>(
        _ expected: @autoclosure () -> String,
        _ read: (BinaryValueDecoder, Int, Int, BinaryIndexKey) throws -> T
    ) throws -> T {
        let key = BinaryIndexKey(currentIndex)
        guard position < decoder.contentEnd else {
            throw BinaryCodingError.valueNotFound(path: decoder.state.path(decoder, key), expected: expected())
        }
        let end = try decoder.state.requireExtent(at: position, limit: decoder.contentEnd, parent: decoder, key: key)
        let result = try read(decoder, position, end, key)
        position = end
        currentIndex += 1
        return result
    }

    mutating func decodeNil() throws -> Bool {
        guard position < decoder.contentEnd else {
            throw BinaryCodingError.valueNotFound(
                path: decoder.state.path(decoder, BinaryIndexKey(currentIndex)), expected: "nil")
        }
        guard decoder.state.bytes.byte(at: position) == BinaryTag.null else { return false }
        position += 1
        currentIndex += 1
        return true
    }

    mutating func decode(_ type: Bool.Type) throws -> Bool {
        try next("Bool") { try $0.state.readBool(at: $1, limit: $2, parent: $0, key: $3) }
    }
    mutating func decode(_ type: String.Type) throws -> String {
        try next("String") { try $0.state.readString(at: $1, limit: $2, parent: $0, key: $3) }
    }
    mutating func decode(_ type: Double.Type) throws -> Double {
        try next("Double") { try $0.state.readDouble(at: $1, limit: $2, parent: $0, key: $3) }
    }
    mutating func decode(_ type: Float.Type) throws -> Float {
        try next("Float") { try $0.state.readFloat(at: $1, limit: $2, parent: $0, key: $3) }
    }
    mutating func decode(_ type: Int.Type) throws -> Int {
        try next("Int") { try $0.state.readSigned(Int.self, at: $1, limit: $2, parent: $0, key: $3) }
    }
    mutating func decode(_ type: Int8.Type) throws -> Int8 {
        try next("Int8") { try $0.state.readSigned(Int8.self, at: $1, limit: $2, parent: $0, key: $3) }
    }
    mutating func decode(_ type: Int16.Type) throws -> Int16 {
        try next("Int16") { try $0.state.readSigned(Int16.self, at: $1, limit: $2, parent: $0, key: $3) }
    }
    mutating func decode(_ type: Int32.Type) throws -> Int32 {
        try next("Int32") { try $0.state.readSigned(Int32.self, at: $1, limit: $2, parent: $0, key: $3) }
    }
    mutating func decode(_ type: Int64.Type) throws -> Int64 {
        try next("Int64") { try $0.state.readSigned(Int64.self, at: $1, limit: $2, parent: $0, key: $3) }
    }
    mutating func decode(_ type: UInt.Type) throws -> UInt {
        try next("UInt") { try $0.state.readUnsigned(UInt.self, at: $1, limit: $2, parent: $0, key: $3) }
    }
    mutating func decode(_ type: UInt8.Type) throws -> UInt8 {
        try next("UInt8") { try $0.state.readUnsigned(UInt8.self, at: $1, limit: $2, parent: $0, key: $3) }
    }
    mutating func decode(_ type: UInt16.Type) throws -> UInt16 {
        try next("UInt16") { try $0.state.readUnsigned(UInt16.self, at: $1, limit: $2, parent: $0, key: $3) }
    }
    mutating func decode(_ type: UInt32.Type) throws -> UInt32 {
        try next("UInt32") { try $0.state.readUnsigned(UInt32.self, at: $1, limit: $2, parent: $0, key: $3) }
    }
    mutating func decode(_ type: UInt64.Type) throws -> UInt64 {
        try next("UInt64") { try $0.state.readUnsigned(UInt64.self, at: $1, limit: $2, parent: $0, key: $3) }
    }
    @available(macOS 15, iOS 18, tvOS 18, watchOS 11, visionOS 2, *)
    mutating func decode(_ type: Int128.Type) throws -> Int128 {
        try next("Int128") { try $0.state.readInt128(at: $1, limit: $2, parent: $0, key: $3) }
    }
    @available(macOS 15, iOS 18, tvOS 18, watchOS 11, visionOS 2, *)
    mutating func decode(_ type: UInt128.Type) throws -> UInt128 {
        try next("UInt128") { try $0.state.readUInt128(at: $1, limit: $2, parent: $0, key: $3) }
    }
    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T {
        try next("\(T.self)") { try $0.state.decodeValue(T.self, at: $1, limit: $2, parent: $0, key: $3) }
    }

    mutating func nestedContainer<NestedKey: CodingKey>(
        keyedBy type: NestedKey.Type
    ) throws -> KeyedDecodingContainer<NestedKey> {
        try next("a keyed container") { decoder, start, end, key in
            try decoder.child(at: start, limit: end, key: key).container(keyedBy: NestedKey.self)
        }
    }

    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
        try next("an unkeyed container") { decoder, start, end, key in
            try decoder.child(at: start, limit: end, key: key).unkeyedContainer()
        }
    }

    mutating func superDecoder() throws -> any Decoder {
        try next("a value") { decoder, start, end, key in decoder.child(at: start, limit: end, key: key) }
    }
}

struct BinarySingleValueDecoding: SingleValueDecodingContainer {
    let decoder: BinaryValueDecoder

    var codingPath: [any CodingKey] { decoder.codingPath }

    private var state: BinaryDecodingState { decoder.state }
    private var offset: Int { decoder.offset }
    private var limit: Int { decoder.limit }
    private var parent: BinaryValueDecoder? { decoder.parent }
    private var key: (any CodingKey)? { decoder.key }

    func decodeNil() -> Bool {
        decoder.offset < 0 || state.bytes.byte(at: offset) == BinaryTag.null
    }

    func decode(_ type: Bool.Type) throws -> Bool { try state.readBool(at: offset, limit: limit, parent: parent, key: key) }
    func decode(_ type: String.Type) throws -> String {
        try state.readString(at: offset, limit: limit, parent: parent, key: key)
    }
    func decode(_ type: Double.Type) throws -> Double {
        try state.readDouble(at: offset, limit: limit, parent: parent, key: key)
    }
    func decode(_ type: Float.Type) throws -> Float { try state.readFloat(at: offset, limit: limit, parent: parent, key: key) }
    func decode(_ type: Int.Type) throws -> Int {
        try state.readSigned(Int.self, at: offset, limit: limit, parent: parent, key: key)
    }
    func decode(_ type: Int8.Type) throws -> Int8 {
        try state.readSigned(Int8.self, at: offset, limit: limit, parent: parent, key: key)
    }
    func decode(_ type: Int16.Type) throws -> Int16 {
        try state.readSigned(Int16.self, at: offset, limit: limit, parent: parent, key: key)
    }
    func decode(_ type: Int32.Type) throws -> Int32 {
        try state.readSigned(Int32.self, at: offset, limit: limit, parent: parent, key: key)
    }
    func decode(_ type: Int64.Type) throws -> Int64 {
        try state.readSigned(Int64.self, at: offset, limit: limit, parent: parent, key: key)
    }
    func decode(_ type: UInt.Type) throws -> UInt {
        try state.readUnsigned(UInt.self, at: offset, limit: limit, parent: parent, key: key)
    }
    func decode(_ type: UInt8.Type) throws -> UInt8 {
        try state.readUnsigned(UInt8.self, at: offset, limit: limit, parent: parent, key: key)
    }
    func decode(_ type: UInt16.Type) throws -> UInt16 {
        try state.readUnsigned(UInt16.self, at: offset, limit: limit, parent: parent, key: key)
    }
    func decode(_ type: UInt32.Type) throws -> UInt32 {
        try state.readUnsigned(UInt32.self, at: offset, limit: limit, parent: parent, key: key)
    }
    func decode(_ type: UInt64.Type) throws -> UInt64 {
        try state.readUnsigned(UInt64.self, at: offset, limit: limit, parent: parent, key: key)
    }
    @available(macOS 15, iOS 18, tvOS 18, watchOS 11, visionOS 2, *)
    func decode(_ type: Int128.Type) throws -> Int128 {
        try state.readInt128(at: offset, limit: limit, parent: parent, key: key)
    }
    @available(macOS 15, iOS 18, tvOS 18, watchOS 11, visionOS 2, *)
    func decode(_ type: UInt128.Type) throws -> UInt128 {
        try state.readUInt128(at: offset, limit: limit, parent: parent, key: key)
    }
    func decode<T: Decodable>(_ type: T.Type) throws -> T {
        // An optional's wrapped value: when both are optionals, a `some` marker here belongs to
        // the outer one (see the encoder) and the wrapped value follows it.
        var at = offset
        if T.self is any BinaryOptionalMarker.Type, let owner = decoder.type, owner is any BinaryOptionalMarker.Type,
            state.bytes.byte(at: at) == BinaryTag.some
        {
            at += 1
        }
        // The wrapped value is this same value, so it keeps this decoder's path.
        return try state.decodeValue(T.self, at: at, limit: limit, parent: parent, key: key)
    }
}
