#if canImport(Glibc)
import Glibc
#endif
import NIOCore

/// Writes many small pieces (the fields of an HTTP head, the strings of an IPC frame) into
/// a `ByteBuffer` with one capacity check and one copy each. Every `ByteBuffer.write…` call
/// costs a few hundred instructions of bookkeeping, as much as the bytes of a short header:
/// a response head made of a dozen of them cost more than the rest of its encoding.
struct ByteWriter {
    private let base: UnsafeMutableRawPointer
    private let limit: Int
    private(set) var offset = 0

    fileprivate init(_ base: UnsafeMutableRawPointer, limit: Int) {
        self.base = base
        self.limit = limit
    }

    private mutating func reserve(_ count: Int) -> UnsafeMutableRawPointer {
        // The sizes are computed by the caller; a mistake must trap, not write past the buffer.
        precondition(offset + count <= limit, "ByteWriter: \(offset + count) bytes written into \(limit)")
        defer { offset += count }
        return base + offset
    }

    /// A literal. (Labelled: unlabelled, a literal argument would pick the `String`
    /// overload, Swift's default literal type, at several times the cost.)
    mutating func put(literal text: StaticString) {
        let count = text.utf8CodeUnitCount
        memcpy(reserve(count), text.utf8Start, count)
    }

    mutating func put(_ text: String) {
        let utf8 = text.utf8
        let copied = utf8.withContiguousStorageIfAvailable { bytes -> Bool in
            if let source = bytes.baseAddress { memcpy(reserve(bytes.count), source, bytes.count) }
            return true
        }
        if copied == nil {
            let target = reserve(utf8.count)
            for (index, byte) in utf8.enumerated() { target.storeBytes(of: byte, toByteOffset: index, as: UInt8.self) }
        }
    }

    /// Bytes of a buffer (a short body written with its head, in the same pass).
    mutating func put(bytes buffer: ByteBuffer) {
        buffer.withUnsafeReadableBytes { bytes in
            if let source = bytes.baseAddress { memcpy(reserve(bytes.count), source, bytes.count) }
        }
    }

    mutating func put(_ byte: UInt8) {
        reserve(1).storeBytes(of: byte, as: UInt8.self)
    }

    mutating func put<T: FixedWidthInteger>(bigEndian value: T) {
        var big = value.bigEndian
        memcpy(reserve(MemoryLayout<T>.size), &big, MemoryLayout<T>.size)
    }

    /// A non-negative integer in decimal.
    mutating func put(decimal value: Int) {
        precondition(value >= 0)
        let count = Self.decimalLength(value)
        let target = reserve(count)
        var rest = value
        for index in stride(from: count - 1, through: 0, by: -1) {
            target.storeBytes(of: UInt8(truncatingIfNeeded: 48 + rest % 10), toByteOffset: index, as: UInt8.self)
            rest /= 10
        }
    }

    static func decimalLength(_ value: Int) -> Int {
        var count = 1
        var rest = value
        while rest >= 10 { rest /= 10; count += 1 }
        return count
    }
}

extension ByteBuffer {
    /// Appends exactly `count` bytes written by `body`.
    mutating func write(exactly count: Int, _ body: (inout ByteWriter) -> Void) {
        guard count > 0 else { return }
        writeWithUnsafeMutableBytes(minimumWritableBytes: count) { pointer in
            var writer = ByteWriter(pointer.baseAddress!, limit: count)
            body(&writer)
            precondition(writer.offset == count, "ByteWriter: \(writer.offset) bytes written of \(count)")
            return count
        }
    }
}
