import Foundation
import NIOCore

/// Encodes `Encodable` values into the compact binary format described at `BinaryWire`.
///
///     var buffer = ByteBuffer()
///     try BinaryEncoder().encode(ResizeImage(width: 640, height: 480), into: &buffer)
///     let job = try BinaryDecoder().decode(ResizeImage.self, from: buffer)
///
/// `Data`, `[UInt8]`, `Date`, `URL`, `UUID` and the standard scalars take a fast path that
/// bypasses their own `Codable` implementations; byte blobs are copied with `memcpy`.
struct BinaryEncoder: Sendable {
    /// Whether payloads carry the encoded type's full name after its fingerprint.
    ///
    /// Off by default because the name often outweighs a small payload. Without it a decoder
    /// still detects a type mismatch, and names the payload's type if its own process has met
    /// that type; with it, the name is always known.
    public var embedsTypeName = false

    /// Values the encoded types see as `encoder.userInfo`.
    public var userInfo: [CodingUserInfoKey: any Sendable] = [:]

    public init() {}

    /// Appends the payload for `value` to `buffer`. On error `buffer` keeps its former bytes.
    public func encode<T: Encodable>(_ value: T, into buffer: inout ByteBuffer) throws {
        // The sink takes over the caller's storage (rather than sharing it, which would make
        // the first write copy everything already in the buffer) and hands it back after.
        var storage = ByteBuffer()
        swap(&storage, &buffer)
        let sink = BinarySink(buffer: storage, reserving: 256)
        do {
            try write(value, into: sink)
        } catch {
            buffer = sink.discard()
            throw error
        }
        buffer = sink.finish()
    }

    /// Returns a new buffer holding the payload for `value`.
    public func encode<T: Encodable>(_ value: T) throws -> ByteBuffer {
        let sink = BinarySink(buffer: ByteBuffer(), reserving: 256)
        try write(value, into: sink)
        return sink.finish()
    }

    /// Writes the payload with this thread's idle state if it has one, and gives it back.
    private func write<T: Encodable>(_ value: T, into sink: BinarySink) throws {
        let cache = BinaryThreadCache.current
        let identity = BinaryTypeRegistry.shared.identity(of: T.self, cache: cache)
        let state = cache?.takeEncodingState() ?? BinaryEncodingState()
        do {
            try encodePayload(value, identity: identity, state: state, sink: sink)
        } catch {
            cache?.recycle(consume state)
            throw error
        }
        cache?.recycle(consume state)
    }

    private func encodePayload<T: Encodable>(
        _ value: T, identity: BinaryTypeRegistry.Identity, state: BinaryEncodingState, sink: BinarySink
    ) throws {
        state.userInfo = userInfo.isEmpty ? [:] : userInfo.mapValues { $0 as Any }
        let flags = embedsTypeName ? BinaryWire.flagTypeName : 0
        sink.writeByte(BinaryWire.magic)
        sink.writeByte(BinaryWire.version << 4 | flags)
        sink.writeLittleEndian(identity.fingerprint)
        if embedsTypeName {
            sink.writeVarint(UInt64(identity.name.utf8.count))
            sink.writeUTF8(identity.name)
        }
        try state.encodeValue(value, parent: nil, key: nil, sink: sink)
        if let problem = state.problem { throw problem }
        state.writeKeyTable(into: sink)
    }
}

// MARK: - Shared state

/// What every container of one `encode` call shares: the key table and the first misuse.
///
/// Its hot mutable properties, like those of `BinarySink`, `BinaryValueEncoder` and the
/// decoder's classes, are `@exclusivity(unchecked)`: the dynamic exclusivity check on each
/// access of a class property otherwise costs about a third of the encoding time. They are
/// only touched by short straight-line code that never calls out while holding an access.
final class BinaryEncodingState {
    @exclusivity(unchecked) var userInfo: [CodingUserInfoKey: Any] = [:]
    /// Key names in table order, with their UTF-8 length to skip most comparisons cheaply.
    /// Only the first `keyCount` are this payload's: a reused state overwrites the rest
    /// rather than paying to empty the array.
    @exclusivity(unchecked) private var keyNames: [(name: String, length: Int)] = []
    @exclusivity(unchecked) private var keyCount = 0
    /// Built once the table outgrows a linear search (large dictionaries, many types).
    @exclusivity(unchecked) private var keyIndex: [String: Int] = [:]
    /// The first misuse of the encoding API. `container(keyedBy:)` and friends cannot throw,
    /// so misuse is remembered here and thrown when the top-level `encode` finishes.
    @exclusivity(unchecked) private(set) var problem: BinaryCodingError?

    /// Whether this state can serve another encode; it should not pin the memory of an
    /// unusually large key table.
    func prepareForReuse() -> Bool {
        guard keyNames.capacity <= 256 else { return false }
        if !userInfo.isEmpty { userInfo = [:] }
        keyCount = 0
        if !keyIndex.isEmpty { keyIndex = [:] }
        problem = nil
        return true
    }

    func report(_ reason: String, at path: [any CodingKey]) {
        if problem == nil {
            problem = .invalidEncoding(path: binaryPathDescription(path), reason: reason)
        }
    }

    /// The key reference that identifies `key` in a keyed entry (see `BinaryWire`).
    @inline(__always)
    func reference<K: CodingKey>(for key: K) -> UInt64 {
        if key.intValue != nil, let reference = binaryIntegerKeyReference(key) {
            return reference
        }
        return UInt64(truncatingIfNeeded: index(ofKeyNamed: key.stringValue)) << 1
    }

    private func index(ofKeyNamed name: String) -> Int {
        let length = name.utf8.count
        if keyCount <= BinaryWire.linearSearchLimit {
            let found = keyNames.withUnsafeBufferPointer { names -> Int? in
                for index in 0..<keyCount where names[index].length == length && names[index].name == name {
                    return index
                }
                return nil
            }
            if let found { return found }
        } else if let index = keyIndex[name] {
            return index
        }
        let index = keyCount
        if index < keyNames.count {
            keyNames[index] = (name, length)
        } else {
            if keyNames.isEmpty { keyNames.reserveCapacity(8) }
            keyNames.append((name, length))
        }
        keyCount += 1
        if keyCount > BinaryWire.linearSearchLimit {
            if keyIndex.isEmpty {
                for existing in 0..<keyCount { keyIndex[keyNames[existing].name] = existing }
            } else {
                keyIndex[name] = index
            }
        }
        return index
    }

    func writeKeyTable(into sink: BinarySink) {
        sink.writeVarint(UInt64(keyCount))
        keyNames.withUnsafeBufferPointer { names in
            for entry in names.prefix(keyCount) {
                sink.writeVarint(UInt64(entry.length))
                sink.writeUTF8(entry.name)
            }
        }
    }

    /// Writes one value at the end of `sink`.
    @inline(__always)
    func encodeValue<T: Encodable>(
        _ value: T, parent: BinaryValueEncoder?, key: (any CodingKey)?, sink: BinarySink
    ) throws {
        if sink.writeKnown(value) { return }
        try encodeComposite(value, parent: parent, key: key, sink: sink)
    }

    /// Writes a value that is not one of the natively stored types, through its `encode(to:)`.
    func encodeComposite<T: Encodable>(
        _ value: T, parent: BinaryValueEncoder?, key: (any CodingKey)?, sink: BinarySink
    ) throws {
        let child = BinaryValueEncoder(state: self, sink: sink, parent: parent, key: key, valueType: T.self)
        let previous = sink.active
        sink.active = ObjectIdentifier(child)
        try value.encode(to: child)
        child.finish()
        sink.active = previous
    }
}

// MARK: - Sinks

/// Growable bytes: the payload, or a detached frame for a container whose writes may
/// interleave with its parent's (see `BinaryValueEncoder.makeFrame`).
///
/// The bytes live in a `ByteBuffer`, so the payload needs no copy when it is done, but writes
/// go through a pointer into the buffer's storage: a `ByteBuffer` write call costs a
/// uniqueness check and capacity bookkeeping, a pointer write a bounds check and a store.
/// The pointer is taken when the sink grows and stays valid until it next grows, because
/// the sink holds the only reference to the storage and calls nothing else on it.
final class BinarySink {
    /// The storage; touched only when the sink grows or finishes.
    @exclusivity(unchecked) private var buffer: ByteBuffer
    /// The buffer index where this sink's bytes start (after any bytes the buffer held).
    @exclusivity(unchecked) private var origin: Int
    /// Where this sink's byte 0 is in the buffer's storage.
    @exclusivity(unchecked) private var base: UnsafeMutableRawPointer
    @exclusivity(unchecked) private(set) var count = 0
    @exclusivity(unchecked) private var capacity: Int
    /// The encoder whose containers may write here now. Compared by identity only, so the
    /// sink never keeps an encoder alive.
    @exclusivity(unchecked) var active: ObjectIdentifier?
    /// Frames to splice in, in offset order, when the value containing them finishes.
    @exclusivity(unchecked) var holes: [BinaryHole] = []

    init(buffer: ByteBuffer, reserving minimumCapacity: Int) {
        var buffer = buffer
        let origin = buffer.writerIndex
        let window = Self.window(of: &buffer, at: origin, minimumCapacity: max(minimumCapacity, 16))
        self.buffer = buffer
        self.origin = origin
        self.base = window.base
        self.capacity = window.capacity
    }

    /// Makes room and returns where the sink's bytes start and how many fit.
    private static func window(of buffer: inout ByteBuffer, at origin: Int, minimumCapacity: Int) -> (
        base: UnsafeMutableRawPointer, capacity: Int
    ) {
        buffer.reserveCapacity(origin + minimumCapacity)
        return buffer.withVeryUnsafeMutableBytes { storage in
            guard let start = storage.baseAddress else { fatalError("BinaryEncoder: a buffer without storage") }
            return (start + origin, storage.count - origin)
        }
    }

    /// The buffer with the sink's bytes committed.
    func finish() -> ByteBuffer {
        buffer.moveWriterIndex(to: origin + count)
        return detach()
    }

    /// The buffer as it was before the sink wrote anything.
    func discard() -> ByteBuffer {
        buffer.moveWriterIndex(to: origin)
        return detach()
    }

    /// Gives up the buffer. Should a type have kept an encoder past its `encode(to:)` and
    /// write through it later, those writes then land in fresh storage, never in the bytes
    /// just handed out.
    private func detach() -> ByteBuffer {
        let result = buffer
        buffer = ByteBuffer()
        origin = 0
        count = 0
        capacity = 0
        return result
    }

    func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(start: base, count: count))
    }

    /// Makes room for `needed` more bytes and returns where they go.
    @inline(__always)
    private func reserve(_ needed: Int) -> UnsafeMutableRawPointer {
        if capacity - count < needed { grow(needed) }
        return base + count
    }

    @inline(never)
    private func grow(_ needed: Int) {
        // Committing first makes the buffer keep these bytes when it reallocates.
        buffer.moveWriterIndex(to: origin + count)
        let window = Self.window(of: &buffer, at: origin, minimumCapacity: max(capacity * 2, count + needed))
        buffer.moveWriterIndex(to: origin)
        base = window.base
        capacity = window.capacity
    }

    // MARK: Primitive writes

    @inline(__always)
    func writeByte(_ byte: UInt8) {
        reserve(1).storeBytes(of: byte, as: UInt8.self)
        count += 1
    }

    @inline(__always)
    func writeLittleEndian<I: FixedWidthInteger>(_ value: I) {
        reserve(MemoryLayout<I>.size).storeBytes(of: value.littleEndian, as: I.self)
        count += MemoryLayout<I>.size
    }

    /// Appends `value` as an unsigned LEB128 varint: 7 bits per byte, low bits first.
    @inline(__always)
    func writeVarint(_ value: UInt64) {
        let target = reserve(10)
        count += binaryStoreVarint(value, into: target)
    }

    /// Appends a tag followed by a varint.
    @inline(__always)
    func writeTagged(_ tag: UInt8, _ value: UInt64) {
        let target = reserve(11)
        target.storeBytes(of: tag, as: UInt8.self)
        count += 1 + binaryStoreVarint(value, into: target + 1)
    }

    @inline(__always)
    func writeRaw(_ bytes: UnsafeRawBufferPointer) {
        guard let source = bytes.baseAddress, bytes.count > 0 else { return }
        reserve(bytes.count).copyMemory(from: source, byteCount: bytes.count)
        count += bytes.count
    }

    @inline(__always)
    func writeUTF8(_ text: String) {
        var text = text
        text.withUTF8 { writeRaw(UnsafeRawBufferPointer($0)) }
    }

    // MARK: Value writes

    @inline(__always)
    func writeBool(_ value: Bool) {
        writeByte(value ? BinaryTag.true : BinaryTag.false)
    }

    @inline(__always)
    func writeSigned(_ value: Int64) {
        writeTagged(BinaryTag.signed, binaryZigZag(value))
    }

    @inline(__always)
    func writeUnsigned(_ value: UInt64) {
        writeTagged(BinaryTag.unsigned, value)
    }

    @inline(__always)
    func writeFloat(_ value: Float) {
        let target = reserve(5)
        target.storeBytes(of: BinaryTag.float32, as: UInt8.self)
        target.storeBytes(of: value.bitPattern.littleEndian, toByteOffset: 1, as: UInt32.self)
        count += 5
    }

    @inline(__always)
    func writeDouble(_ value: Double) {
        let target = reserve(9)
        target.storeBytes(of: BinaryTag.float64, as: UInt8.self)
        target.storeBytes(of: value.bitPattern.littleEndian, toByteOffset: 1, as: UInt64.self)
        count += 9
    }

    @inline(__always)
    func writeString(_ value: String) {
        var value = value
        value.withUTF8 { utf8 in
            writeTagged(BinaryTag.string, UInt64(utf8.count))
            writeRaw(UnsafeRawBufferPointer(utf8))
        }
    }

    @inline(__always)
    func writeBytes(_ bytes: UnsafeRawBufferPointer) {
        writeTagged(BinaryTag.bytes, UInt64(bytes.count))
        writeRaw(bytes)
    }

    /// 64-bit values keep the compact varint forms; only wider ones take 16 fixed bytes.
    @available(macOS 15, iOS 18, tvOS 18, watchOS 11, visionOS 2, *)
    func writeInt128(_ value: Int128) {
        if let small = Int64(exactly: value) {
            writeSigned(small)
            return
        }
        writeByte(BinaryTag.int128)
        writeLittleEndian(UInt64(truncatingIfNeeded: value))
        writeLittleEndian(UInt64(truncatingIfNeeded: value >> 64))
    }

    @available(macOS 15, iOS 18, tvOS 18, watchOS 11, visionOS 2, *)
    func writeUInt128(_ value: UInt128) {
        if let small = UInt64(exactly: value) {
            writeUnsigned(small)
            return
        }
        writeByte(BinaryTag.uint128)
        writeLittleEndian(UInt64(truncatingIfNeeded: value))
        writeLittleEndian(UInt64(truncatingIfNeeded: value >> 64))
    }

    /// Writes the value if the format stores its type natively and reports whether it did.
    ///
    /// The comparisons are of metatypes, a few instructions each; the casts that follow
    /// cannot fail because the types are identical.
    @inline(__always)
    func writeKnown<T>(_ value: T) -> Bool {
        if T.self == String.self {
            writeString(unsafeBitCast(value, to: String.self))
        } else if T.self == Int.self {
            writeSigned(Int64(unsafeBitCast(value, to: Int.self)))
        } else if T.self == Double.self {
            writeDouble(unsafeBitCast(value, to: Double.self))
        } else if T.self == Bool.self {
            writeBool(unsafeBitCast(value, to: Bool.self))
        } else if T.self == Data.self {
            unsafeBitCast(value, to: Data.self).withUnsafeBytes { writeBytes($0) }
        } else if T.self == [UInt8].self {
            unsafeBitCast(value, to: [UInt8].self).withUnsafeBytes { writeBytes($0) }
        } else if T.self == Date.self {
            writeDouble(unsafeBitCast(value, to: Date.self).timeIntervalSinceReferenceDate)
        } else if T.self == UUID.self {
            withUnsafeBytes(of: unsafeBitCast(value, to: UUID.self).uuid) { writeBytes($0) }
        } else if T.self == URL.self {
            writeString(unsafeBitCast(value, to: URL.self).absoluteString)
        } else if T.self == Float.self {
            writeFloat(unsafeBitCast(value, to: Float.self))
        } else if T.self == Int64.self {
            writeSigned(unsafeBitCast(value, to: Int64.self))
        } else if T.self == UInt64.self {
            writeUnsigned(unsafeBitCast(value, to: UInt64.self))
        } else if T.self == Int32.self {
            writeSigned(Int64(unsafeBitCast(value, to: Int32.self)))
        } else if T.self == UInt32.self {
            writeUnsigned(UInt64(unsafeBitCast(value, to: UInt32.self)))
        } else if T.self == UInt.self {
            writeUnsigned(UInt64(unsafeBitCast(value, to: UInt.self)))
        } else if T.self == Int16.self {
            writeSigned(Int64(unsafeBitCast(value, to: Int16.self)))
        } else if T.self == UInt16.self {
            writeUnsigned(UInt64(unsafeBitCast(value, to: UInt16.self)))
        } else if T.self == Int8.self {
            writeSigned(Int64(unsafeBitCast(value, to: Int8.self)))
        } else if T.self == UInt8.self {
            writeUnsigned(UInt64(unsafeBitCast(value, to: UInt8.self)))
        } else if #available(macOS 15, iOS 18, tvOS 18, watchOS 11, visionOS 2, *), T.self == Int128.self {
            writeInt128(unsafeBitCast(value, to: Int128.self))
        } else if #available(macOS 15, iOS 18, tvOS 18, watchOS 11, visionOS 2, *), T.self == UInt128.self {
            writeUInt128(unsafeBitCast(value, to: UInt128.self))
        } else {
            return false
        }
        return true
    }

    // MARK: Rewriting

    @inline(__always)
    func setByte(_ byte: UInt8, at offset: Int) {
        precondition(offset >= 0 && offset < count)
        base.storeBytes(of: byte, toByteOffset: offset, as: UInt8.self)
    }

    /// Opens a gap of `size` bytes at `offset` by moving everything after it.
    func insertGap(at offset: Int, size: Int) {
        precondition(offset >= 0 && offset <= count && size >= 0)
        _ = reserve(size)
        (base + offset + size).copyMemory(from: base + offset, byteCount: count - offset)
        count += size
    }

    /// Moves `length` bytes within the sink; the ranges may overlap.
    func move(from source: Int, to target: Int, length: Int) {
        precondition(source >= 0 && target >= 0 && length >= 0 && source + length <= count && target + length <= count)
        (base + target).copyMemory(from: base + source, byteCount: length)
    }

    /// Copies another sink's bytes over this one's at `offset`.
    func overwrite(at offset: Int, with other: BinarySink) {
        precondition(offset >= 0 && offset + other.count <= count)
        other.withBytes { bytes in
            if let source = bytes.baseAddress { (base + offset).copyMemory(from: source, byteCount: bytes.count) }
        }
    }

    /// Grows the sink by `size` bytes whose content the caller fills in.
    func extend(by size: Int) {
        _ = reserve(size)
        count += size
    }
}

/// A place in a sink where a frame's finished bytes belong.
struct BinaryHole {
    let offset: Int
    let frame: BinaryValueEncoder
}

// MARK: - Value encoders

/// The `Encoder` for one value.
///
/// Its containers write at the end of the sink. That is right for every nested value,
/// because its `encode(to:)` returns before the parent writes again. A container's length
/// is unknown until the value finishes, so one placeholder byte is reserved and widened
/// (moving the content) only for containers of 128 bytes or more.
///
/// `nestedContainer`, `nestedUnkeyedContainer` and `superEncoder` hand out containers that
/// the caller may fill interleaved with the parent, so those write into a frame of their own
/// that is spliced into the parent when the parent finishes.
final class BinaryValueEncoder: Encoder {
    enum Form: Equatable {
        case empty, keyed, unkeyed, single, singleWritten
    }

    let state: BinaryEncodingState
    let sink: BinarySink
    let parent: BinaryValueEncoder?
    let key: (any CodingKey)?
    /// The type whose `encode(to:)` uses this encoder; nil for frames.
    let valueType: Any.Type?
    /// A frame's full coding path. Frames keep it rather than a parent so that a parent's
    /// pending frames never form a reference cycle with it.
    let framePath: [any CodingKey]?
    @exclusivity(unchecked) var form = Form.empty
    /// Where the container's length placeholder is.
    @exclusivity(unchecked) private var lengthAt = 0

    init(
        state: BinaryEncodingState, sink: BinarySink, parent: BinaryValueEncoder?, key: (any CodingKey)?,
        valueType: Any.Type?, framePath: [any CodingKey]? = nil
    ) {
        self.state = state
        self.sink = sink
        self.parent = parent
        self.key = key
        self.valueType = valueType
        self.framePath = framePath
    }

    var codingPath: [any CodingKey] {
        if let framePath { return framePath }
        var path = parent?.codingPath ?? []
        if let key { path.append(key) }
        return path
    }

    var userInfo: [CodingUserInfoKey: Any] { state.userInfo }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        open(.keyed)
        return KeyedEncodingContainer(BinaryKeyedEncoding<Key>(encoder: self))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        open(.unkeyed)
        return BinaryUnkeyedEncoding(encoder: self)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer {
        checkActive()
        switch form {
        case .empty: form = .single
        case .single, .singleWritten: break
        case .keyed, .unkeyed: report("a single value container was requested after a \(form) container")
        }
        return BinarySingleValueEncoding(encoder: self)
    }

    private func open(_ wanted: Form) {
        checkActive()
        if form == wanted { return }  // A subclass calling super.encode(to: encoder) shares it.
        guard form == .empty else {
            report("a \(wanted) container was requested after a \(form) container")
            return
        }
        form = wanted
        sink.writeByte(wanted == .keyed ? BinaryTag.keyed : BinaryTag.unkeyed)
        lengthAt = sink.count
        sink.writeByte(0)
    }

    @inline(__always)
    func checkActive() {
        if sink.active != ObjectIdentifier(self) { reportInactive() }
    }

    private func reportInactive() {
        report("a container was written after its value finished or while a nested value was being encoded")
    }

    func report(_ reason: String) {
        state.report(reason, at: codingPath)
    }

    /// Marks a single value container as used; it holds exactly one value.
    @inline(__always)
    func beginSingleValue() {
        checkActive()
        if form == .single {
            form = .singleWritten
        } else {
            report("a single value container was written more than once")
        }
    }

    /// A detached encoder whose bytes land at the sink's current end when this one finishes.
    func makeFrame(key: any CodingKey) -> BinaryValueEncoder {
        var path = codingPath
        path.append(key)
        let frameSink = BinarySink(buffer: ByteBuffer(), reserving: 64)
        let frame = BinaryValueEncoder(
            state: state, sink: frameSink, parent: nil, key: nil, valueType: nil, framePath: path)
        frameSink.active = ObjectIdentifier(frame)
        sink.holes.append(BinaryHole(offset: sink.count, frame: frame))
        return frame
    }

    /// Completes the value: splices pending frames and fills in the container length.
    func finish() {
        switch form {
        case .empty, .single:
            // Nothing was encoded; an empty keyed container reads back as an empty struct.
            sink.writeByte(BinaryTag.keyed)
            sink.writeByte(0)
        case .singleWritten:
            break
        case .keyed, .unkeyed:
            // After a misuse the offsets may not describe this value; the payload is
            // discarded anyway, so leave the bytes alone.
            guard state.problem == nil else { return }
            if let last = sink.holes.last, last.offset > lengthAt { spliceFrames() }
            patchLength()
        }
    }

    private func spliceFrames() {
        var first = sink.holes.count
        while first > 0 && sink.holes[first - 1].offset > lengthAt { first -= 1 }
        let holes = Array(sink.holes[first...])
        sink.holes.removeSubrange(first...)
        var total = 0
        for hole in holes {
            hole.frame.finish()
            hole.frame.sink.active = nil  // Later writes through it are misuse.
            total += hole.frame.sink.count
        }
        // Grow once, then move each stretch between holes right, last first, so nothing is
        // overwritten before it has moved.
        var segmentEnd = sink.count
        sink.extend(by: total)
        var shift = total
        for hole in holes.reversed() {
            let frame = hole.frame.sink
            shift -= frame.count
            sink.move(from: hole.offset, to: hole.offset + shift + frame.count, length: segmentEnd - hole.offset)
            sink.overwrite(at: hole.offset + shift, with: frame)
            segmentEnd = hole.offset
        }
    }

    private func patchLength() {
        let contentStart = lengthAt + 1
        let length = sink.count - contentStart
        if length < 0x80 {
            sink.setByte(UInt8(truncatingIfNeeded: length), at: lengthAt)
            return
        }
        sink.insertGap(at: contentStart, size: binaryVarintSize(UInt64(length)) - 1)
        var rest = UInt64(length)
        var position = lengthAt
        while rest >= 0x80 {
            sink.setByte(UInt8(truncatingIfNeeded: rest) | 0x80, at: position)
            rest >>= 7
            position += 1
        }
        sink.setByte(UInt8(truncatingIfNeeded: rest), at: position)
    }
}

// MARK: - Containers

struct BinaryKeyedEncoding<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let encoder: BinaryValueEncoder

    var codingPath: [any CodingKey] { encoder.codingPath }

    /// Writes the entry's key reference; the value follows.
    @inline(__always)
    private func entry(_ key: some CodingKey) -> BinarySink {
        encoder.checkActive()
        let sink = encoder.sink
        sink.writeVarint(encoder.state.reference(for: key))
        return sink
    }

    mutating func encodeNil(forKey key: Key) throws { entry(key).writeByte(BinaryTag.null) }
    mutating func encode(_ value: Bool, forKey key: Key) throws { entry(key).writeBool(value) }
    mutating func encode(_ value: String, forKey key: Key) throws { entry(key).writeString(value) }
    mutating func encode(_ value: Double, forKey key: Key) throws { entry(key).writeDouble(value) }
    mutating func encode(_ value: Float, forKey key: Key) throws { entry(key).writeFloat(value) }
    mutating func encode(_ value: Int, forKey key: Key) throws { entry(key).writeSigned(Int64(value)) }
    mutating func encode(_ value: Int8, forKey key: Key) throws { entry(key).writeSigned(Int64(value)) }
    mutating func encode(_ value: Int16, forKey key: Key) throws { entry(key).writeSigned(Int64(value)) }
    mutating func encode(_ value: Int32, forKey key: Key) throws { entry(key).writeSigned(Int64(value)) }
    mutating func encode(_ value: Int64, forKey key: Key) throws { entry(key).writeSigned(value) }
    mutating func encode(_ value: UInt, forKey key: Key) throws { entry(key).writeUnsigned(UInt64(value)) }
    mutating func encode(_ value: UInt8, forKey key: Key) throws { entry(key).writeUnsigned(UInt64(value)) }
    mutating func encode(_ value: UInt16, forKey key: Key) throws { entry(key).writeUnsigned(UInt64(value)) }
    mutating func encode(_ value: UInt32, forKey key: Key) throws { entry(key).writeUnsigned(UInt64(value)) }
    mutating func encode(_ value: UInt64, forKey key: Key) throws { entry(key).writeUnsigned(value) }

    @available(macOS 15, iOS 18, tvOS 18, watchOS 11, visionOS 2, *)
    mutating func encode(_ value: Int128, forKey key: Key) throws { entry(key).writeInt128(value) }

    @available(macOS 15, iOS 18, tvOS 18, watchOS 11, visionOS 2, *)
    mutating func encode(_ value: UInt128, forKey key: Key) throws { entry(key).writeUInt128(value) }

    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        let sink = entry(key)
        if sink.writeKnown(value) { return }
        try encoder.state.encodeComposite(value, parent: encoder, key: key, sink: sink)
    }

    mutating func nestedContainer<NestedKey: CodingKey>(
        keyedBy keyType: NestedKey.Type, forKey key: Key
    ) -> KeyedEncodingContainer<NestedKey> {
        _ = entry(key)
        return encoder.makeFrame(key: key).container(keyedBy: NestedKey.self)
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        _ = entry(key)
        return encoder.makeFrame(key: key).unkeyedContainer()
    }

    mutating func superEncoder() -> any Encoder {
        _ = entry(BinaryNamedKey.super)
        return encoder.makeFrame(key: BinaryNamedKey.super)
    }

    mutating func superEncoder(forKey key: Key) -> any Encoder {
        _ = entry(key)
        return encoder.makeFrame(key: key)
    }
}

struct BinaryUnkeyedEncoding: UnkeyedEncodingContainer {
    let encoder: BinaryValueEncoder
    private(set) var count = 0

    init(encoder: BinaryValueEncoder) {
        self.encoder = encoder
    }

    var codingPath: [any CodingKey] { encoder.codingPath }

    @inline(__always)
    private mutating func element() -> BinarySink {
        encoder.checkActive()
        count += 1
        return encoder.sink
    }

    mutating func encodeNil() throws { element().writeByte(BinaryTag.null) }
    mutating func encode(_ value: Bool) throws { element().writeBool(value) }
    mutating func encode(_ value: String) throws { element().writeString(value) }
    mutating func encode(_ value: Double) throws { element().writeDouble(value) }
    mutating func encode(_ value: Float) throws { element().writeFloat(value) }
    mutating func encode(_ value: Int) throws { element().writeSigned(Int64(value)) }
    mutating func encode(_ value: Int8) throws { element().writeSigned(Int64(value)) }
    mutating func encode(_ value: Int16) throws { element().writeSigned(Int64(value)) }
    mutating func encode(_ value: Int32) throws { element().writeSigned(Int64(value)) }
    mutating func encode(_ value: Int64) throws { element().writeSigned(value) }
    mutating func encode(_ value: UInt) throws { element().writeUnsigned(UInt64(value)) }
    mutating func encode(_ value: UInt8) throws { element().writeUnsigned(UInt64(value)) }
    mutating func encode(_ value: UInt16) throws { element().writeUnsigned(UInt64(value)) }
    mutating func encode(_ value: UInt32) throws { element().writeUnsigned(UInt64(value)) }
    mutating func encode(_ value: UInt64) throws { element().writeUnsigned(value) }

    @available(macOS 15, iOS 18, tvOS 18, watchOS 11, visionOS 2, *)
    mutating func encode(_ value: Int128) throws { element().writeInt128(value) }

    @available(macOS 15, iOS 18, tvOS 18, watchOS 11, visionOS 2, *)
    mutating func encode(_ value: UInt128) throws { element().writeUInt128(value) }

    mutating func encode<T: Encodable>(_ value: T) throws {
        let index = count
        let sink = element()
        if sink.writeKnown(value) { return }
        try encoder.state.encodeComposite(value, parent: encoder, key: BinaryIndexKey(index), sink: sink)
    }

    mutating func nestedContainer<NestedKey: CodingKey>(
        keyedBy keyType: NestedKey.Type
    ) -> KeyedEncodingContainer<NestedKey> {
        let index = count
        _ = element()
        return encoder.makeFrame(key: BinaryIndexKey(index)).container(keyedBy: NestedKey.self)
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        let index = count
        _ = element()
        return encoder.makeFrame(key: BinaryIndexKey(index)).unkeyedContainer()
    }

    mutating func superEncoder() -> any Encoder {
        let index = count
        _ = element()
        return encoder.makeFrame(key: BinaryIndexKey(index))
    }
}

struct BinarySingleValueEncoding: SingleValueEncodingContainer {
    let encoder: BinaryValueEncoder

    var codingPath: [any CodingKey] { encoder.codingPath }

    @inline(__always)
    private func value() -> BinarySink {
        encoder.beginSingleValue()
        return encoder.sink
    }

    mutating func encodeNil() throws { value().writeByte(BinaryTag.null) }
    mutating func encode(_ value: Bool) throws { self.value().writeBool(value) }
    mutating func encode(_ value: String) throws { self.value().writeString(value) }
    mutating func encode(_ value: Double) throws { self.value().writeDouble(value) }
    mutating func encode(_ value: Float) throws { self.value().writeFloat(value) }
    mutating func encode(_ value: Int) throws { self.value().writeSigned(Int64(value)) }
    mutating func encode(_ value: Int8) throws { self.value().writeSigned(Int64(value)) }
    mutating func encode(_ value: Int16) throws { self.value().writeSigned(Int64(value)) }
    mutating func encode(_ value: Int32) throws { self.value().writeSigned(Int64(value)) }
    mutating func encode(_ value: Int64) throws { self.value().writeSigned(value) }
    mutating func encode(_ value: UInt) throws { self.value().writeUnsigned(UInt64(value)) }
    mutating func encode(_ value: UInt8) throws { self.value().writeUnsigned(UInt64(value)) }
    mutating func encode(_ value: UInt16) throws { self.value().writeUnsigned(UInt64(value)) }
    mutating func encode(_ value: UInt32) throws { self.value().writeUnsigned(UInt64(value)) }
    mutating func encode(_ value: UInt64) throws { self.value().writeUnsigned(value) }

    @available(macOS 15, iOS 18, tvOS 18, watchOS 11, visionOS 2, *)
    mutating func encode(_ value: Int128) throws { self.value().writeInt128(value) }

    @available(macOS 15, iOS 18, tvOS 18, watchOS 11, visionOS 2, *)
    mutating func encode(_ value: UInt128) throws { self.value().writeUInt128(value) }

    mutating func encode<T: Encodable>(_ value: T) throws {
        let sink = self.value()
        if sink.writeKnown(value) { return }
        // `Optional<Optional<X>>.some(w)` arrives here as `w`. Were `w` nil, it would read back
        // as the outer nil, so a `some` marker says the outer optional is present. Checking
        // here keeps the cost off every other value.
        if T.self is any BinaryOptionalMarker.Type, let owner = encoder.valueType,
            owner is any BinaryOptionalMarker.Type
        {
            sink.writeByte(BinaryTag.some)
        }
        // The wrapped value is this same value, so it gets this encoder's path.
        try encoder.state.encodeComposite(value, parent: encoder, key: nil, sink: sink)
    }
}
