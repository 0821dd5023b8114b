import Foundation

/// One lifecycle line of the `--log-file` log.
///
/// The contract only says that a line CONTAINS e.g. `onWorkerStop id=<id> pid=<pid>`,
/// so the event name is searched as a whole word anywhere in the line and the
/// `key=value` tokens after it are its fields (timestamps etc. before it are ignored).
struct LogEvent: Sendable, CustomStringConvertible {
    /// The lifecycle event names of the contract.
    static let names = [
        "onStart", "onManagerStart", "onWorkerStart", "onWorkerStop", "onWorkerError",
        "onManagerStop", "onShutdown",
    ]

    /// The event name, one of `names`.
    let name: String
    /// The `key=value` tokens following the event name (first occurrence of a key wins).
    let fields: [String: String]
    /// The line's position in the log (0-based, counting non-empty lines).
    let index: Int
    /// The raw line.
    let line: String

    /// Parses a log line; nil if it holds none of the lifecycle events.
    init?(line: String, index: Int) {
        var best: (name: String, end: String.Index, start: String.Index)?
        for name in Self.names {
            var searchStart = line.startIndex
            while let range = line.range(of: name, range: searchStart..<line.endIndex) {
                let before = range.lowerBound == line.startIndex ? nil : line[line.index(before: range.lowerBound)]
                let after = range.upperBound == line.endIndex ? nil : line[range.upperBound]
                let isWordChar: (Character?) -> Bool = { $0.map { $0.isLetter || $0.isNumber || $0 == "_" } ?? false }
                if !isWordChar(before) && !isWordChar(after) {
                    if best == nil || range.lowerBound < best!.start {
                        best = (name, range.upperBound, range.lowerBound)
                    }
                    break
                }
                searchStart = range.upperBound
            }
        }
        guard let best else { return nil }
        var fields: [String: String] = [:]
        for token in line[best.end...].split(whereSeparator: { $0 == " " || $0 == "\t" }) {
            let parts = token.split(separator: "=", maxSplits: 1)
            guard parts.count == 2 else { continue }
            let key = String(parts[0])
            let value = String(parts[1]).trimmingCharacters(in: CharacterSet(charactersIn: ",;"))
            if fields[key] == nil { fields[key] = value }
        }
        self.name = best.name
        self.fields = fields
        self.index = index
        self.line = line
    }

    /// A field as an integer.
    func int(_ key: String) -> Int? { fields[key].flatMap { Int($0) } }

    var description: String { "#\(index) \(line)" }
}

/// A parsed `whoami` reply.
///
/// TCP: `worker=<id> pid=<pid> conn=<connection id> reactor=<reactor id>`;
/// UDP: `worker=<id> pid=<pid>`.
struct WhoAmI: Sendable, Equatable, CustomStringConvertible {
    let worker: Int
    let pid: Int32
    let conn: Int?
    let reactor: Int?

    /// Parses the exact TCP format (all four fields, in order); nil otherwise.
    static func parseTCP(_ reply: String) -> WhoAmI? {
        guard let v = fields(reply, ["worker", "pid", "conn", "reactor"]) else { return nil }
        return WhoAmI(worker: v[0], pid: Int32(v[1]), conn: v[2], reactor: v[3])
    }

    /// Parses the exact UDP format (`worker=<id> pid=<pid>`); nil otherwise.
    static func parseUDP(_ reply: String) -> WhoAmI? {
        guard let v = fields(reply, ["worker", "pid"]) else { return nil }
        return WhoAmI(worker: v[0], pid: Int32(v[1]), conn: nil, reactor: nil)
    }

    private static func fields(_ reply: String, _ keys: [String]) -> [Int]? {
        let tokens = reply.split(separator: " ", omittingEmptySubsequences: false)
        guard tokens.count == keys.count else { return nil }
        var values: [Int] = []
        for (token, key) in zip(tokens, keys) {
            guard token.hasPrefix(key + "="), let value = Int(token.dropFirst(key.count + 1)), value >= 0 else {
                return nil
            }
            values.append(value)
        }
        guard values[1] > 0, values[1] <= Int(Int32.max) else { return nil }
        return values
    }

    var description: String {
        "worker=\(worker) pid=\(pid)" + (conn.map { " conn=\($0)" } ?? "") + (reactor.map { " reactor=\($0)" } ?? "")
    }
}

/// The `stats` reply: one line of JSON.
struct Stats {
    /// The keys the contract guarantees.
    static let requiredKeys = [
        "connection_num", "accept_count", "close_count", "request_count", "worker_num", "task_worker_num",
        "start_time",
    ]

    /// The decoded object.
    let object: [String: Any]

    /// Decodes the reply; throws if it is not a JSON object.
    init(_ reply: String) throws {
        guard let data = reply.data(using: .utf8),
              let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else {
            throw HarnessError("stats reply is not a JSON object: \(reply)")
        }
        self.object = object
    }

    /// A numeric field as an integer (JSON numbers may decode as Int, Double or NSNumber).
    func int(_ key: String) -> Int? {
        switch object[key] {
        case let value as Int: return value
        case let value as Double: return Int(value)
        case let value as NSNumber: return value.intValue
        default: return nil
        }
    }
}
