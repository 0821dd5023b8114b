#if canImport(Glibc)
import Glibc
#endif
import Atomics
import Foundation
@_exported import HTTPTypes
import NIOConcurrencyHelpers
import NIOCore
import Synchronization

/// An HTTP request, parsed in the master's reactor and handed whole to a worker (Swoole's
/// `Swoole\Http\Request`). Its head is a swift-http-types ``HTTPRequest``.
///
/// ```swift
/// server.onRequest { request, response in
///     let name = request.query["name"] ?? "World"
///     try response.end("Hello, \(name)!")
/// }
/// ```
public struct Request: Sendable {
    /// The method, target (`path`, as sent: `/a/b?x=1`), `Host` as authority, and header
    /// fields. Built on first use: most handlers look at the method and path only, and
    /// building it (every field checked by swift-http-types) was a tenth of a worker's
    /// instructions per request.
    public var head: HTTPRequest {
        get { storage.assignedHead ?? storage.derived(\.head) { $0.makeHead() } }
        set { unique().assignedHead = newValue }
    }
    /// The method (`GET`, `POST`, …).
    public var method: HTTPRequest.Method { storage.assignedHead?.method ?? storage.wireMethod }
    /// The request target as sent, query included and not percent-decoded (Swoole's `request_uri` plus query).
    public var uri: String {
        get { storage.uri }
        set { unique().uri = newValue }
    }
    /// The path of the target, without the query, not percent-decoded.
    public var path: String {
        get { storage.path }
        set { unique().path = newValue }
    }
    /// The query string, without `?` ("" when none).
    public var queryString: String {
        get { storage.derived(\.queryString) { $0.wireQuery.map(String.init) ?? "" } }
        set { unique().set(\.queryString, newValue) }
    }
    /// The query's fields, percent-decoded (Swoole's `$request->get`).
    public var query: [String: String] {
        get { storage.derived(\.query) { $0.wireQuery.map { URLEncoding.parseForm($0) } ?? [:] } }
        set { unique().set(\.query, newValue) }
    }
    /// The header fields as received, except `Host`, which is `head.authority`.
    public var headers: HTTPFields { head.headerFields }
    /// The cookies of the `Cookie` header (Swoole's `$request->cookie`).
    public var cookies: [String: String] {
        get { storage.derived(\.cookies) { $0.parseCookies() } }
        set { unique().set(\.cookies, newValue) }
    }
    /// The body, whole (chunked bodies are joined); at most `packageMaxLength` bytes.
    public var body: ByteBuffer {
        get { storage.body }
        set { unique().body = newValue }
    }
    /// The fields of an `application/x-www-form-urlencoded` body (Swoole's `$request->post`); empty otherwise.
    public var form: [String: String] {
        get { storage.derived(\.form) { $0.parseForm() } }
        set { unique().set(\.form, newValue) }
    }
    /// The HTTP version, such as "1.1".
    public var version: String {
        get { storage.derived(\.version) { $0.wireVersion } }
        set { unique().set(\.version, newValue) }
    }
    /// The connection the request came on.
    public var connection: ConnectionID {
        get { storage.connection }
        set { unique().connection = newValue }
    }
    /// The reactor thread that owns the connection.
    public var reactorId: Int {
        get { storage.reactorId }
        set { unique().reactorId = newValue }
    }

    /// The fields, in one object copied on write: a request is handed from the worker's
    /// dispatch to the handler's task and to the handler, and copying a dozen references
    /// at each step (and releasing them after) was a tenth of the worker's instructions.
    private var storage: Storage

    /// Shared by copies until one of them is changed; never changed while shared, which
    /// makes it safe to send.
    private final class Storage: @unchecked Sendable {
        // Changed only while not shared (`unique()`), so no two accesses overlap: the
        // run-time exclusivity checks are off (see `EpollSocket`).
        @exclusivity(unchecked) var uri: String
        @exclusivity(unchecked) var path: String
        @exclusivity(unchecked) var body: ByteBuffer
        @exclusivity(unchecked) var connection: ConnectionID
        @exclusivity(unchecked) var reactorId: Int
        /// What the handler set `head` to, if it did.
        @exclusivity(unchecked) var assignedHead: HTTPRequest?
        /// The head as the reactor sent it.
        let wire: HTTPWireHead
        let wireMethod: HTTPRequest.Method
        /// The fields made of the head or the body on first use, or set by the handler.
        private let lazy: Mutex<Derived>

        /// What is parsed only when a handler asks for it: most ask for the method and the
        /// path only, and making all of it for each request, then releasing it, was about a
        /// tenth of a base-mode worker's instructions. Under a lock: a request may be read
        /// from any thread.
        struct Derived {
            var queryString: String?
            var query: [String: String]?
            var cookies: [String: String]?
            var form: [String: String]?
            var version: String?
            var head: HTTPRequest?
        }

        init(wire: HTTPWireHead, body: ByteBuffer, connection: ConnectionID, reactorId: Int) {
            self.wire = wire
            wireMethod = wire.method == "GET" ? .get : HTTPRequest.Method(wire.method) ?? .get
            uri = wire.target
            if let mark = wire.target.utf8.firstIndex(of: UInt8(ascii: "?")) {
                path = String(wire.target[..<mark])
            } else {
                path = wire.target
            }
            self.body = body
            self.connection = connection
            self.reactorId = reactorId
            lazy = Mutex(Derived())
        }

        /// A copy for a request about to change.
        init(copying other: Storage) {
            uri = other.uri
            path = other.path
            body = other.body
            connection = other.connection
            reactorId = other.reactorId
            assignedHead = other.assignedHead
            wire = other.wire
            wireMethod = other.wireMethod
            lazy = Mutex(other.lazy.withLock { $0 })
        }

        /// The field at `key`, made by `make` the first time (`make` must not read another
        /// derived field: it runs under the lock).
        func derived<T: Sendable>(_ key: WritableKeyPath<Derived, T?>, _ make: (Storage) -> T) -> T {
            lazy.withLock { fields in
                if let value = fields[keyPath: key] { return value }
                let value = make(self)
                fields[keyPath: key] = value
                return value
            }
        }

        func set<T: Sendable>(_ key: WritableKeyPath<Derived, T?>, _ value: sending T) {
            lazy.withLock { $0[keyPath: key] = value }
        }

        /// The query of the target as sent, without `?`; nil when it has none.
        var wireQuery: Substring? {
            guard let mark = wire.target.utf8.firstIndex(of: UInt8(ascii: "?")) else { return nil }
            return wire.target[wire.target.index(after: mark)...]
        }

        var wireVersion: String {
            switch (wire.versionMajor, wire.versionMinor) {
            case (1, 1): return "1.1"
            case (1, 0): return "1.0"
            default: return "\(wire.versionMajor).\(wire.versionMinor)"
            }
        }

        func parseCookies() -> [String: String] {
            let values = wire.headers.filter { RawResponse.equalsIgnoringCase($0.name, "cookie") }.map(\.value)
            return values.isEmpty ? [:] : CookieHeader.parse(values)
        }

        /// The body's fields when the first Content-Type says it is a form.
        func parseForm() -> [String: String] {
            guard let type = wire.headers.first(where: { RawResponse.equalsIgnoringCase($0.name, "content-type") }),
                  type.value.lowercased().hasPrefix("application/x-www-form-urlencoded") else { return [:] }
            return URLEncoding.parseForm(Substring(String(buffer: body)))
        }

        func makeHead() -> HTTPRequest {
            var fields = HTTPFields()
            var host: String?
            for pair in wire.headers {
                // The parser only passes valid tokens as names; a name that still does not
                // pass swift-http-types' check is dropped rather than failing the request.
                // swift-http-types carries Host as the request's authority, not as a field.
                if RawResponse.equalsIgnoringCase(pair.name, "host") { host = pair.value; continue }
                guard let name = HTTPField.Name(pair.name) else { continue }
                fields.append(HTTPField(name: name, value: pair.value))
            }
            return HTTPRequest(method: wireMethod, scheme: nil, authority: host, path: wire.target, headerFields: fields)
        }
    }

    init(wire: HTTPWireHead, body: ByteBuffer, connection: ConnectionID, reactorId: Int) {
        storage = Storage(wire: wire, body: body, connection: connection, reactorId: reactorId)
    }

    /// The storage, made this request's own before a change.
    private mutating func unique() -> Storage {
        if !isKnownUniquelyReferenced(&storage) { storage = Storage(copying: storage) }
        return storage
    }
}

/// The answer to one ``Request`` (Swoole's `Swoole\Http\Response`). Set ``status`` and
/// ``headers``, then either ``end(_:)-(ByteBuffer)`` once with the whole body, or
/// ``write(_:)-(ByteBuffer)`` parts (sent at once, with chunked transfer encoding) and
/// ``end(_:)-(ByteBuffer)``, or ``sendfile(_:offset:length:contentType:)``. A handler that returns without
/// ending its response ends it with what it has; one that throws before anything was sent
/// answers 500.
///
/// ```swift
/// server.onRequest { request, response in
///     response.status = .created
///     response.headers[.contentType] = "application/json"
///     response.setCookie("session", "abc", maxAge: 3600, httpOnly: true)
///     try response.end(#"{"ok":true}"#)
/// }
/// ```
///
/// It may be used from any thread or task; its methods are thread-safe.
public final class Response: Sendable {
    private struct State {
        var status: HTTPResponse.Status = .ok
        var headers = HTTPFields()
        var headSent = false
        var ended = false
    }

    /// A lock held inline (no allocation of its own, as NIO's lock box made for each response).
    private let state = Mutex(State())
    private let worker: WorkerRuntime
    private let connection: UInt64
    private let sequence: UInt32
    private let maxChunk: Int

    init(worker: WorkerRuntime, connection: UInt64, sequence: UInt32, maxChunk: Int) {
        self.worker = worker
        self.connection = connection
        self.sequence = sequence
        self.maxChunk = maxChunk
    }

    /// The status (200 unless set); read once the head is sent.
    public var status: HTTPResponse.Status {
        get { state.withLock { $0.status } }
        set { state.withLock { $0.status = newValue } }
    }

    /// The header fields (swift-http-types), sent with the first ``write(_:)-(ByteBuffer)`` or with ``end(_:)-(ByteBuffer)``.
    /// The master adds `Date`, `Server` (unless set), `Content-Length` or chunked encoding,
    /// and `Connection` as the request needs.
    public var headers: HTTPFields {
        get { state.withLock { $0.headers } }
        set { state.withLock { $0.headers = newValue } }
    }

    /// Sets a header field, replacing one of that name (Swoole's `header()`). An invalid
    /// name is ignored.
    public func header(_ name: String, _ value: String) {
        guard let name = HTTPField.Name(name) else { return }
        state.withLock { $0.headers[name] = value }
    }

    /// Adds a `Set-Cookie` field (Swoole's `cookie()`); the value is percent-encoded.
    public func setCookie(_ name: String, _ value: String, maxAge: Int? = nil, expires: Date? = nil,
                          path: String? = nil, domain: String? = nil, secure: Bool = false,
                          httpOnly: Bool = false, sameSite: String? = nil) {
        var text = "\(name)=\(value.addingPercentEncoding(withAllowedCharacters: Response.cookieValueCharacters) ?? "")"
        if let expires {
            var seconds = time_t(expires.timeIntervalSince1970)
            text += "; Expires=\(HTTPDate.format(&seconds))"
        }
        if let maxAge { text += "; Max-Age=\(maxAge)" }
        if let path { text += "; Path=\(path)" }
        if let domain { text += "; Domain=\(domain)" }
        if secure { text += "; Secure" }
        if httpOnly { text += "; HttpOnly" }
        if let sameSite { text += "; SameSite=\(sameSite)" }
        state.withLock { $0.headers.append(HTTPField(name: .setCookie, value: text)) }
    }

    private static let cookieValueCharacters: CharacterSet = {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "!#$&'()*+-./:<=>?@[]^_`{|}~")
        return allowed
    }()

    /// Whether the response can still be written (it has not ended).
    public var isWritable: Bool { state.withLock { !$0.ended } }

    /// Sends a part of the body now. The first call sends the head; without a
    /// `Content-Length` the body goes out chunked (HTTP/1.1).
    public func write(_ data: ByteBuffer) throws {
        try send(data, end: false)
    }

    /// Sends a string's UTF-8 bytes as a part of the body.
    public func write(_ text: String) throws {
        try send(text, end: false)
    }

    /// Ends the response with `body` (its last part after ``write(_:)-(ByteBuffer)``).
    public func end(_ body: ByteBuffer = ByteBuffer()) throws {
        try send(body, end: true)
    }

    /// Ends the response with a string's UTF-8 bytes.
    public func end(_ text: String) throws {
        try send(text, end: true)
    }

    /// Ends the response with a file's contents, or `length` bytes of it from `offset`
    /// (Swoole's `sendfile`). The worker only checks the file; the master's reactor sends it
    /// with sendfile(2), a socket buffer at a time as the client reads, so a large file costs
    /// the worker nothing and is not bounded by `bufferOutputSize`. `contentType` defaults
    /// to one guessed from the file's extension. Throws when the file cannot be read or the
    /// range lies outside it; nothing may have been written before.
    public func sendfile(_ path: String, offset: Int = 0, length: Int? = nil, contentType: String? = nil) throws {
        let fd = try? Syscall.open(path, O_RDONLY)
        guard let fd else { throw ServerError.fileNotReadable(path) }
        defer { Syscall.close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { throw ServerError.fileNotReadable(path) }
        let size = Int(info.st_size)
        let count = length ?? (size - offset)
        guard offset >= 0, count >= 0, offset + count <= size else {
            throw ServerError.invalidRange(path: path, offset: offset, length: count, size: size)
        }
        let message = try state.withLock { state -> IPCMessage in
            guard !state.ended, !state.headSent else { throw ServerError.responseEnded }
            state.ended = true
            state.headSent = true
            if state.headers[.contentType] == nil {
                state.headers[.contentType] = contentType ?? MediaType.guess(path)
            }
            let pairs = state.headers.wirePairs
            return .httpSendfile(connection: connection, sequence: sequence, status: state.status.code, headers: pairs,
                                 path: path, device: UInt64(info.st_dev), inode: UInt64(info.st_ino),
                                 offset: UInt64(offset), length: UInt64(count))
        }
        worker.post(message)
    }

    /// A string within one part goes on as it is: in base mode the master's side writes it
    /// straight into the response.
    private func send(_ text: String, end: Bool) throws {
        guard text.utf8.count > maxChunk else { return try sendPart(text, end: end) }
        try send(ByteBuffer(string: text), end: end)
    }

    private func send(_ data: ByteBuffer, end: Bool) throws {
        guard data.readableBytes > maxChunk else { return try sendPart(data, end: end) }
        // A body larger than one IPC frame should carry goes in parts; a whole body sent at
        // once keeps its Content-Length rather than turning chunked.
        if end {
            state.withLock { state in
                if !state.headSent && state.headers[.contentLength] == nil {
                    state.headers[.contentLength] = String(data.readableBytes)
                }
            }
        }
        var rest = data
        while let part = rest.readSlice(length: min(maxChunk, rest.readableBytes)), part.readableBytes > 0 {
            try sendPart(part, end: end && rest.readableBytes == 0)
        }
    }

    private func sendPart<Body: WireBody>(_ data: Body, end: Bool) throws {
        // The head, unless it went with an earlier part.
        let head = try state.withLock { state -> (status: Int, fields: HTTPFields)? in
            guard !state.ended else { throw ServerError.responseEnded }
            state.ended = end
            if state.headSent { return nil }
            state.headSent = true
            return (state.status.code, state.headers)
        }
        if let head {
            worker.postResponse(connection: connection, sequence: sequence, status: head.status, headers: head.fields,
                                body: data, end: end)
        } else {
            worker.post(.httpBody(connection: connection, sequence: sequence, data: data.buffer, end: end))
        }
    }

    /// After the handler returned: ends a response it left open.
    func endIfOpen() {
        // Checked first: most handlers ended it, and the error `end` would throw costs an allocation.
        guard isWritable else { return }
        try? end()
    }

    /// After the handler threw: 500 when nothing was sent yet; otherwise the client cannot
    /// be told, and its connection is closed.
    func fail() {
        let sent = state.withLock { state -> Bool in
            if state.ended { return true }
            if state.headSent { state.ended = true; return true }
            state.status = .internalServerError
            state.headers = [.contentType: "text/plain"]
            return false
        }
        if sent {
            worker.post(.closeConnection(connection: connection, reset: false))
        } else {
            try? end("500 Internal Server Error\n")
        }
    }
}

enum MediaType {
    /// A Content-Type from a file name's extension; `application/octet-stream` when unknown.
    static func guess(_ path: String) -> String {
        let name = path.split(separator: "/").last ?? ""
        guard let dot = name.lastIndex(of: ".") else { return "application/octet-stream" }
        switch name[name.index(after: dot)...].lowercased() {
        case "html", "htm": return "text/html; charset=utf-8"
        case "txt": return "text/plain; charset=utf-8"
        case "css": return "text/css; charset=utf-8"
        case "js", "mjs": return "text/javascript; charset=utf-8"
        case "json": return "application/json"
        case "xml": return "application/xml"
        case "svg": return "image/svg+xml"
        case "png": return "image/png"
        case "jpg", "jpeg": return "image/jpeg"
        case "gif": return "image/gif"
        case "webp": return "image/webp"
        case "pdf": return "application/pdf"
        case "wasm": return "application/wasm"
        default: return "application/octet-stream"
        }
    }
}

extension Server {
    /// Answers HTTP requests of the listeners with ``ProtocolSettings/openHTTPProtocol``
    /// (Swoole's `on('request')`). Runs in a worker; the requests of one connection are
    /// handled one after another, and their responses leave in request order.
    ///
    /// ```swift
    /// server.onRequest { request, response in
    ///     response.headers[.contentType] = "text/plain"
    ///     try response.end("Hello, World!")
    /// }
    /// ```
    public func onRequest(_ handler: @escaping @Sendable (Request, Response) throws -> Void) {
        handlers.request = .sync(handler)
    }

    /// Answers HTTP requests; may await. While one awaits, the worker serves other connections.
    /// The handler runs on the worker's event loop, and resumes there after each await.
    public func onRequest(
        _ handler: nonisolated(nonsending) @escaping @Sendable (Request, Response) async throws -> Void
    ) {
        handlers.request = .async(handler)
    }
}
