/// swoop-fixture's length-framed protocol: a 4-byte big-endian length, then the body.
extension LineClient {
    /// Sends one framed packet.
    func sendFramed(_ body: [UInt8], timeout: TimeInterval? = nil) throws {
        let n = UInt32(body.count)
        try sendRaw([UInt8(n >> 24), UInt8(n >> 16 & 0xff), UInt8(n >> 8 & 0xff), UInt8(n & 0xff)] + body, timeout: timeout)
    }

    func sendFramed(_ text: String, timeout: TimeInterval? = nil) throws {
        try sendFramed(Array(text.utf8), timeout: timeout)
    }

    /// Reads one framed packet's body as text.
    func readFramed(timeout: TimeInterval? = nil) throws -> String {
        let header = try readBytes(4, timeout: timeout)
        let length = header.reduce(0) { $0 << 8 | Int($1) }
        return String(decoding: try readBytes(length, timeout: timeout), as: UTF8.self)
    }

    /// Sends a framed request and reads the framed reply.
    func askFramed(_ text: String, timeout: TimeInterval? = nil) throws -> String {
        try sendFramed(text, timeout: timeout)
        return try readFramed(timeout: timeout)
    }
}

import Foundation
