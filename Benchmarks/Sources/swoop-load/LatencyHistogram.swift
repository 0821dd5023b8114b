/// Latencies in nanoseconds, counted in log-linear buckets (the HdrHistogram layout).
///
/// Values below 128 ns get a bucket each; above that, every power of two is split into 128
/// equal buckets, so any recorded value is known to within 1/128 (0.8 %) of itself while the
/// whole range up to 2^40 ns (18 minutes) takes 4,352 counters. Recording is an index
/// computation and an increment: cheap enough to do for every request, on the event loop,
/// without sampling.
struct LatencyHistogram: Sendable {
    /// log2 of the buckets per power of two.
    private static let subBucketBits = 7
    private static let subBucketCount = 1 << subBucketBits
    /// Values from 2^maxExponent on are counted in the last bucket.
    private static let maxExponent = 40
    private static let bucketCount = subBucketCount * (maxExponent - subBucketBits + 1)

    private var counts = [UInt64](repeating: 0, count: bucketCount)

    /// How many values were recorded.
    private(set) var total: UInt64 = 0

    /// Counts one latency.
    mutating func record(nanoseconds: Int64) {
        let value = UInt64(max(0, min(nanoseconds, (1 << Self.maxExponent) - 1)))
        counts[Self.index(of: value)] &+= 1
        total &+= 1
    }

    /// Adds every count of `other` to this one.
    mutating func merge(_ other: LatencyHistogram) {
        for index in counts.indices { counts[index] &+= other.counts[index] }
        total &+= other.total
    }

    /// The latency at `quantile` (0...1) in nanoseconds: the middle of the bucket holding the
    /// value of that rank, or nil when nothing was recorded.
    func value(atQuantile quantile: Double) -> Double? {
        guard total > 0 else { return nil }
        // The rank of the wanted value, 1-based: the smallest value at or above the quantile.
        let rank = max(1, UInt64((quantile * Double(total)).rounded(.up)))
        var seen: UInt64 = 0
        for (index, count) in counts.enumerated() where count > 0 {
            seen += count
            if seen >= rank {
                let (low, width) = Self.bounds(of: index)
                return Double(low) + Double(width - 1) / 2
            }
        }
        return nil
    }

    /// The bucket of `value`.
    private static func index(of value: UInt64) -> Int {
        if value < UInt64(subBucketCount) { return Int(value) }
        // `shift` is how many low bits the buckets of this power of two do not tell apart.
        let exponent = 63 - value.leadingZeroBitCount
        let shift = exponent - subBucketBits
        let subBucket = Int(value >> UInt64(shift)) - subBucketCount
        return subBucketCount * (shift + 1) + subBucket
    }

    /// The lowest value in bucket `index`, and how many values the bucket holds.
    private static func bounds(of index: Int) -> (low: UInt64, width: UInt64) {
        if index < subBucketCount { return (UInt64(index), 1) }
        let shift = index / subBucketCount - 1
        let subBucket = index % subBucketCount
        return (UInt64(subBucketCount + subBucket) << UInt64(shift), 1 << UInt64(shift))
    }
}
