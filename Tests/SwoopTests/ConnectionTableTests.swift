import XCTest
@testable import Swoop

/// `ConnectionSet` and `ConnectionTable` against `Set` and `Dictionary`, operation by operation.
final class ConnectionTableTests: XCTestCase {
    func testItAgreesWithSetOnRandomOperations() {
        var generator = SystemRandomNumberGenerator()
        for round in 0..<20 {
            var ours = ConnectionSet()
            var reference = Set<UInt64>()
            // Few distinct ids, so that inserts and removes hit present and absent ones, and
            // long probe runs form and are cut by deletions; ids of either kind the worker
            // sees (small sequences, generation in the high 32 bits).
            let ids: [UInt64] = (0..<(8 + round * 16)).map { index in
                index % 2 == 0 ? UInt64(index) : (UInt64(round + 1) << 32) | UInt64(index)
            }
            for _ in 0..<5_000 {
                let id = ids.randomElement(using: &generator)!
                switch Int.random(in: 0..<3, using: &generator) {
                case 0: XCTAssertEqual(ours.insert(id), reference.insert(id).inserted, "insert \(id)")
                case 1: XCTAssertEqual(ours.remove(id), reference.remove(id) != nil, "remove \(id)")
                default: XCTAssertEqual(ours.contains(id), reference.contains(id), "contains \(id)")
                }
                XCTAssertEqual(ours.count, reference.count)
            }
            for id in ids { XCTAssertEqual(ours.contains(id), reference.contains(id)) }
        }
    }

    func testGrowingKeepsEveryId() {
        var set = ConnectionSet()
        for id in UInt64(0)..<1_000 { XCTAssertTrue(set.insert(id * 7)) }
        for id in UInt64(0)..<1_000 { XCTAssertTrue(set.contains(id * 7)) }
        XCTAssertFalse(set.contains(3))
        for id in UInt64(0)..<1_000 where id % 2 == 0 { XCTAssertTrue(set.remove(id * 7)) }
        for id in UInt64(0)..<1_000 { XCTAssertEqual(set.contains(id * 7), id % 2 == 1) }
        XCTAssertEqual(set.count, 500)
    }

    func testTableAgreesWithDictionaryOnRandomOperations() {
        var generator = SystemRandomNumberGenerator()
        for round in 0..<20 {
            var ours = ConnectionTable<Int>()
            var reference: [UInt64: Int] = [:]
            let ids: [UInt64] = (0..<(8 + round * 16)).map { index in
                index % 2 == 0 ? UInt64(index) : (UInt64(round + 1) << 32) | UInt64(index)
            }
            for step in 0..<5_000 {
                let id = ids.randomElement(using: &generator)!
                switch Int.random(in: 0..<4, using: &generator) {
                case 0: XCTAssertEqual(ours.updateValue(step, forKey: id), reference.updateValue(step, forKey: id), "update \(id)")
                case 1: XCTAssertEqual(ours.removeValue(forKey: id), reference.removeValue(forKey: id), "remove \(id)")
                case 2:
                    ours[id] = step % 3 == 0 ? nil : step
                    reference[id] = step % 3 == 0 ? nil : step
                default: XCTAssertEqual(ours[id], reference[id], "lookup \(id)")
                }
                XCTAssertEqual(ours.count, reference.count)
            }
            for id in ids { XCTAssertEqual(ours[id], reference[id]) }
            XCTAssertEqual(ours.values.sorted(), reference.values.sorted())
        }
    }
}
