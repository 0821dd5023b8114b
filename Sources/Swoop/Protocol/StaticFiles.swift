import Foundation
import NIOCore
import NIOHTTP1

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Where static files come from (Swoole's `document_root` and `enable_static_handler`).
struct StaticFileSettings: Sendable, Equatable {
    /// The directory whose files are served; a request can never reach outside its real path.
    var documentRoot: String
    /// Whether the reactor serves static files at all; when false every request goes to a worker.
    var enabled: Bool
    /// Names tried, in order, for a request whose path ends with `/` (Swoole's `http_index_files`).
    var indexFiles: [String] = ["index.html"]
}

/// A regular file under the document root, as found by ``StaticFiles/resolve(target:root:indexFiles:)``.
struct ResolvedFile: Sendable, Equatable {
    /// The real path: every symlink resolved, inside the root's real path.
    var path: String
    /// Length in bytes.
    var size: Int64
    /// Last modification in whole seconds since the epoch (HTTP dates carry no finer grain).
    var modified: Int64
    /// Device and inode, so that the file opened later can be checked to be the one resolved.
    var device: UInt64
    var inode: UInt64
    /// The media type, from the extension of the name requested (not of a symlink's target,
    /// as nginx does: `latest.tar.gz -> v2.tar.gz` is typed by the name the client asked for).
    var contentType: String
}

/// What the static handler makes of a request target.
enum StaticResolution: Sendable, Equatable {
    /// Serve this file.
    case file(ResolvedFile)
    /// Answer 404 in the reactor: the name exists under the root but is not a regular file
    /// or directory (a FIFO, socket or device), which must never be read by a server.
    case notFound
    /// Answer 403 in the reactor: the target tries to leave the root or to smuggle a separator
    /// (`..` in any spelling, `%2f`, `%5c`, a backslash, a NUL, a symlink pointing outside the
    /// root, a symlink loop, a directory on the way that may not be searched). Such a request is never passed to a
    /// worker either, so a naive handler there cannot be tricked with it.
    case forbidden
    /// Not a static file: pass the request to a worker, as Swoole does. A path that does not
    /// exist, a directory without an index file (or named without its trailing `/`), a target
    /// that is not a path, malformed percent-encoding, or a root that cannot be resolved.
    case notMine
}

/// A response that the reactor sends for a static file.
struct StaticResponse: Sendable, Equatable {
    var status: HTTPResponseStatus
    /// Everything but `Date`, `Server` and `Connection`, which belong to the connection's owner.
    var headers: HTTPHeaders
    /// The bytes of the file to send as the body; nil for HEAD, 304, 416, refusals and empty files.
    var bodyRange: Range<Int64>?

    /// A bodiless 403 or 404 for a ``StaticResolution/forbidden`` or ``StaticResolution/notFound``.
    static func refusal(_ status: HTTPResponseStatus) -> StaticResponse {
        StaticResponse(status: status, headers: ["Content-Length": "0"], bodyRange: nil)
    }
}

/// The static file handler: safe path resolution, conditional and range requests, and the
/// NIO writes that send a file with sendfile.
///
/// It runs on the reactor's event loop. `resolve` and `open` make a few metadata calls
/// (realpath, stat, open) there, as Swoole and nginx do without aio: they are answered from
/// the kernel's dentry and inode caches; the bytes themselves go out through a `FileRegion`,
/// which NIO sends with sendfile a socket-buffer at a time as the socket drains, so a large
/// file never holds the loop.
///
/// The steps, each usable alone: ``resolve(target:root:indexFiles:)`` → ``open(_:)`` →
/// ``respond(method:headers:file:now:)`` → ``write(_:file:version:extraHeaders:context:promise:)``;
/// ``prepare(_:settings:now:)`` runs the first three for a request head.
enum StaticFiles {
    /// Only GET and HEAD are served statically; any other method is the worker's to answer.
    static func serves(_ method: HTTPMethod) -> Bool {
        method == .GET || method == .HEAD
    }

    // MARK: Resolving a target

    /// Resolves a request target to a regular file under `root`, or says why not.
    ///
    /// The query and fragment are ignored. Each path segment is percent-decoded exactly once
    /// (`%252e` stays the literal name `%2e`); `.` and empty segments are skipped; `..` is refused
    /// in any spelling rather than normalised, because browsers remove dot segments before
    /// sending and only an attack sends them. After decoding, the path is realpath'd and must
    /// lie inside the root's real path, which also covers symlinks at any depth.
    static func resolve(target: String, root: String, indexFiles: [String] = ["index.html"]) -> StaticResolution {
        let segments: [String]
        let wantsDirectory: Bool
        switch decodePath(target) {
        case .decoded(let decoded, let trailingSlash): (segments, wantsDirectory) = (decoded, trailingSlash)
        case .forbidden: return .forbidden
        case .notMine: return .notMine
        }
        guard case .success(let realRoot) = StaticFileSystem.realPath(root) else { return .notMine }
        let candidate = segments.isEmpty ? realRoot : realRoot + "/" + segments.joined(separator: "/")
        let requestedName = segments.last ?? ""

        switch check(candidate, under: realRoot, requestedName: requestedName) {
        case .file(let file):
            // `/a.txt/` names no directory; the kernel says ENOTDIR for it, and so do we.
            return wantsDirectory && !segments.isEmpty ? .notMine : .file(file)
        case .directory(let realDirectory):
            // Serving an index for `/docs` would break its relative links; a worker may redirect.
            guard wantsDirectory || segments.isEmpty else { return .notMine }
            for index in indexFiles where isPlainName(index) {
                switch check(realDirectory + "/" + index, under: realRoot, requestedName: index) {
                case .file(let file): return .file(file)
                case .refused(let resolution): return resolution
                case .directory, .missing: continue
                }
            }
            return .notMine
        case .refused(let resolution):
            return resolution
        case .missing:
            return .notMine
        }
    }

    private enum Checked {
        case file(ResolvedFile)
        case directory(String)
        case refused(StaticResolution)
        case missing
    }

    /// Realpaths `path`, confines it to `realRoot` and classifies what it names.
    private static func check(_ path: String, under realRoot: String, requestedName: String) -> Checked {
        let real: String
        switch StaticFileSystem.realPath(path) {
        case .success(let resolved): real = resolved
        case .failure(let error):
            switch error.code {
            case EACCES, ELOOP: return .refused(.forbidden)
            default: return .missing  // ENOENT, ENOTDIR, ENAMETOOLONG: not a file of ours
            }
        }
        let inside = real == realRoot || real.hasPrefix(realRoot == "/" ? "/" : realRoot + "/")
        guard inside else { return .refused(.forbidden) }
        guard case .success(let info) = StaticFileSystem.status(real) else { return .refused(.forbidden) }
        switch info.st_mode & S_IFMT {
        case S_IFREG:
            return .file(ResolvedFile(info, path: real, contentType: MIMETypes.contentType(forName: requestedName)))
        case S_IFDIR:
            return .directory(real)
        default:
            return .refused(.notFound)
        }
    }

    /// An index file name must be one plain name, or it could walk out of the directory.
    private static func isPlainName(_ name: String) -> Bool {
        !name.isEmpty && name != "." && name != ".." && !name.contains("/") && !name.contains("\0")
    }

    private enum DecodedPath {
        /// The segments, and whether the path ended with `/`.
        case decoded([String], trailingSlash: Bool)
        case forbidden
        case notMine
    }

    /// Splits the path of a target into decoded segments, refusing every way of spelling a
    /// separator or a parent inside one.
    private static func decodePath(_ target: String) -> DecodedPath {
        var path = Substring(target)
        if let end = path.firstIndex(where: { $0 == "?" || $0 == "#" }) { path = path[..<end] }
        // absolute-form (`GET http://host/a HTTP/1.1`), which HTTP/1.1 servers must accept.
        let lowered = path.prefix(8).lowercased()
        if lowered.hasPrefix("http://") || lowered.hasPrefix("https://") {
            let afterScheme = path[path.index(path.firstIndex(of: ":")!, offsetBy: 3)...]
            guard let slash = afterScheme.firstIndex(of: "/") else { return .decoded([], trailingSlash: true) }
            path = afterScheme[slash...]
        }
        guard path.first == "/" else { return .notMine }  // `*` (OPTIONS) or authority-form

        var segments: [String] = []
        var endsWithDot = false  // `/sub/.` names the directory, as `/sub/` does
        for raw in path.utf8.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: true) {
            guard let bytes = percentDecode(raw) else { return .notMine }
            if bytes.contains(0) || bytes.contains(UInt8(ascii: "/")) || bytes.contains(UInt8(ascii: "\\")) {
                return .forbidden
            }
            endsWithDot = bytes == [UInt8(ascii: ".")]
            if endsWithDot { continue }
            if bytes == [UInt8(ascii: "."), UInt8(ascii: ".")] { return .forbidden }
            // A name that is not UTF-8 cannot round-trip through String; leave it to the worker.
            guard let segment = String(validating: bytes, as: UTF8.self) else { return .notMine }
            segments.append(segment)
        }
        return .decoded(segments, trailingSlash: path.last == "/" || endsWithDot)
    }

    /// Decodes `%XX` escapes; nil for a malformed escape.
    private static func percentDecode(_ raw: Substring.UTF8View.SubSequence) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(raw.count)
        var iterator = raw.makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else {
                out.append(byte)
                continue
            }
            guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else {
                return nil
            }
            out.append(high << 4 | low)
        }
        return out
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    // MARK: Building the response

    /// The strong validator nginx uses: modification time and size, in hex.
    static func entityTag(of file: ResolvedFile) -> String {
        "\"\(String(file.modified, radix: 16))-\(String(file.size, radix: 16))\""
    }

    /// Builds the response to a GET or HEAD of `file` (any method but HEAD is answered as GET).
    ///
    /// - 304 when `If-None-Match` matches the ETag, or, without `If-None-Match`, when the file
    ///   is not newer than `If-Modified-Since` (RFC 9110 §13.2.2 order).
    /// - 206 for one satisfiable byte range (`a-b`, `a-`, `-n`), 416 with `bytes */size` for an
    ///   unsatisfiable one. A range whose `If-Range` does not match, a malformed `Range`, a unit
    ///   other than bytes, several ranges (multipart/byteranges is not worth its cost here, and
    ///   RFC 9110 lets a server ignore Range) and any range on an empty file get 200 and the whole file.
    /// - HEAD gets exactly the status and headers GET would get, and no body (RFC 9110 §9.3.2).
    static func respond(method: HTTPMethod, headers request: HTTPHeaders, file: ResolvedFile, now: Date) -> StaticResponse {
        // A clock behind the file's mtime must not produce a Last-Modified in the future.
        let lastModified = min(file.modified, Int64(now.timeIntervalSince1970.rounded(.down)))
        let etag = entityTag(of: file)
        var headers: HTTPHeaders = [
            "Last-Modified": IMFFixdate.format(lastModified),
            "ETag": etag,
        ]
        if notModified(request, etag: etag, lastModified: lastModified) {
            return StaticResponse(status: .notModified, headers: headers, bodyRange: nil)
        }
        headers.add(name: "Accept-Ranges", value: "bytes")
        headers.add(name: "Content-Type", value: file.contentType)
        let sendsBody = method != .HEAD

        var status = HTTPResponseStatus.ok
        var range: Range<Int64> = 0..<file.size
        if file.size > 0, let spec = singleRange(request), ifRangeHolds(request, etag: etag, lastModified: lastModified) {
            guard let satisfiable = spec.clamped(toSize: file.size) else {
                headers.add(name: "Content-Range", value: "bytes */\(file.size)")
                headers.add(name: "Content-Length", value: "0")
                return StaticResponse(status: .rangeNotSatisfiable, headers: headers, bodyRange: nil)
            }
            status = .partialContent
            range = satisfiable
            headers.add(name: "Content-Range", value: "bytes \(range.lowerBound)-\(range.upperBound - 1)/\(file.size)")
        }
        headers.add(name: "Content-Length", value: String(range.count))
        return StaticResponse(status: status, headers: headers, bodyRange: sendsBody && !range.isEmpty ? range : nil)
    }

    private static func notModified(_ request: HTTPHeaders, etag: String, lastModified: Int64) -> Bool {
        let noneMatch = request[canonicalForm: "If-None-Match"]
        if !noneMatch.isEmpty {
            // Weak comparison (RFC 9110 §8.8.3.2): `W/` is ignored on either side.
            return noneMatch.contains { $0 == "*" || weakTag($0) == weakTag(etag) }
        }
        guard let since = request.first(name: "If-Modified-Since"), let date = IMFFixdate.parse(since) else {
            return false  // an invalid date is ignored, as RFC 9110 §13.1.3 requires
        }
        return lastModified <= date
    }

    private static func weakTag(_ tag: Substring) -> Substring {
        tag.hasPrefix("W/") ? tag.dropFirst(2) : tag
    }

    private static func weakTag(_ tag: String) -> Substring { weakTag(Substring(tag)) }

    /// `If-Range` holds when absent, when it is our ETag (strong comparison), or when it is
    /// exactly our Last-Modified date.
    private static func ifRangeHolds(_ request: HTTPHeaders, etag: String, lastModified: Int64) -> Bool {
        guard let condition = request.first(name: "If-Range") else { return true }
        if condition.hasPrefix("\"") || condition.hasPrefix("W/") { return condition == etag }
        return IMFFixdate.parse(condition) == lastModified
    }

    /// One byte range as the client wrote it, before the file's size is known.
    enum RangeSpec: Equatable {
        /// `bytes=a-b`, or `bytes=a-` with `last` nil.
        case from(first: Int64, last: Int64?)
        /// `bytes=-n`: the last n bytes.
        case suffix(Int64)

        /// The bytes it selects, or nil when it is unsatisfiable (RFC 9110 §14.1.1).
        func clamped(toSize size: Int64) -> Range<Int64>? {
            switch self {
            case .from(let first, let last):
                guard first < size else { return nil }
                return first..<(min(last ?? (size - 1), size - 1) + 1)
            case .suffix(let count):
                guard count > 0 else { return nil }
                return max(0, size - count)..<size
            }
        }
    }

    /// The single range asked for, or nil to send the whole file: no Range, a malformed one,
    /// another unit, or several ranges.
    static func singleRange(_ request: HTTPHeaders) -> RangeSpec? {
        let fields = request[canonicalForm: "Range"]
        guard fields.count == 1, let field = fields.first else { return nil }
        guard field.count > 6, field.prefix(6).lowercased() == "bytes=" else { return nil }
        let set = field.dropFirst(6).trimmingCharacters(in: .whitespaces)
        guard !set.contains(",") else { return nil }
        let parts = set.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2 else { return nil }
        let first = parts[0].trimmingCharacters(in: .whitespaces)
        let last = parts[1].trimmingCharacters(in: .whitespaces)
        if first.isEmpty {
            guard let count = digits(last) else { return nil }
            return .suffix(count)
        }
        guard let start = digits(first) else { return nil }
        if last.isEmpty { return .from(first: start, last: nil) }
        guard let end = digits(last), end >= start else { return nil }
        return .from(first: start, last: end)
    }

    /// A non-negative decimal made of digits only (`Int64("+5")` would accept a sign).
    /// A number too large for Int64 still names a position past any file; saturate.
    private static func digits(_ text: String) -> Int64? {
        guard !text.isEmpty, text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else {
            return nil
        }
        return Int64(text) ?? Int64.max
    }
}

extension ResolvedFile {
    /// The file as `stat` describes it, typed by `contentType`.
    init(_ info: stat, path: String, contentType: String) {
        self.init(path: path, size: Int64(info.st_size), modified: Int64(info.st_mtim.tv_sec),
                  device: UInt64(info.st_dev), inode: UInt64(info.st_ino), contentType: contentType)
    }
}

/// The few file system calls of the static handler, kept in one place so that they can be
/// routed through the project's `Syscall` layer.
enum StaticFileSystem {
    struct Failure: Error {
        let code: Int32
    }

    /// The canonical absolute path, with every symlink, `.` and `..` resolved.
    static func realPath(_ path: String) -> Result<String, Failure> {
        guard let resolved = Glibc.realpath(path, nil) else { return .failure(Failure(code: errno)) }
        defer { free(resolved) }
        return .success(String(cString: resolved))
    }

    static func status(_ path: String) -> Result<stat, Failure> {
        var info = stat()
        return stat(path, &info) == 0 ? .success(info) : .failure(Failure(code: errno))
    }

    static func status(of fd: CInt) -> Result<stat, Failure> {
        var info = stat()
        return fstat(fd, &info) == 0 ? .success(info) : .failure(Failure(code: errno))
    }

    /// Opens read-only and close-on-exec; O_NONBLOCK so that a FIFO swapped in after the check
    /// cannot stall the reactor in open(2) (the inode check then rejects it), and O_NOFOLLOW
    /// because the path is already real.
    static func openForReading(_ path: String) -> Result<CInt, Failure> {
        while true {
            let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW)
            if fd >= 0 { return .success(fd) }
            let code = errno
            if code != EINTR { return .failure(Failure(code: code)) }
        }
    }

    /// Not retried on EINTR: Linux releases the descriptor even then.
    static func close(_ fd: CInt) {
        _ = Glibc.close(fd)
    }
}
