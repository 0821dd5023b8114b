// Fuzz harness for the binary Codable decoder (`BinaryDecoder`).
//
// Arbitrary bytes are decoded as one of a set of types that between them use every part of
// the format and of the Codable API: scalars of every width, strings, byte blobs, Date, URL,
// UUID, 128-bit integers, optionals nested twice, arrays, sets, dictionaries with string and
// integer keys, enums with payloads, recursive types, class inheritance (superDecoder), nested
// and unkeyed containers, allKeys. The decoder must throw `BinaryCodingError` (or the error
// a type's own init(from:) throws) and never trap. A value it accepts must encode again, and
// that payload must decode to an equal value.

import Foundation
import NIOCore

struct FuzzScalars: Codable, Equatable {
    var int: Int, int8: Int8, int16: Int16, int32: Int32, int64: Int64
    var uint: UInt, uint8: UInt8, uint16: UInt16, uint32: UInt32, uint64: UInt64
    var bool: Bool, float: Float, double: Double, string: String
}

enum FuzzKind: Codable, Equatable {
    case none
    case code(Int)
    case named(String, weight: Float?)
    case pair(UInt8, [Int16])
}

indirect enum FuzzTree: Codable, Equatable {
    case leaf(Int32)
    case node(FuzzTree, FuzzTree)
    case list([FuzzTree])
}

struct FuzzRecord: Codable, Equatable {
    var id: UInt64
    var name: String
    var tags: [String]
    var scores: [String: Double]
    var byNumber: [Int: String]
    var maybe: Int?
    var twice: Int??
    var data: Data
    var bytes: [UInt8]
    var date: Date
    var url: URL?
    var uuid: UUID
    var big: Int128
    var ubig: UInt128
    var kind: FuzzKind
    var set: Set<Int16>
    var children: [FuzzRecord]?
}

/// A type with a hand-written init(from:) that walks containers the way hand-written
/// Codable code does: nested keyed and unkeyed containers, allKeys, contains, decodeNil.
struct FuzzManual: Codable, Equatable {
    var fields: [String: Int64]
    var matrix: [[Double?]]
    var flag: Bool?

    enum Keys: String, CodingKey { case fields, matrix, flag }

    struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int?
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { self.stringValue = String(intValue); self.intValue = intValue }
    }

    init(fields: [String: Int64], matrix: [[Double?]], flag: Bool?) {
        self.fields = fields
        self.matrix = matrix
        self.flag = flag
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: Keys.self)
        let nested = try container.nestedContainer(keyedBy: AnyKey.self, forKey: .fields)
        var fields: [String: Int64] = [:]
        for key in nested.allKeys where nested.contains(key) {
            fields[key.stringValue] = try nested.decode(Int64.self, forKey: key)
        }
        self.fields = fields
        var rows = try container.nestedUnkeyedContainer(forKey: .matrix)
        var matrix: [[Double?]] = []
        while !rows.isAtEnd {
            var row = try rows.nestedUnkeyedContainer()
            var values: [Double?] = []
            while !row.isAtEnd {
                values.append(try row.decodeNil() ? nil : try row.decode(Double.self))
            }
            matrix.append(values)
        }
        self.matrix = matrix
        flag = try container.decodeNil(forKey: .flag) ? nil : try container.decode(Bool.self, forKey: .flag)
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Keys.self)
        var nested = container.nestedContainer(keyedBy: AnyKey.self, forKey: .fields)
        for (key, value) in fields { try nested.encode(value, forKey: AnyKey(stringValue: key)) }
        var rows = container.nestedUnkeyedContainer(forKey: .matrix)
        for values in matrix {
            var row = rows.nestedUnkeyedContainer()
            for value in values {
                if let value { try row.encode(value) } else { try row.encodeNil() }
            }
        }
        if let flag { try container.encode(flag, forKey: .flag) } else { try container.encodeNil(forKey: .flag) }
    }
}

class FuzzBase: Codable, Equatable {
    var serial: Int
    init(serial: Int) { self.serial = serial }
    static func == (a: FuzzBase, b: FuzzBase) -> Bool { a.isEqual(to: b) }
    func isEqual(to other: FuzzBase) -> Bool { serial == other.serial && type(of: self) == type(of: other) }
}

final class FuzzDerived: FuzzBase, @unchecked Sendable {
    var label: String
    var weights: [Float]

    enum Keys: String, CodingKey { case label, weights }

    init(serial: Int, label: String, weights: [Float]) {
        self.label = label
        self.weights = weights
        super.init(serial: serial)
    }

    required init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: Keys.self)
        label = try container.decode(String.self, forKey: .label)
        weights = try container.decode([Float].self, forKey: .weights)
        try super.init(from: container.superDecoder())
    }

    override func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Keys.self)
        try container.encode(label, forKey: .label)
        try container.encode(weights, forKey: .weights)
        try super.encode(to: container.superEncoder())
    }

    override func isEqual(to other: FuzzBase) -> Bool {
        guard let other = other as? FuzzDerived else { return false }
        return label == other.label && weights == other.weights && super.isEqual(to: other)
    }
}

public enum BinaryFuzz {
    /// Input: [type] [options] payload…
    /// options bit 0: check the type fingerprint (otherwise any payload's fingerprint is
    /// accepted, so the fuzzer reaches the values); bits 1–7: a nesting limit (0: the default).
    public static func decoder(_ data: UnsafeRawBufferPointer) {
        var input = FuzzInput(data)
        let type = input.byte()
        let options = input.byte()
        let payload = ByteBuffer(bytes: input.rest())
        var decoder = BinaryDecoder()
        decoder.checksTypeFingerprint = options & 1 != 0
        if options >> 1 != 0 { decoder.maximumDepth = Int(options >> 1) }

        switch type % 12 {
        case 0: run(FuzzRecord.self, payload, decoder)
        case 1: run(FuzzScalars.self, payload, decoder)
        case 2: run(FuzzTree.self, payload, decoder)
        case 3: run(FuzzManual.self, payload, decoder)
        case 4: run(FuzzDerived.self, payload, decoder)
        case 5: run([String: [Int]].self, payload, decoder)
        case 6: run([Int: FuzzKind].self, payload, decoder)
        case 7: run([FuzzRecord?].self, payload, decoder)
        case 8: run(String?.self, payload, decoder)
        case 9: run([Data].self, payload, decoder)
        case 10: run(Int???.self, payload, decoder)
        default: run([UUID: [URL]].self, payload, decoder)
        }
    }

    private static func run<T: Codable & Equatable>(_ valueType: T.Type, _ payload: ByteBuffer, _ decoder: BinaryDecoder) {
        let value: T
        do {
            value = try decoder.decode(T.self, from: payload)
        } catch is BinaryCodingError {
            return
        } catch is DecodingError {
            // Thrown by the standard library's own init(from:) (an enum's unknown case, a
            // Set or Dictionary with a duplicate key): allowed, it passes through.
            return
        } catch {
            fuzzFail("decoding \(T.self) threw \(type(of: error)): \(error)")
        }
        // What was accepted must survive a round trip.
        let encoded: ByteBuffer
        do {
            encoded = try BinaryEncoder().encode(value)
        } catch {
            fuzzFail("a decoded \(T.self) does not encode again: \(error)\n\(value)")
        }
        let again: T
        do {
            again = try BinaryDecoder().decode(T.self, from: encoded)
        } catch {
            fuzzFail("a re-encoded \(T.self) does not decode: \(error)\n\(value)")
        }
        // NaN never equals itself, so a value holding one is compared no further. Whether it
        // holds one shows in a second, separate decode: `value == value` is no test, as
        // collections compare equal to themselves by identity before looking at elements.
        guard let twin = try? decoder.decode(T.self, from: payload) else {
            fuzzFail("the same \(T.self) payload decoded once and failed the second time")
        }
        if twin == value {
            fuzzCheck(again == value, "a \(T.self) changed in a round trip:\n\(value)\n\(again)")
        }
    }
}
