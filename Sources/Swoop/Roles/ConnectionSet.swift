/// A set of connection ids for a worker's per-event bookkeeping: open addressing with
/// linear probing, hashed by one multiplication. `Set<UInt64>` hashes each id with SipHash,
/// about 150 instructions an operation, and a worker does three per event (is the
/// connection busy, it is, it no longer is).
struct ConnectionSet {
    /// Slots hold id + 1; 0 is an empty slot. A power of two in size.
    private var slots: [UInt64]
    private(set) var count = 0

    init() {
        slots = Array(repeating: 0, count: 16)
    }

    var isEmpty: Bool { count == 0 }

    /// Fibonacci hashing: the top bits of id × 2^64/φ, spread well for sequential ids.
    @inline(__always)
    private func home(_ key: UInt64) -> Int {
        Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> UInt64(64 - slots.count.trailingZeroBitCount))
    }

    func contains(_ id: UInt64) -> Bool {
        let key = id &+ 1
        let mask = slots.count - 1
        var index = home(key)
        while true {
            let slot = slots[index]
            if slot == key { return true }
            if slot == 0 { return false }
            index = (index + 1) & mask
        }
    }

    /// Adds `id`; false when it was there already.
    @discardableResult
    mutating func insert(_ id: UInt64) -> Bool {
        if (count + 1) * 4 > slots.count * 3 { grow() }
        let key = id &+ 1
        let mask = slots.count - 1
        var index = home(key)
        while true {
            let slot = slots[index]
            if slot == key { return false }
            if slot == 0 {
                slots[index] = key
                count += 1
                return true
            }
            index = (index + 1) & mask
        }
    }

    /// Removes `id`; false when it was not there.
    @discardableResult
    mutating func remove(_ id: UInt64) -> Bool {
        let key = id &+ 1
        let mask = slots.count - 1
        var index = home(key)
        while slots[index] != key {
            if slots[index] == 0 { return false }
            index = (index + 1) & mask
        }
        // Backward-shift deletion: the entries after the hole that probed past it move up,
        // so that no search stops at the hole too early (no tombstones to clean up later).
        var hole = index
        var next = (hole + 1) & mask
        while slots[next] != 0 {
            let wanted = home(slots[next])
            // `next`'s entry may fill the hole unless its home lies cyclically in (hole, next].
            let stays = hole < next ? (wanted > hole && wanted <= next) : (wanted > hole || wanted <= next)
            if !stays {
                slots[hole] = slots[next]
                hole = next
            }
            next = (next + 1) & mask
        }
        slots[hole] = 0
        count -= 1
        return true
    }

    private mutating func grow() {
        let old = slots
        slots = Array(repeating: 0, count: old.count * 2)
        count = 0
        for key in old where key != 0 { insert(key &- 1) }
    }
}
