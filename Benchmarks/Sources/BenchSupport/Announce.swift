#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Writes `line` to standard output at once, unbuffered.
///
/// The harness waits for a program's ready line on a pipe; stdio would hold it in its buffer
/// (stdout is not a terminal there), and Swift 6 forbids touching C's global `stdout` to
/// flush it, so the line goes out with one `write(2)` instead.
public func announce(_ line: String) {
    var text = line
    if !text.hasSuffix("\n") { text += "\n" }
    text.withUTF8 { bytes in
        var offset = 0
        while offset < bytes.count {
            let written = write(STDOUT_FILENO, bytes.baseAddress! + offset, bytes.count - offset)
            if written < 0 {
                if errno == EINTR { continue }
                return
            }
            offset += written
        }
    }
}
