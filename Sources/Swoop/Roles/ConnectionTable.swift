/// Connection ids to values, for the lookups made on every event: a reactor finding the
/// connection a reply is for, a worker checking whether a connection is busy. Open
/// addressing with linear probing, hashed by one multiplication. `Dictionary` hashes each
/// `UInt64` id with SipHash, about 150 instructions a lookup.
struct ConnectionTable<Value> {
    /// Slots hold id + 1; 0 is an empty slot. A power of two in size.
    private var keys: [UInt64]
    /// The value of each occupied slot.
    private var slots: [Value?]
    private(set) var count = 0

    init() {
        keys = Array(repeating: 0, count: 16)
        slots = Array(repeating: nil, count: 16)
    }

    var isEmpty: Bool { count == 0 }

    /// The values, in no particular order (a copy: the table may change while they are used).
    var values: [Value] { slots.compactMap { $0 } }

    /// The ids, in no particular order.
    var ids: [UInt64] { keys.compactMap { $0 == 0 ? nil : $0 &- 1 } }

    /// Fibonacci hashing: the top bits of id × 2^64/φ, spread well for sequential ids.
    @inline(__always)
    private func home(_ key: UInt64) -> Int {
        Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> UInt64(64 - keys.count.trailingZeroBitCount))
    }

    /// The slot holding `id`, or nil.
    @inline(__always)
    private func find(_ id: UInt64) -> Int? {
        let key = id &+ 1
        let mask = keys.count - 1
        var index = home(key)
        while true {
            let slot = keys[index]
            if slot == key { return index }
            if slot == 0 { return nil }
            index = (index + 1) & mask
        }
    }

    subscript(id: UInt64) -> Value? {
        get { find(id).flatMap { slots[$0] } }
        set {
            if let newValue { updateValue(newValue, forKey: id) } else { removeValue(forKey: id) }
        }
    }

    func contains(_ id: UInt64) -> Bool { find(id) != nil }

    /// Sets the value of `id`; returns the value it replaces, if any.
    @discardableResult
    mutating func updateValue(_ value: Value, forKey id: UInt64) -> Value? {
        if (count + 1) * 4 > keys.count * 3 { grow() }
        let key = id &+ 1
        let mask = keys.count - 1
        var index = home(key)
        while true {
            let slot = keys[index]
            if slot == key {
                let old = slots[index]
                slots[index] = value
                return old
            }
            if slot == 0 {
                keys[index] = key
                slots[index] = value
                count += 1
                return nil
            }
            index = (index + 1) & mask
        }
    }

    /// Removes `id`; returns its value, or nil when it was not there.
    @discardableResult
    mutating func removeValue(forKey id: UInt64) -> Value? {
        guard let index = find(id) else { return nil }
        let removed = slots[index]
        let mask = keys.count - 1
        // Backward-shift deletion: the entries after the hole that probed past it move up,
        // so that no search stops at the hole too early (no tombstones to clean up later).
        var hole = index
        var next = (hole + 1) & mask
        while keys[next] != 0 {
            let wanted = home(keys[next])
            // `next`'s entry may fill the hole unless its home lies cyclically in (hole, next].
            let stays = hole < next ? (wanted > hole && wanted <= next) : (wanted > hole || wanted <= next)
            if !stays {
                keys[hole] = keys[next]
                slots[hole] = slots[next]
                hole = next
            }
            next = (next + 1) & mask
        }
        keys[hole] = 0
        slots[hole] = nil
        count -= 1
        return removed
    }

    private mutating func grow() {
        let oldKeys = keys
        let oldSlots = slots
        keys = Array(repeating: 0, count: oldKeys.count * 2)
        slots = Array(repeating: nil, count: oldKeys.count * 2)
        count = 0
        for (key, value) in zip(oldKeys, oldSlots) where key != 0 { updateValue(value!, forKey: key &- 1) }
    }
}

/// A set of connection ids (a worker's busy connections): a ``ConnectionTable`` without values.
struct ConnectionSet {
    private var table = ConnectionTable<Void>()

    var count: Int { table.count }
    var isEmpty: Bool { table.isEmpty }

    func contains(_ id: UInt64) -> Bool { table.contains(id) }

    /// Adds `id`; false when it was there already.
    @discardableResult
    mutating func insert(_ id: UInt64) -> Bool { table.updateValue((), forKey: id) == nil }

    /// Removes `id`; false when it was not there.
    @discardableResult
    mutating func remove(_ id: UInt64) -> Bool { table.removeValue(forKey: id) != nil }
}
