import Foundation
import NIOCore
import XCTest

@testable import Swoop

// MARK: - Fixtures

private struct ResizeImage: Codable, Equatable {
    var path: String
    var width: Int
    var height: Int
    var quality: Double
    var keepAspect: Bool
}

private struct Thumbnail: Codable, Equatable {
    var path: String
    var size: Int
}

private struct Scalars: Codable, Equatable {
    var int: Int, int8: Int8, int16: Int16, int32: Int32, int64: Int64
    var uint: UInt, uint8: UInt8, uint16: UInt16, uint32: UInt32, uint64: UInt64
    var bool: Bool, float: Float, double: Double, string: String

    static let minimum = Scalars(
        int: .min, int8: .min, int16: .min, int32: .min, int64: .min,
        uint: .min, uint8: .min, uint16: .min, uint32: .min, uint64: .min,
        bool: false, float: -.greatestFiniteMagnitude, double: -.greatestFiniteMagnitude, string: "")
    static let maximum = Scalars(
        int: .max, int8: .max, int16: .max, int32: .max, int64: .max,
        uint: .max, uint8: .max, uint16: .max, uint32: .max, uint64: .max,
        bool: true, float: .greatestFiniteMagnitude, double: .greatestFiniteMagnitude,
        string: "héllo wörld — 日本語 🚀")
    static let small = Scalars(
        int: -1, int8: -2, int16: 300, int32: -70_000, int64: 1 << 40,
        uint: 1, uint8: 127, uint16: 128, uint32: 16_384, uint64: 1 << 63,
        bool: true, float: 1.5, double: -0.1, string: "x")
}

private struct Foundationish: Codable, Equatable {
    var data: Data
    var bytes: [UInt8]
    var date: Date
    var url: URL
    var uuid: UUID
    var decimal: Decimal
}

private enum Shape: Codable, Equatable, Sendable {
    case circle(radius: Double)
    case rectangle(width: Double, height: Double)
    case polygon([Double], closed: Bool)
    case point
    indirect case group(Shape, Shape?)
}

private enum Color: String, Codable, CaseIterable {
    case red, green, blue
}

private enum Level: Int, Codable {
    case low = 1, high = 10
}

private enum Flavor: String, Codable, CodingKeyRepresentable, Hashable {
    case sweet, sour
}

private struct Optionals: Codable, Equatable {
    var plain: Int?
    var nested: Int??
    var triple: Int???
    var text: String?
    var list: [Int?]
    var nestedList: [Int??]
}

private struct Collections: Codable, Equatable {
    var ints: [Int]
    var strings: Set<String>
    var byName: [String: Int]
    var byNumber: [Int: String]
    var byUUID: [UUID: Int]
    var byFlavor: [Flavor: Int]
    var colors: [Color]
    var levels: [Level]
    var matrix: [[Double]]
    var nested: [String: [String: [Int]]]
}

private class Animal: Codable, Equatable {
    var name: String
    var legs: Int

    init(name: String, legs: Int) {
        self.name = name
        self.legs = legs
    }

    static func == (lhs: Animal, rhs: Animal) -> Bool {
        type(of: lhs) == type(of: rhs) && lhs.isEqual(to: rhs)
    }

    func isEqual(to other: Animal) -> Bool { name == other.name && legs == other.legs }
}

/// Stores its superclass under "super", the way the Codable documentation recommends.
private final class Dog: Animal {
    var breed: String

    init(name: String, breed: String) {
        self.breed = breed
        super.init(name: name, legs: 4)
    }

    private enum CodingKeys: String, CodingKey { case breed }

    required init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        breed = try container.decode(String.self, forKey: .breed)
        try super.init(from: container.superDecoder())
    }

    override func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        // Taking the super encoder before writing our own key interleaves the two.
        let superEncoder = container.superEncoder()
        try container.encode(breed, forKey: .breed)
        try super.encode(to: superEncoder)
    }

    override func isEqual(to other: Animal) -> Bool {
        guard let other = other as? Dog else { return false }
        return breed == other.breed && super.isEqual(to: other)
    }
}

/// Shares its encoder with the superclass, so both write into one keyed container.
private final class Bird: Animal {
    var canFly: Bool

    init(name: String, canFly: Bool) {
        self.canFly = canFly
        super.init(name: name, legs: 2)
    }

    private enum CodingKeys: String, CodingKey { case canFly }

    required init(from decoder: any Decoder) throws {
        canFly = try decoder.container(keyedBy: CodingKeys.self).decode(Bool.self, forKey: .canFly)
        try super.init(from: decoder)
    }

    override func encode(to encoder: any Encoder) throws {
        try super.encode(to: encoder)
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(canFly, forKey: .canFly)
    }

    override func isEqual(to other: Animal) -> Bool {
        guard let other = other as? Bird else { return false }
        return canFly == other.canFly && super.isEqual(to: other)
    }
}

/// Fills nested containers interleaved with its own, which a streaming encoder must survive.
private struct Interleaved: Codable, Equatable {
    var title: String
    var street: String
    var city: String
    var tags: [String]
    var notes: String

    private enum CodingKeys: String, CodingKey { case title, address, tags, notes }
    private enum AddressKeys: String, CodingKey { case street, city }

    init(title: String, street: String, city: String, tags: [String], notes: String) {
        (self.title, self.street, self.city, self.tags, self.notes) = (title, street, city, tags, notes)
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        var address = container.nestedContainer(keyedBy: AddressKeys.self, forKey: .address)
        var tagList = container.nestedUnkeyedContainer(forKey: .tags)
        try container.encode(title, forKey: .title)
        try address.encode(street, forKey: .street)
        try tagList.encode(tags[0])
        try container.encode(notes, forKey: .notes)
        for tag in tags.dropFirst() { try tagList.encode(tag) }
        try address.encode(city, forKey: .city)
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        notes = try container.decode(String.self, forKey: .notes)
        let address = try container.nestedContainer(keyedBy: AddressKeys.self, forKey: .address)
        city = try address.decode(String.self, forKey: .city)
        street = try address.decode(String.self, forKey: .street)
        var tagList = try container.nestedUnkeyedContainer(forKey: .tags)
        var tags: [String] = []
        while !tagList.isAtEnd { tags.append(try tagList.decode(String.self)) }
        self.tags = tags
        title = try container.decode(String.self, forKey: .title)
    }
}

/// Explicit `encodeNil` in every container kind.
private struct ExplicitNils: Codable, Equatable {
    var keyedWasNil = true
    var unkeyed: [Int?] = [nil, 1, nil]
    var single: Int? = nil

    private enum CodingKeys: String, CodingKey { case keyed, unkeyed, single }

    init() {}

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encodeNil(forKey: .keyed)
        var list = container.nestedUnkeyedContainer(forKey: .unkeyed)
        for value in unkeyed {
            if let value { try list.encode(value) } else { try list.encodeNil() }
        }
        try container.encode(single, forKey: .single)
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        keyedWasNil = try container.decodeNil(forKey: .keyed)
        var list = try container.nestedUnkeyedContainer(forKey: .unkeyed)
        var values: [Int?] = []
        while !list.isAtEnd {
            if try list.decodeNil() { values.append(nil) } else { values.append(try list.decode(Int.self)) }
        }
        unkeyed = values
        single = try container.decode(Int?.self, forKey: .single)
    }
}

private struct Wide: Codable, Equatable {
    var signed: [Int128]
    var unsigned: [UInt128]
}

private struct Empty: Codable, Equatable {}

/// Two integers stored as a two-element array.
private struct Pair: Codable, Equatable {
    var first: Int
    var second: Int

    init(from decoder: any Decoder) throws {
        var container = try decoder.unkeyedContainer()
        first = try container.decode(Int.self)
        second = try container.decode(Int.self)
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.unkeyedContainer()
        try container.encode(first)
        try container.encode(second)
    }
}

private struct Blob: Codable, Equatable {
    var name: String
    var payload: Data
}

/// The "old" and "new" shape of one payload, as two builds of a program would see it.
private struct RecordV1: Codable, Equatable {
    var id: Int
    var name: String
    var legacy: String
    var score: Double
}

private struct RecordV2: Codable, Equatable {
    // Declared in another order, `legacy` dropped, `comment` added.
    var score: Double
    var comment: String?
    var name: String
    var id: Int
}

private struct RecordV3: Codable {
    var id: Int
    var required: String
}

private struct StringlyRecord: Codable {
    var id: String
}

private struct SmallRecord: Codable {
    var id: UInt8
}

private struct Job: Codable, Equatable {
    var id: Int
    var name: String
    var shape: Shape
    var color: Color
    var when: Date
}

/// A tree that nests as deeply as its data says, to probe the decoder's depth limit.
private indirect enum Chain: Codable, Equatable {
    case end
    case link(Chain)

    static func depth(_ depth: Int) -> Chain {
        var chain = Chain.end
        for _ in 0..<depth { chain = .link(chain) }
        return chain
    }
}

/// Misuses the encoder: a second value through one single value container.
private struct DoubleSingle: Encodable {
    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(1)
        try container.encode(2)
    }
}

/// Misuses the encoder: a keyed container after a single value.
private struct MixedContainers: Encodable {
    private enum CodingKeys: String, CodingKey { case a }

    func encode(to encoder: any Encoder) throws {
        var single = encoder.singleValueContainer()
        try single.encode(1)
        var keyed = encoder.container(keyedBy: CodingKeys.self)
        try keyed.encode(2, forKey: .a)
    }
}


/// Twenty fields, so that lookups go through the hashed index rather than a scan.
private struct Wide20: Codable, Equatable {
    var f00 = 0, f01 = 1, f02 = 2, f03 = 3, f04 = 4, f05 = 5, f06 = 6, f07 = 7, f08 = 8, f09 = 9
    var f10 = "10", f11 = "11", f12 = "12", f13 = "13", f14 = "14", f15 = "15", f16 = "16", f17 = "17"
    var f18: Double = 18, f19: Bool = true
}

/// The same fields declared backwards, with one extra optional field.
private struct Wide20Reversed: Codable, Equatable {
    var extra: String?
    var f19: Bool = false, f18: Double = 0
    var f17 = "", f16 = "", f15 = "", f14 = "", f13 = "", f12 = "", f11 = "", f10 = ""
    var f09 = 0, f08 = 0, f07 = 0, f06 = 0, f05 = 0, f04 = 0, f03 = 0, f02 = 0, f01 = 0, f00 = 0
}

/// Keys with integer raw values are still matched by name, so renumbering is harmless.
private struct Numbered: Codable, Equatable {
    var alpha: Int
    var beta: String
    private enum CodingKeys: Int, CodingKey { case alpha = 1, beta = 2 }
}

private struct Renumbered: Codable, Equatable {
    var beta: String
    var alpha: Int
    private enum CodingKeys: Int, CodingKey { case beta = 7, alpha = 9 }
}

/// Encodes an inner payload from inside its own `encode(to:)`.
private struct Envelope: Codable, Equatable {
    var inner: Thumbnail

    private enum CodingKeys: String, CodingKey { case payload }

    init(inner: Thumbnail) { self.inner = inner }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        let payload = try BinaryEncoder().encode(inner)
        try container.encode(Data(payload.readableBytesView), forKey: .payload)
    }

    init(from decoder: any Decoder) throws {
        let data = try decoder.container(keyedBy: CodingKeys.self).decode(Data.self, forKey: .payload)
        inner = try BinaryDecoder().decode(Thumbnail.self, from: ByteBuffer(bytes: data))
    }
}

/// Keeps its container after `encode(to:)` returns, which no sane type does.
private final class ContainerStash {
    var container: KeyedEncodingContainer<BinaryNamedKey>?
}

private struct Hoarder: Encodable {
    let stash: ContainerStash

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: BinaryNamedKey.self)
        try container.encode(1, forKey: BinaryNamedKey("a"))
        stash.container = container
    }
}

private struct Everything: Codable, Equatable, Sendable {
    var scalars: Scalars
    var foundation: Foundationish
    var shapes: [Shape]
    var optionals: Optionals
    var collections: Collections
    var interleaved: Interleaved
    var nils: ExplicitNils
    var empty: Empty
}

private let everything = Everything(
    scalars: .small,
    foundation: Foundationish(
        data: Data([1, 2, 3, 255]), bytes: [9, 8, 7], date: Date(timeIntervalSinceReferenceDate: 12_345.678),
        url: URL(string: "https://example.com/a?b=c")!, uuid: UUID(uuidString: "E621E1F8-C36C-495A-93FC-0C247A3E6E5F")!,
        decimal: Decimal(string: "12345.6789")!),
    shapes: [.circle(radius: 1), .rectangle(width: 2, height: 3), .polygon([1, 2, 3], closed: true), .point,
             .group(.point, nil), .group(.circle(radius: 4), .group(.point, .point))],
    optionals: Optionals(plain: 1, nested: .some(nil), triple: .some(.some(nil)), text: nil,
                         list: [1, nil, 3], nestedList: [nil, .some(nil), .some(.some(2))]),
    collections: Collections(
        ints: [0, -1, 1, .max, .min], strings: ["a", "b", ""], byName: ["one": 1, "two": 2, "05": 5, "-0": 0, "7": 7],
        byNumber: [1: "one", -2: "minus two", .max: "max"], byUUID: [UUID(): 1, UUID(): 2],
        byFlavor: [.sweet: 1, .sour: 2], colors: Color.allCases, levels: [.low, .high],
        matrix: [[1, 2], [], [3]], nested: ["x": ["y": [1, 2]], "z": [:]]),
    interleaved: Interleaved(title: "t", street: "Main St", city: "Springfield", tags: ["a", "b", "c"], notes: "n"),
    nils: ExplicitNils(),
    empty: Empty())

// MARK: - Helpers

private func roundTrip<T: Codable>(_ value: T) throws -> T {
    let buffer = try BinaryEncoder().encode(value)
    return try BinaryDecoder().decode(T.self, from: buffer)
}

private func assertRoundTrip<T: Codable & Equatable>(_ value: T, file: StaticString = #filePath, line: UInt = #line) {
    do {
        let decoded = try roundTrip(value)
        XCTAssertEqual(decoded, value, file: file, line: line)
    } catch {
        XCTFail("\(T.self) failed to round trip: \(error)", file: file, line: line)
    }
}

private func assertThrows<T>(
    _ expected: BinaryCodingError, file: StaticString = #filePath, line: UInt = #line, _ body: () throws -> T
) {
    do {
        _ = try body()
        XCTFail("expected \(expected)", file: file, line: line)
    } catch let error as BinaryCodingError {
        XCTAssertEqual(error, expected, file: file, line: line)
    } catch {
        XCTFail("expected \(expected), got \(error)", file: file, line: line)
    }
}

/// A thread-safe counter for the concurrency test.
private final class LockedCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    var value: Int { lock.withLock { count } }
    func increment() { lock.withLock { count += 1 } }
}

/// A reproducible random source, so a failing fuzz case can be replayed.
private struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

private func bytes(of buffer: ByteBuffer) -> [UInt8] {
    buffer.getBytes(at: buffer.readerIndex, length: buffer.readableBytes) ?? []
}

// MARK: - Tests

final class BinaryCoderTests: XCTestCase {
    func testScalarsRoundTripAtTheirLimits() {
        assertRoundTrip(Scalars.minimum)
        assertRoundTrip(Scalars.maximum)
        assertRoundTrip(Scalars.small)
    }

    func testTopLevelValuesOfEveryNativeType() {
        assertRoundTrip(0)
        assertRoundTrip(Int.min)
        assertRoundTrip(UInt64.max)
        assertRoundTrip(Int8.min)
        assertRoundTrip(true)
        assertRoundTrip("")
        assertRoundTrip(String(repeating: "ü", count: 10_000))
        assertRoundTrip(Data())
        assertRoundTrip([UInt8]())
        assertRoundTrip([UInt8](0...255))
        assertRoundTrip(Date(timeIntervalSince1970: -1_000_000.25))
        assertRoundTrip(URL(fileURLWithPath: "/tmp/some file.txt"))
        assertRoundTrip(UUID())
        assertRoundTrip(Decimal(string: "-3.14159265358979323846")!)
        assertRoundTrip(Optional<Int>.none)
        assertRoundTrip(Optional(5))
        assertRoundTrip([1, 2, 3])
        assertRoundTrip(Empty())
    }

    func testFloatingPointIsBitExact() throws {
        let doubles: [Double] = [
            0, -0.0, .infinity, -.infinity, .nan, -.nan, .signalingNaN, Double(bitPattern: 0x7FF8_0000_0000_1234),
            .leastNonzeroMagnitude, .leastNormalMagnitude, .pi, -1e300,
        ]
        let floats: [Float] = [0, -0.0, .infinity, -.infinity, .nan, Float(bitPattern: 0x7FC0_1234), .leastNonzeroMagnitude, .pi]
        let decodedDoubles = try roundTrip(doubles)
        XCTAssertEqual(decodedDoubles.map(\.bitPattern), doubles.map(\.bitPattern))
        let decodedFloats = try roundTrip(floats)
        XCTAssertEqual(decodedFloats.map(\.bitPattern), floats.map(\.bitPattern))
        // Top level and keyed paths too, not only unkeyed.
        XCTAssertEqual(try roundTrip(Double(bitPattern: 0xFFF0_0000_0000_0001)).bitPattern, 0xFFF0_0000_0000_0001)
        XCTAssertEqual(try roundTrip(["x": -0.0])["x"]?.sign, .minus)
    }

    func testFoundationTypes() {
        assertRoundTrip(everything.foundation)
        assertRoundTrip([Date(timeIntervalSinceReferenceDate: 0), .distantFuture, .distantPast])
    }

    func testEnums() {
        assertRoundTrip(everything.shapes)
        assertRoundTrip(Color.green)
        assertRoundTrip([Level.high, .low])
        assertRoundTrip(Shape.group(.group(.point, nil), .polygon([], closed: false)))
    }

    func testOptionalsKeepNilAndPresentApartAtEveryDepth() throws {
        let cases: [Optionals] = [
            Optionals(plain: nil, nested: nil, triple: nil, text: nil, list: [], nestedList: []),
            Optionals(plain: 0, nested: .some(nil), triple: .some(nil), text: "", list: [nil], nestedList: [.some(nil)]),
            Optionals(plain: 1, nested: .some(.some(2)), triple: .some(.some(nil)), text: "t", list: [1, nil],
                      nestedList: [nil, .some(.some(3))]),
            Optionals(plain: nil, nested: nil, triple: .some(.some(.some(4))), text: nil, list: [nil, nil],
                      nestedList: [.some(nil), nil]),
        ]
        for value in cases { assertRoundTrip(value) }
        // Top level and array elements, where JSON would collapse `.some(nil)` to nil.
        let some: Int?? = .some(nil)
        XCTAssertEqual(try roundTrip(some), some)
        XCTAssertEqual(try roundTrip(Int??.none), Int??.none)
        XCTAssertEqual(try roundTrip([Int??.some(nil), nil, 5]), [Int??.some(nil), nil, 5])
        assertRoundTrip(["a": 1, "b": nil] as [String: Int?])
        assertRoundTrip(ExplicitNils())
    }

    func testCollections() {
        assertRoundTrip(everything.collections)
        assertRoundTrip([String: Int]())
        assertRoundTrip([[String: [Int?]]](repeating: ["k": [1, nil]], count: 3))
        assertRoundTrip(Dictionary(uniqueKeysWithValues: (0..<1_000).map { ("key\($0)", $0) }))
        assertRoundTrip(Dictionary(uniqueKeysWithValues: (-500..<500).map { ($0 * 7_919, "v\($0)") }))
    }

    func testClassHierarchiesBothWays() throws {
        let animals: [Animal] = [Animal(name: "generic", legs: 6)]
        XCTAssertEqual(try roundTrip(animals), animals)
        let dog = Dog(name: "Rex", breed: "collie")
        XCTAssertEqual(try roundTrip(dog), dog)
        let bird = Bird(name: "Tweety", canFly: true)
        XCTAssertEqual(try roundTrip(bird), bird)
        XCTAssertEqual(try roundTrip([dog, dog]), [dog, dog])
    }

    func testInterleavedNestedContainers() {
        assertRoundTrip(everything.interleaved)
        // Large enough that the frames and the container around them need multi-byte lengths.
        let big = String(repeating: "x", count: 20_000)
        assertRoundTrip(Interleaved(title: big, street: big, city: "c", tags: [big, "b", big], notes: big))
        assertRoundTrip([everything.interleaved, everything.interleaved])
    }

    func testContainersOfEverySize() {
        // Lengths around the one-, two- and three-byte varint boundaries of container sizes.
        for count in [0, 1, 60, 63, 64, 65, 127, 128, 8_190, 8_191, 8_192, 8_200, 100_000] {
            assertRoundTrip([UInt8](repeating: 7, count: count).map(Int.self.init))
            assertRoundTrip(Blob(name: String(repeating: "n", count: count), payload: Data(count: count)))
        }
    }

    func testEverythingAtOnceAndWithEmbeddedName() throws {
        assertRoundTrip(everything)
        var encoder = BinaryEncoder()
        encoder.embedsTypeName = true
        let buffer = try encoder.encode(everything)
        XCTAssertEqual(try BinaryDecoder().decode(Everything.self, from: buffer), everything)
    }

    func testWideIntegers() {
        assertRoundTrip(Wide(signed: [0, -1, .min, .max, Int128(Int64.min) - 1, Int128(Int64.max) + 1],
                             unsigned: [0, .max, UInt128(UInt64.max) + 1]))
    }

    func testFieldsAreFoundByKeyNotPosition() throws {
        let old = RecordV1(id: 7, name: "seven", legacy: "gone", score: 0.5)
        var decoder = BinaryDecoder()
        decoder.checksTypeFingerprint = false
        let new = try decoder.decode(RecordV2.self, from: BinaryEncoder().encode(old))
        XCTAssertEqual(new, RecordV2(score: 0.5, comment: nil, name: "seven", id: 7))
        // And back: the old type finds the fields it knows; `legacy` is missing and required.
        let back = RecordV2(score: 1, comment: "c", name: "n", id: 1)
        assertThrows(.keyNotFound(key: "legacy", path: "(root)")) {
            try decoder.decode(RecordV1.self, from: BinaryEncoder().encode(back))
        }
    }

    func testMissingRequiredKeyNamesTheKeyAndPath() throws {
        struct Outer: Codable { var inner: [RecordV1] }
        struct OuterV3: Codable { var inner: [RecordV3] }
        var decoder = BinaryDecoder()
        decoder.checksTypeFingerprint = false
        let payload = try BinaryEncoder().encode(Outer(inner: [RecordV1(id: 1, name: "a", legacy: "", score: 0)]))
        do {
            _ = try decoder.decode(OuterV3.self, from: payload)
            XCTFail("decoded a record without its required key")
        } catch let error as BinaryCodingError {
            XCTAssertEqual(error, .keyNotFound(key: "required", path: "inner[0]"))
            XCTAssertTrue(error.description.contains("\"required\""), error.description)
        }
    }

    func testTypeMismatchNamesBothTypes() throws {
        let payload = try BinaryEncoder().encode(ResizeImage(path: "a.png", width: 1, height: 2, quality: 0.9, keepAspect: true))
        // Private types print as `(private)` in place of their per-process context address.
        assertThrows(.typeMismatch(expected: "SwoopTests.(private).Thumbnail", found: "SwoopTests.(private).ResizeImage")) {
            try BinaryDecoder().decode(Thumbnail.self, from: payload)
        }
        var named = BinaryEncoder()
        named.embedsTypeName = true
        assertThrows(.typeMismatch(expected: "Swift.Int", found: "Swift.String")) {
            try BinaryDecoder().decode(Int.self, from: named.encode("text"))
        }
        // A fingerprint this process never met is reported as such.
        var unknown = try BinaryEncoder().encode(1)
        unknown.setInteger(UInt32(0xDEAD_BEEF), at: unknown.readerIndex + 2, endianness: .little)
        do {
            _ = try BinaryDecoder().decode(Int.self, from: unknown)
            XCTFail("accepted a foreign fingerprint")
        } catch let BinaryCodingError.typeMismatch(expected, found) {
            XCTAssertEqual(expected, "Swift.Int")
            XCTAssertTrue(found.contains("deadbeef"), found)
        }
        let message = BinaryCodingError.typeMismatch(expected: "A", found: "B").description
        XCTAssertTrue(message.contains("A") && message.contains("B"), message)
    }

    func testPrivateTypeNamesAreStableAcrossProcesses() {
        XCTAssertEqual(
            BinaryTypeRegistry.normalize("Mod.(unknown context at $55d0c3a1b2c4).Foo<Mod.(unknown context at $1).Bar>"),
            "Mod.(private).Foo<Mod.(private).Bar>")
        XCTAssertEqual(BinaryTypeRegistry.normalize("Swift.Int"), "Swift.Int")
        XCTAssertFalse(BinaryTypeRegistry.stableName(of: Thumbnail.self).contains("$"))
        // FNV-1a reference values.
        XCTAssertEqual(BinaryTypeRegistry.fnv1a(""), 0x811C_9DC5)
        XCTAssertEqual(BinaryTypeRegistry.fnv1a("a"), 0xE40C_292C)
    }

    func testValueMismatchesAndRangesAreReportedWithPaths() throws {
        var decoder = BinaryDecoder()
        decoder.checksTypeFingerprint = false
        assertThrows(.valueMismatch(path: "id", expected: "String", found: "a signed integer")) {
            try decoder.decode(StringlyRecord.self, from: BinaryEncoder().encode(RecordV3(id: 1, required: "")))
        }
        assertThrows(.valueOutOfRange(path: "id", value: "300", type: "UInt8")) {
            try decoder.decode(SmallRecord.self, from: BinaryEncoder().encode(RecordV3(id: 300, required: "")))
        }
        assertThrows(.valueOutOfRange(path: "[1]", value: "-1", type: "UInt")) {
            try decoder.decode([UInt].self, from: BinaryEncoder().encode([1, -1]))
        }
        assertThrows(.valueMismatch(path: "(root)", expected: "Int", found: "nil")) {
            try decoder.decode(Int.self, from: BinaryEncoder().encode(Int?.none))
        }
        assertThrows(.valueNotFound(path: "[1]", expected: "Int")) {
            try decoder.decode(Pair.self, from: BinaryEncoder().encode([1]))
        }
        // Widening conversions that lose nothing are allowed.
        XCTAssertEqual(try decoder.decode(Double.self, from: BinaryEncoder().encode(Float(1.5))), 1.5)
        XCTAssertEqual(try decoder.decode(Int8.self, from: BinaryEncoder().encode(UInt64(5))), 5)
        XCTAssertEqual(try decoder.decode(UInt.self, from: BinaryEncoder().encode(Int64(5))), 5)
    }

    func testEncoderMisuseIsAnErrorNotACorruptPayload() {
        XCTAssertThrowsError(try BinaryEncoder().encode(DoubleSingle())) { error in
            guard case BinaryCodingError.invalidEncoding = error else { return XCTFail("\(error)") }
        }
        XCTAssertThrowsError(try BinaryEncoder().encode(MixedContainers()))
    }

    func testEncodeIntoAppendsAndLeavesTheBufferAloneOnError() throws {
        var buffer = ByteBuffer(string: "prefix")
        buffer.moveReaderIndex(forwardBy: 2)
        try BinaryEncoder().encode(Thumbnail(path: "p", size: 3), into: &buffer)
        XCTAssertEqual(buffer.readString(length: 4), "efix")
        XCTAssertEqual(try BinaryDecoder().decode(Thumbnail.self, from: buffer), Thumbnail(path: "p", size: 3))

        var untouched = ByteBuffer(string: "keep")
        XCTAssertThrowsError(try BinaryEncoder().encode(DoubleSingle(), into: &untouched))
        XCTAssertEqual(String(buffer: untouched), "keep")
    }

    func testUserInfoReachesTheTypes() throws {
        struct Probe: Codable {
            static let key = CodingUserInfoKey(rawValue: "probe")!
            var seen: String
            init(seen: String) { self.seen = seen }
            init(from decoder: any Decoder) throws { seen = decoder.userInfo[Self.key] as? String ?? "none" }
            func encode(to encoder: any Encoder) throws {
                var container = encoder.singleValueContainer()
                try container.encode(encoder.userInfo[Self.key] as? String ?? "none")
            }
        }
        var encoder = BinaryEncoder()
        encoder.userInfo[Probe.key] = "enc"
        var decoder = BinaryDecoder()
        decoder.userInfo[Probe.key] = "dec"
        let payload = try encoder.encode(Probe(seen: ""))
        var lenient = BinaryDecoder()
        lenient.checksTypeFingerprint = false
        XCTAssertEqual(try lenient.decode(String.self, from: payload), "enc")
        XCTAssertEqual(try decoder.decode(Probe.self, from: payload).seen, "dec")
    }


    func testLargeContainersAreSearchedByKeyInAnyOrder() throws {
        var decoder = BinaryDecoder()
        decoder.checksTypeFingerprint = false
        let decoded = try decoder.decode(Wide20Reversed.self, from: BinaryEncoder().encode(Wide20()))
        XCTAssertNil(decoded.extra)
        XCTAssertEqual(decoded.f00, 0)
        XCTAssertEqual(decoded.f09, 9)
        XCTAssertEqual(decoded.f17, "17")
        XCTAssertEqual(decoded.f18, 18)
        XCTAssertTrue(decoded.f19)
        XCTAssertEqual(try decoder.decode(Wide20.self, from: BinaryEncoder().encode(decoded)), Wide20())
    }

    func testIntegerCodingKeysAreMatchedByName() throws {
        var decoder = BinaryDecoder()
        decoder.checksTypeFingerprint = false
        assertRoundTrip(Numbered(alpha: 1, beta: "b"))
        let renumbered = try decoder.decode(Renumbered.self, from: BinaryEncoder().encode(Numbered(alpha: 3, beta: "x")))
        XCTAssertEqual(renumbered, Renumbered(beta: "x", alpha: 3))
    }

    func testMissingSuperclassIsReportedByKey() throws {
        struct NoSuper: Codable { var breed: String }
        var decoder = BinaryDecoder()
        decoder.checksTypeFingerprint = false
        assertThrows(.keyNotFound(key: "super", path: "(root)")) {
            try decoder.decode(Dog.self, from: BinaryEncoder().encode(NoSuper(breed: "b")))
        }
    }

    func testEncodingInsideEncodeAndFromManyThreads() throws {
        assertRoundTrip(Envelope(inner: Thumbnail(path: "inner", size: 1)))
        assertRoundTrip([Envelope(inner: Thumbnail(path: "a", size: 1)), Envelope(inner: Thumbnail(path: "b", size: 2))])
        let failures = LockedCounter()
        DispatchQueue.concurrentPerform(iterations: 8) { thread in
            for round in 0..<200 {
                let value = Thumbnail(path: "thread \(thread) round \(round)", size: thread * 1_000 + round)
                do {
                    let decoded = try BinaryDecoder().decode(Thumbnail.self, from: BinaryEncoder().encode(value))
                    if decoded != value { failures.increment() }
                    if try roundTrip(everything) != everything { failures.increment() }
                } catch {
                    failures.increment()
                }
            }
        }
        XCTAssertEqual(failures.value, 0)
    }

    func testAnEncoderKeptPastItsValueCannotTouchTheHandedOutPayload() throws {
        let stash = ContainerStash()
        let first = try BinaryEncoder().encode(Hoarder(stash: stash))
        let before = bytes(of: first)
        for index in 0..<1_000 {
            try stash.container?.encode(String(repeating: "z", count: 100), forKey: BinaryNamedKey("k\(index)"))
        }
        XCTAssertEqual(bytes(of: first), before)
        // The thread's reusable state was not recycled while the stale encoder holds it.
        XCTAssertEqual(try roundTrip(Thumbnail(path: "after", size: 2)), Thumbnail(path: "after", size: 2))
    }

    // MARK: Wire format

    func testWireFormatOfSmallValues() throws {
        func body<T: Encodable>(_ value: T) throws -> [UInt8] {
            Array(bytes(of: try BinaryEncoder().encode(value)).dropFirst(6))
        }
        // Zigzag varints: -1 → 1, 1 → 2, 300 unsigned → AC 02; then an empty key table.
        XCTAssertEqual(try body(-1), [BinaryTag.signed, 0x01, 0x00])
        XCTAssertEqual(try body(1), [BinaryTag.signed, 0x02, 0x00])
        XCTAssertEqual(try body(UInt(300)), [BinaryTag.unsigned, 0xAC, 0x02, 0x00])
        XCTAssertEqual(try body(Int64.min), [BinaryTag.signed] + [UInt8](repeating: 0xFF, count: 9) + [0x01, 0x00])
        XCTAssertEqual(try body("é"), [BinaryTag.string, 0x02, 0xC3, 0xA9, 0x00])
        XCTAssertEqual(try body(Data([1, 2])), [BinaryTag.bytes, 0x02, 0x01, 0x02, 0x00])
        XCTAssertEqual(try body(Int??.some(nil)), [BinaryTag.some, BinaryTag.null, 0x00])
        // A struct: keyed container of (key reference, value) entries, then the key table.
        XCTAssertEqual(
            try body(Thumbnail(path: "a", size: 2)),
            [BinaryTag.keyed, 0x07, 0x00, BinaryTag.string, 0x01, 0x61, 0x02, BinaryTag.signed, 0x04,
             0x02, 0x04] + Array("path".utf8) + [0x04] + Array("size".utf8))
        // Integer dictionary keys are inline and need no table entry.
        XCTAssertEqual(try body([3: true]), [BinaryTag.keyed, 0x02, 0x0D, BinaryTag.true, 0x00])

        let header = bytes(of: try BinaryEncoder().encode(1)).prefix(6)
        let fingerprint = BinaryTypeRegistry.fnv1a("Swift.Int")
        XCTAssertEqual(Array(header), [0xCB, 0x10] + withUnsafeBytes(of: fingerprint.littleEndian, Array.init))
    }

    func testKeyNamesAreWrittenOncePerPayload() throws {
        let jobs = (0..<1_000).map { ResizeImage(path: "/img/\($0).png", width: $0, height: $0 * 2, quality: 0.5, keepAspect: true) }
        let binary = try BinaryEncoder().encode(jobs).readableBytes
        let json = try JSONEncoder().encode(jobs).count
        let keyNameBytes = ["path", "width", "height", "quality", "keepAspect"].map(\.utf8.count).reduce(0, +)
        // Each element pays one byte per key reference, never the names themselves.
        XCTAssertLessThan(binary, jobs.count * (keyNameBytes + 5 + 9 + 16))
        XCTAssertLessThan(binary * 2, json, "binary \(binary) bytes, JSON \(json) bytes")
        print("1,000 ResizeImage values: binary \(binary) bytes, JSON \(json) bytes")
    }

    // MARK: Robustness

    func testDepthIsLimitedOnDecode() throws {
        assertRoundTrip(Chain.depth(200))
        let deep = try BinaryEncoder().encode(Chain.depth(300))
        XCTAssertThrowsError(try BinaryDecoder().decode(Chain.self, from: deep)) { error in
            guard case BinaryCodingError.nestingTooDeep(_, let limit) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(limit, 256)
        }
        var deeper = BinaryDecoder()
        deeper.maximumDepth = 400
        XCTAssertEqual(try deeper.decode(Chain.self, from: deep), Chain.depth(300))
    }

    func testMalformedHeadersAndTrailingBytes() throws {
        assertThrows(.unsupportedFormat(reason: "the payload is empty")) { try BinaryDecoder().decode(Int.self, from: ByteBuffer()) }
        XCTAssertThrowsError(try BinaryDecoder().decode(Int.self, from: ByteBuffer(string: "{\"a\":1}")))
        var payload = try BinaryEncoder().encode(5)
        payload.writeInteger(UInt8(0))
        XCTAssertThrowsError(try BinaryDecoder().decode(Int.self, from: payload)) { error in
            guard case BinaryCodingError.corrupted = error else { return XCTFail("\(error)") }
        }
        var wrongVersion = try BinaryEncoder().encode(5)
        wrongVersion.setInteger(UInt8(0x20), at: 1)
        XCTAssertThrowsError(try BinaryDecoder().decode(Int.self, from: wrongVersion))
    }

    func testTruncationsOfValidPayloadsThrow() throws {
        let payloads: [(ByteBuffer, (ByteBuffer) throws -> Void)] = [
            (try BinaryEncoder().encode(everything), { _ = try BinaryDecoder().decode(Everything.self, from: $0) }),
            (try BinaryEncoder().encode(Blob(name: "n", payload: Data(count: 300))), { _ = try BinaryDecoder().decode(Blob.self, from: $0) }),
            (try BinaryEncoder().encode(Dog(name: "d", breed: "b")), { _ = try BinaryDecoder().decode(Dog.self, from: $0) }),
        ]
        for (payload, decode) in payloads {
            for length in 0..<payload.readableBytes {
                let truncated = payload.getSlice(at: payload.readerIndex, length: length)!
                XCTAssertThrowsError(try decode(truncated), "a payload cut to \(length) bytes decoded")
            }
            XCTAssertNoThrow(try decode(payload))
        }
    }

    /// Set SWOOP_FUZZ_SCALE (a multiplier) and SWOOP_FUZZ_SEED to fuzz longer or differently.
    func testRandomBytesAndMutationsNeverTrap() throws {
        let environment = ProcessInfo.processInfo.environment
        let scale = environment["SWOOP_FUZZ_SCALE"].flatMap(Int.init) ?? 1
        var random = SplitMix64(state: environment["SWOOP_FUZZ_SEED"].flatMap(UInt64.init) ?? 0x5EED)
        var lenient = BinaryDecoder()
        lenient.checksTypeFingerprint = false
        func attempt(_ buffer: ByteBuffer) {
            _ = try? lenient.decode(Everything.self, from: buffer)
            _ = try? lenient.decode(Chain.self, from: buffer)
            _ = try? lenient.decode([String: [Int?]].self, from: buffer)
            _ = try? lenient.decode(Dog.self, from: buffer)
            _ = try? lenient.decode(Data.self, from: buffer)
            _ = try? BinaryDecoder().decode(Everything.self, from: buffer)
        }
        // Pure noise, with and without a valid header in front so the body parser is reached.
        let header = bytes(of: try BinaryEncoder().encode(0)).prefix(6)
        for round in 0..<4_000 * scale {
            let length = Int.random(in: 0...96, using: &random)
            var noise = (0..<length).map { _ in UInt8.random(in: 0...255, using: &random) }
            if round % 2 == 0 { noise = Array(header) + noise }
            if round % 4 == 0, noise.count > 6 {
                // Bias towards plausible tags so containers and strings get explored.
                for index in 6..<noise.count where Bool.random(using: &random) { noise[index] &= 0x0F }
            }
            attempt(ByteBuffer(bytes: noise))
        }
        // Mutations of real payloads: flipped bits, overwritten bytes, spliced duplicates.
        let seeds = [
            bytes(of: try BinaryEncoder().encode(everything)),
            bytes(of: try BinaryEncoder().encode(Chain.depth(30))),
            bytes(of: try BinaryEncoder().encode(["a": [1, nil, 3], "b": []] as [String: [Int?]])),
            bytes(of: try BinaryEncoder().encode(Dog(name: "d", breed: "b"))),
        ]
        for _ in 0..<3_000 * scale {
            var mutated = seeds[Int.random(in: 0..<seeds.count, using: &random)]
            for _ in 0..<Int.random(in: 1...4, using: &random) {
                let index = Int.random(in: 0..<mutated.count, using: &random)
                switch Int.random(in: 0..<4, using: &random) {
                case 0: mutated[index] ^= 1 << UInt8.random(in: 0...7, using: &random)
                case 1: mutated[index] = UInt8.random(in: 0...255, using: &random)
                case 2: mutated.insert(contentsOf: mutated[index...].prefix(8), at: index)
                default: mutated.remove(at: index)
                }
                if mutated.isEmpty { break }
            }
            attempt(ByteBuffer(bytes: mutated))
        }
    }

    // MARK: Performance

    /// Not a pass/fail test: prints how BinaryEncoder+BinaryDecoder compare with Foundation's
    /// JSON coders. Meaningful numbers need a release build:
    /// `swift test -c release -Xswiftc -enable-testing --filter BinaryCoderTests/testSpeedComparedWithJSON`.
    func testSpeedComparedWithJSON() throws {
        func seconds(_ body: () throws -> Void) rethrows -> Double {
            let start = DispatchTime.now().uptimeNanoseconds
            try body()
            return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        }
        let small = ResizeImage(path: "/images/cat.png", width: 1_920, height: 1_080, quality: 0.85, keepAspect: true)
        let rounds = 100_000
        let binaryEncoder = BinaryEncoder(), binaryDecoder = BinaryDecoder()
        let jsonEncoder = JSONEncoder(), jsonDecoder = JSONDecoder()
        var check = 0

        let binarySmall = try seconds {
            for _ in 0..<rounds {
                check &+= try binaryDecoder.decode(ResizeImage.self, from: binaryEncoder.encode(small)).width
            }
        }
        let jsonSmall = try seconds {
            for _ in 0..<rounds {
                check &+= try jsonDecoder.decode(ResizeImage.self, from: jsonEncoder.encode(small)).width
            }
        }

        var generator = SplitMix64(state: 42)
        let blob = Blob(name: "4 MiB", payload: Data((0..<(4 << 20)).map { _ in UInt8.random(in: 0...255, using: &generator) }))
        let blobRounds = 10
        let binaryBlob = try seconds {
            for _ in 0..<blobRounds {
                check &+= try binaryDecoder.decode(Blob.self, from: binaryEncoder.encode(blob)).payload.count
            }
        }
        let jsonBlob = try seconds {
            for _ in 0..<blobRounds {
                check &+= try jsonDecoder.decode(Blob.self, from: jsonEncoder.encode(blob)).payload.count
            }
        }
        XCTAssertNotEqual(check, 0)

        #if DEBUG
        let build = "debug build; use -c release for representative numbers"
        #else
        let build = "release build"
        #endif
        let binarySize = try binaryEncoder.encode(small).readableBytes
        let jsonSize = try jsonEncoder.encode(small).count
        print(
            """
            BinaryCoder vs JSON (\(build)); "speed-up" is JSON time ÷ binary time:
              small struct, \(rounds) round trips: binary \(String(format: "%.3f", binarySmall)) s, \
            JSON \(String(format: "%.3f", jsonSmall)) s, speed-up \(String(format: "%.1f", jsonSmall / binarySmall))×; \
            payload \(binarySize) bytes vs JSON \(jsonSize)
              4 MiB Data, \(blobRounds) round trips: binary \(String(format: "%.4f", binaryBlob)) s, \
            JSON \(String(format: "%.3f", jsonBlob)) s, speed-up \(String(format: "%.1f", jsonBlob / binaryBlob))×
            """)
    }
}
