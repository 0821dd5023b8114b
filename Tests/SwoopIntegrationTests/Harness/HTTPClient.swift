import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// One HTTP response as read off the wire.
struct HTTPReply: CustomStringConvertible {
    var status: Int
    /// Header names lowercased; repeated fields joined with ", " except Set-Cookie (one per line in `setCookies`).
    var headers: [String: String]
    var setCookies: [String]
    var body: [UInt8]
    /// The status line and the header lines, as sent and in order.
    var lines: [String] = []
    var text: String { String(decoding: body, as: UTF8.self) }
    var description: String { "\(status) \(headers) \(text.prefix(200))" }
}

/// A raw-socket HTTP/1.1 client for what curl cannot show: pipelining, malformed requests,
/// one connection kept across many requests, the exact bytes of a response.
final class RawHTTPClient {
    let socket: LineClient

    init(port: UInt16, timeout: TimeInterval = 10) throws {
        socket = try LineClient(port: port, timeout: timeout)
    }

    func send(_ text: String) throws {
        try socket.sendRaw(Array(text.utf8))
    }

    func send(_ bytes: [UInt8]) throws {
        try socket.sendRaw(bytes)
    }

    /// Sends a GET (or another bodiless method) and reads its response.
    func get(_ target: String, method: String = "GET", headers: [String] = []) throws -> HTTPReply {
        try send(Self.request(method, target, headers: headers))
        return try readResponse(head: method == "HEAD")
    }

    static func request(_ method: String, _ target: String, headers: [String] = [], body: String? = nil) -> String {
        var text = "\(method) \(target) HTTP/1.1\r\nHost: test\r\n"
        for header in headers { text += header + "\r\n" }
        if let body { text += "Content-Length: \(body.utf8.count)\r\n" }
        return text + "\r\n" + (body ?? "")
    }

    /// Reads one response; `head`: the answer to a HEAD request, which has no body.
    func readResponse(head: Bool = false, timeout: TimeInterval = 10) throws -> HTTPReply {
        let statusLine = try socket.readLine(timeout: timeout)
        let parts = statusLine.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let status = Int(parts[1]) else {
            throw HarnessError("malformed status line: \"\(statusLine)\"")
        }
        var headers: [String: String] = [:]
        var cookies: [String] = []
        var lines = [statusLine]
        while true {
            let line = try socket.readLine(timeout: timeout)
            if line.isEmpty { break }
            lines.append(line)
            guard let colon = line.firstIndex(of: ":") else { throw HarnessError("malformed header line: \"\(line)\"") }
            let name = line[..<colon].lowercased()
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            if name == "set-cookie" { cookies.append(value) }
            headers[name] = headers[name].map { $0 + ", " + value } ?? value
        }
        var body: [UInt8] = []
        if head || status < 200 || status == 204 || status == 304 {
            // No body.
        } else if headers["transfer-encoding"]?.lowercased() == "chunked" {
            while true {
                let sizeLine = try socket.readLine(timeout: timeout)
                guard let size = Int(sizeLine.split(separator: ";")[0], radix: 16) else {
                    throw HarnessError("malformed chunk size: \"\(sizeLine)\"")
                }
                if size == 0 {
                    while try !socket.readLine(timeout: timeout).isEmpty {}
                    break
                }
                body += try socket.readBytes(size, timeout: timeout)
                _ = try socket.readBytes(2, timeout: timeout)
            }
        } else if let length = headers["content-length"].flatMap(Int.init) {
            body = try socket.readBytes(length, timeout: timeout)
        }
        return HTTPReply(status: status, headers: headers, setCookies: cookies, body: body, lines: lines)
    }

    func isClosedByPeer(timeout: TimeInterval) -> Bool { socket.isClosedByPeer(timeout: timeout) }

    func close() { socket.close() }
}

/// Runs curl (which the machine has: see .ci/run) and returns its standard output; every
/// call carries `--max-time`, so a hung server fails the test instead of hanging it.
func curl(_ arguments: [String], maxTime: Int = 20) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["curl", "--silent", "--show-error", "--max-time", String(maxTime)] + arguments
    let output = Pipe()
    let errors = Pipe()
    process.standardOutput = output
    process.standardError = errors
    try process.run()
    let data = output.fileHandleForReading.readDataToEndOfFile()
    let errorText = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw HarnessError("curl \(arguments.joined(separator: " ")) exited \(process.terminationStatus): \(errorText)")
    }
    return String(decoding: data, as: UTF8.self)
}
