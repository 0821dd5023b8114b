// A connection's input or output bytes: one malloc'ed block, reused for the connection's life.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A growable block of bytes with a consumed front: bytes in `start..<end` are pending
/// (unparsed input, or output not yet taken by the kernel).
///
/// Over `malloc`/`realloc`, so that appending a reply is a bounds check and a `memcpy`: no
/// copy-on-write check, no allocation once the block is big enough.
///
/// A class, held in a `let` by its owner, rather than a struct in the owner's `var`: a
/// mutating method called on a class's stored struct is an access to that property for the
/// whole call, which Swift checks at run time for exclusivity (`swift_beginAccess`, a
/// thread-local access set: about 80 instructions each, half of a request's cost in the first
/// version of this server). Each access to this class's fields is instantaneous, so the
/// optimizer proves them conflict-free and drops the checks.
final class IOBuffer {
    private(set) var base: UnsafeMutablePointer<UInt8>
    private(set) var capacity: Int
    /// Bytes before this are consumed (input) or sent (output).
    var start = 0
    /// Bytes from `start` to this are pending.
    var end = 0

    init(capacity: Int) {
        precondition(capacity > 0)
        guard let block = malloc(capacity) else { fatalError("swift-epoll: out of memory") }
        base = block.assumingMemoryBound(to: UInt8.self)
        self.capacity = capacity
    }

    deinit { free(base) }

    var count: Int { end - start }
    var isEmpty: Bool { start == end }
    /// Free bytes after `end`.
    var room: Int { capacity - end }

    /// Forgets every pending byte.
    func clear() {
        start = 0
        end = 0
    }

    /// Makes room for `more` bytes after `end`: moves the pending bytes to the front first,
    /// then grows (doubling).
    func reserve(_ more: Int) {
        if start == end { clear() }
        if capacity - end >= more { return }
        if start > 0 {
            memmove(base, base + start, end - start)
            end -= start
            start = 0
            if capacity - end >= more { return }
        }
        var grown = capacity
        while grown - end < more { grown *= 2 }
        guard let block = realloc(base, grown) else { fatalError("swift-epoll: out of memory") }
        base = block.assumingMemoryBound(to: UInt8.self)
        capacity = grown
    }

    @inline(__always)
    func append(_ bytes: UnsafeRawPointer, count: Int) {
        if capacity - end < count { reserve(count) }
        memcpy(base + end, bytes, count)
        end += count
    }

    @inline(__always)
    func append(_ text: StaticString) {
        append(text.utf8Start, count: text.utf8CodeUnitCount)
    }

    @inline(__always)
    func append(byte: UInt8) {
        if capacity == end { reserve(1) }
        base[end] = byte
        end += 1
    }

    /// Appends `value` (not negative) in decimal.
    func appendDecimal(_ value: Int) {
        var digits = 1
        var rest = value / 10
        while rest > 0 {
            digits += 1
            rest /= 10
        }
        if capacity - end < digits { reserve(digits) }
        rest = value
        var position = end + digits
        repeat {
            position -= 1
            base[position] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: rest % 10)
            rest /= 10
        } while position > end
        end += digits
    }
}
