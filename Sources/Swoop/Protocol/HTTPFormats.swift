#if canImport(Glibc)
import Glibc
#endif
import NIOConcurrencyHelpers

/// The HTTP text formats Swoop reads and writes besides what NIOHTTP1 does: the Date
/// header, query strings and urlencoded forms, Cookie headers.
enum HTTPDate {
    /// The Server header Swoop sends unless a handler sets its own.
    static let serverName = "swoop"

    private static let cache = NIOLockedValueBox<(second: Int, text: String)>((-1, ""))
    private static let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    /// The current time in the IMF-fixdate form (RFC 9110 §5.6.7), formatted once a second.
    static func now() -> String {
        var seconds = time(nil)
        return cache.withLockedValue { cache in
            if cache.second == seconds { return cache.text }
            cache = (seconds, format(&seconds))
            return cache.text
        }
    }

    static func format(_ seconds: inout time_t) -> String {
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func two(_ n: Int32) -> String { n < 10 ? "0\(n)" : "\(n)" }
        return "\(days[Int(parts.tm_wday)]), \(two(parts.tm_mday)) \(months[Int(parts.tm_mon)]) \(parts.tm_year + 1900) "
            + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) GMT"
    }
}

enum URLEncoding {
    /// `a=1&b=x+y&c=%2F` → ["a": "1", "b": "x y", "c": "/"]; a key without `=` maps to "".
    /// A key given twice keeps its last value, as PHP's `$_GET` does.
    static func parseForm(_ text: Substring) -> [String: String] {
        var fields: [String: String] = [:]
        for pair in text.split(separator: "&", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let key = decode(parts[0], plusIsSpace: true)
            guard !key.isEmpty else { continue }
            fields[key] = parts.count > 1 ? decode(parts[1], plusIsSpace: true) : ""
        }
        return fields
    }

    /// Percent-decodes `text`; a malformed escape is kept as it is. Invalid UTF-8 is repaired.
    static func decode(_ text: Substring, plusIsSpace: Bool) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count)
        var iterator = Array(text.utf8)[...]
        while let byte = iterator.popFirst() {
            if byte == UInt8(ascii: "%"), iterator.count >= 2,
               let high = hex(iterator[iterator.startIndex]), let low = hex(iterator[iterator.startIndex + 1]) {
                bytes.append(high << 4 | low)
                iterator = iterator.dropFirst(2)
            } else if byte == UInt8(ascii: "+") && plusIsSpace {
                bytes.append(UInt8(ascii: " "))
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func hex(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}

enum CookieHeader {
    /// `a=1; b="two"` → ["a": "1", "b": "two"]; the first of a repeated name wins, as the
    /// most specific cookie comes first (RFC 6265 §5.4).
    static func parse(_ values: [String]) -> [String: String] {
        var cookies: [String: String] = [:]
        for value in values {
            for pair in value.split(separator: ";") {
                let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                let name = parts[0].trimmingSpaces
                guard !name.isEmpty, cookies[name] == nil else { continue }
                var text = parts.count > 1 ? parts[1].trimmingSpaces : ""
                if text.count >= 2, text.hasPrefix("\""), text.hasSuffix("\"") { text = String(text.dropFirst().dropLast()) }
                cookies[name] = URLEncoding.decode(Substring(text), plusIsSpace: false)
            }
        }
        return cookies
    }
}

extension Substring {
    var trimmingSpaces: String {
        String(drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed())
    }
}
