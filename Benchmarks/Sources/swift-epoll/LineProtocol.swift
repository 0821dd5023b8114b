// The line protocol: nio-baseline's and c-ceiling's replies, byte for byte.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

enum LineProtocol {
    private static let echo: StaticString = "echo"
    private static let ping: StaticString = "ping"

    /// Appends the reply to the line in input bytes `start..<end` (its content, without its
    /// "\n"): `echo TEXT` → `TEXT\n`, `ping` → `pong\n`, anything else →
    /// `error unknown command\n`. A "\r" before the "\n" is not content; the command is the
    /// content up to its first space, the argument all after that space.
    ///
    /// The handler: called directly, or from an async closure (`--async`).
    static func answer(_ connection: Connection, lineFrom start: Int, to end: Int) {
        // The line stays where it is while it is answered: input is not touched until the
        // read loop moves on.
        let line = UnsafeRawPointer(connection.input.base + start)
        var length = end - start
        if length > 0 && line.load(fromByteOffset: length - 1, as: UInt8.self) == UInt8(ascii: "\r") {
            length -= 1
        }
        let space = memchr(line, CInt(UInt8(ascii: " ")), length)
        let command = space.map { line.distance(to: UnsafeRawPointer($0)) } ?? length
        if command == 4 && memcmp(line, echo.utf8Start, 4) == 0 {
            let argument = space == nil ? length : command + 1
            connection.output.append(line + argument, count: length - argument)
            connection.output.append(byte: UInt8(ascii: "\n"))
        } else if command == 4 && memcmp(line, ping.utf8Start, 4) == 0 {
            connection.output.append("pong\n")
        } else {
            connection.output.append("error unknown command\n")
        }
    }
}
