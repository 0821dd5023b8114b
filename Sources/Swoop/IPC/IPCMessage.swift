import Foundation
import NIOCore

/// The role a process announces when it connects to the master.
enum ProcessRole: UInt8, Sendable, CustomStringConvertible {
    case master = 0, manager = 1, worker = 2, taskWorker = 3

    var description: String {
        switch self {
        case .master: return "master"
        case .manager: return "manager"
        case .worker: return "worker"
        case .taskWorker: return "task worker"
        }
    }
}

/// Requests a worker makes of the master (and, in base mode, the master of a worker),
/// answered with ``IPCMessage/response``.
enum MasterQuery: UInt8, Sendable {
    case stats = 1, exists, clientInfo, connections, reload, reloadTaskWorkers, shutdown

    /// An answer's body: JSON, or empty for none (a closed connection, a worker gone).
    static func encode<T: Encodable>(_ value: T?) -> ByteBuffer {
        guard let value, let data = try? JSONEncoder().encode(value) else { return ByteBuffer() }
        return ByteBuffer(bytes: data)
    }

    /// An answer's value; nil when it is empty.
    static func decode<T: Decodable>(_ type: T.Type, from answer: ByteBuffer) throws -> T? {
        if answer.readableBytes == 0 { return nil }
        return try JSONDecoder().decode(T.self, from: Data(answer.readableBytesView))
    }
}

/// Everything the processes of one server say to each other.
///
/// All of it travels through the master: each worker (and the manager) holds one Unix
/// stream connection to it, so every message has exactly one writer per direction and
/// frames never interleave. A worker's connection belongs to one generation of its slot:
/// during a reload the old worker and its replacement hold separate connections, so their
/// frames cannot mix, and replies carry the connection id, so each reaches its own client.
enum IPCMessage: Sendable, Equatable {
    /// First message of every connection to the master.
    case hello(role: ProcessRole, workerId: Int, generation: Int, pid: Int32, token: UInt64)
    /// A client connected (master → worker).
    case connect(connection: UInt64, reactor: Int, listener: Int)
    /// A packet from a client (master → worker).
    case receive(connection: UInt64, reactor: Int, data: ByteBuffer)
    /// A client connection ended (master → worker); `byServer` when the server closed it.
    case close(connection: UInt64, reactor: Int, byServer: Bool)
    /// A UDP datagram (master → worker).
    case packet(listener: Int, address: String, port: Int, data: ByteBuffer)
    /// Bytes for a client (worker → master).
    case send(connection: UInt64, data: ByteBuffer)
    /// A datagram to send from a UDP listener (worker → master).
    case sendTo(listener: Int, address: String, port: Int, data: ByteBuffer)
    /// Close a client connection (worker → master).
    case closeConnection(connection: UInt64, reset: Bool)
    /// The worker finished requests of these connections, one entry per request (0 for a
    /// UDP datagram) (worker → master). The master counts requests in flight per connection,
    /// so that it can close exactly those connections whose worker died holding them.
    case done(connections: [UInt64])
    /// A message between workers, relayed by the master.
    case pipeMessage(from: Int, to: Int, data: ByteBuffer)
    /// A question for the master (worker → master).
    case request(id: UInt32, query: MasterQuery, argument: UInt64)
    /// The master's answer, JSON (master → worker).
    case response(id: UInt32, data: ByteBuffer)
    /// A worker stopping: send it no more work (worker → master).
    case stopping
    /// A new worker connected and is ready (master → manager).
    case workerReady(workerId: Int, generation: Int, pid: Int32)
    /// Replace workers (master → manager).
    case reload(taskWorkersOnly: Bool)
    /// Stop the server (master → manager).
    case shutdown
    /// A task for a task worker (worker → master → task worker); `target` -1: any.
    case task(id: UInt64, source: Int, target: Int, data: ByteBuffer)
    /// A task's outcome (task worker → master → the worker that asked, or master → worker
    /// when the task worker died).
    case taskResult(id: UInt64, source: Int, status: TaskStatus, data: ByteBuffer)
    /// This worker has served its quota: start its successor (worker → master → manager).
    case recycle(workerId: Int, generation: Int)
    /// Give work to this generation of the slot from now on (manager → master).
    case activate(workerId: Int, generation: Int)
    /// A reload ended: every new worker took over, or it was rolled back (manager → master).
    case reloadDone(succeeded: Bool)
    /// A whole HTTP request, parsed by the reactor (master → worker). `sequence` numbers the
    /// requests of one connection, so that a late answer to a request the master already
    /// answered itself (503, 504) is recognised and dropped.
    case httpRequest(connection: UInt64, reactor: Int, sequence: UInt32, head: HTTPWireHead, body: ByteBuffer)
    /// A response's head, with `body`; `end`: the response is complete, otherwise body parts
    /// follow in ``httpBody`` (worker → master).
    case httpResponse(connection: UInt64, sequence: UInt32, status: Int, headers: [HTTPWirePair], body: ByteBuffer, end: Bool)
    /// More of a response's body; `end`: the last part (worker → master).
    case httpBody(connection: UInt64, sequence: UInt32, data: ByteBuffer, end: Bool)
    /// A whole response whose body is `length` bytes of a file from `offset`: the master sends
    /// it with sendfile, so it is neither copied through the IPC socket nor bounded by
    /// `bufferOutputSize`. `device`/`inode` are the file the worker checked (worker → master).
    case httpSendfile(connection: UInt64, sequence: UInt32, status: Int, headers: [HTTPWirePair], path: String,
                      device: UInt64, inode: UInt64, offset: UInt64, length: UInt64)
}

/// One header line on the wire, in the order it was received or set.
struct HTTPWirePair: Sendable, Equatable {
    var name: String
    var value: String
}

/// A request head as the reactor parsed it: the method and target as sent, the version and
/// the header lines.
///
/// A class: a request's head is handed from the IPC message to the handler's request (and,
/// in the master, from the parser to the message), and each copy of a struct retained and
/// released its strings and fields one by one. Not final: the parser's head
/// (`ParsedRequestHead`) is one, with what the session decides by, so that a request needs
/// one object for both.
class HTTPWireHead: @unchecked Sendable, Equatable {
    let method: String
    let target: String
    let versionMajor: Int
    let versionMinor: Int
    let headers: [HTTPWirePair]

    init(method: String, target: String, versionMajor: Int, versionMinor: Int, headers: [HTTPWirePair]) {
        self.method = method
        self.target = target
        self.versionMajor = versionMajor
        self.versionMinor = versionMinor
        self.headers = headers
    }

    static func == (a: HTTPWireHead, b: HTTPWireHead) -> Bool {
        a.method == b.method && a.target == b.target && a.versionMajor == b.versionMajor
            && a.versionMinor == b.versionMinor && a.headers == b.headers
    }
}

/// How a task ended, on the wire.
enum TaskStatus: UInt8, Sendable {
    case ok = 0
    /// The handler threw; the data is its description.
    case failed = 1
    /// The task worker died while it held the task.
    case workerDied = 2
    /// The server is stopping and the task was never run.
    case shutdown = 3
}

/// The wire form of ``IPCMessage``: a 4-byte big-endian length, a type byte, then fields.
enum IPCCodec {
    /// The length prefix: 4 bytes, big-endian, counting what follows it.
    static let headerSize = 4

    private enum Tag: UInt8 {
        case hello = 1, connect, receive, close, packet, send, sendTo, closeConnection, done
        case pipeMessage, request, response, stopping, workerReady, reload, shutdown
        case task, taskResult, recycle, activate, reloadDone
        case httpRequest, httpResponse, httpBody, httpSendfile
    }

    enum DecodeError: Error, Equatable {
        case frameTooLong(Int)
        case malformed(String)
    }

    /// Appends the frame for `message` to `buffer`.
    static func encode(_ message: IPCMessage, into buffer: inout ByteBuffer) {
        // The frames of every request have their fixed part written in one go (ByteWriter).
        switch message {
        case let .receive(connection, reactor, data):
            buffer.write(exactly: headerSize + 11) { out in
                out.put(bigEndian: UInt32(11 + data.readableBytes))
                out.put(Tag.receive.rawValue)
                out.put(bigEndian: connection)
                out.put(bigEndian: UInt16(reactor))
            }
            buffer.writeImmutableBuffer(data)
        case let .send(connection, data):
            buffer.write(exactly: headerSize + 9) { out in
                out.put(bigEndian: UInt32(9 + data.readableBytes))
                out.put(Tag.send.rawValue)
                out.put(bigEndian: connection)
            }
            buffer.writeImmutableBuffer(data)
        case let .httpRequest(connection, reactor, sequence, head, body):
            let method = head.method.utf8.count, target = head.target.utf8.count
            let fixed = 1 + 8 + 2 + 4 + 4 + method + 4 + target + 2
            let headers = headersSize(head.headers)
            buffer.write(exactly: headerSize + fixed + headers) { out in
                out.put(bigEndian: UInt32(fixed + headers + body.readableBytes))
                out.put(Tag.httpRequest.rawValue)
                out.put(bigEndian: connection)
                out.put(bigEndian: UInt16(reactor))
                out.put(bigEndian: sequence)
                out.put(bigEndian: UInt32(method))
                out.put(head.method)
                out.put(bigEndian: UInt32(target))
                out.put(head.target)
                out.put(UInt8(truncatingIfNeeded: head.versionMajor))
                out.put(UInt8(truncatingIfNeeded: head.versionMinor))
                putHeaders(head.headers, into: &out)
            }
            buffer.writeImmutableBuffer(body)
        case let .httpResponse(connection, sequence, status, headers, body, end):
            let fixed = 1 + 8 + 4 + 2 + 1
            let size = headersSize(headers)
            buffer.write(exactly: headerSize + fixed + size) { out in
                out.put(bigEndian: UInt32(fixed + size + body.readableBytes))
                out.put(Tag.httpResponse.rawValue)
                out.put(bigEndian: connection)
                out.put(bigEndian: sequence)
                out.put(bigEndian: UInt16(truncatingIfNeeded: status))
                out.put(end ? 1 : 0)
                putHeaders(headers, into: &out)
            }
            buffer.writeImmutableBuffer(body)
        case let .hello(role, workerId, generation, pid, token):
            framed(.hello, into: &buffer) { buffer in
                buffer.writeInteger(role.rawValue)
                buffer.writeInteger(Int32(workerId))
                buffer.writeInteger(UInt32(generation))
                buffer.writeInteger(pid)
                buffer.writeInteger(token)
            }
        case let .connect(connection, reactor, listener):
            framed(.connect, into: &buffer) { buffer in
                buffer.writeInteger(connection)
                buffer.writeInteger(UInt16(reactor))
                buffer.writeInteger(UInt16(listener))
            }
        case let .close(connection, reactor, byServer):
            framed(.close, into: &buffer) { buffer in
                buffer.writeInteger(connection)
                buffer.writeInteger(UInt16(reactor))
                buffer.writeInteger(byServer ? UInt8(1) : 0)
            }
        case let .packet(listener, address, port, data):
            framed(.packet, into: &buffer) { buffer in
                buffer.writeInteger(UInt16(listener))
                writeAddress(address, port, into: &buffer)
                buffer.writeImmutableBuffer(data)
            }
        case let .sendTo(listener, address, port, data):
            framed(.sendTo, into: &buffer) { buffer in
                buffer.writeInteger(UInt16(listener))
                writeAddress(address, port, into: &buffer)
                buffer.writeImmutableBuffer(data)
            }
        case let .closeConnection(connection, reset):
            framed(.closeConnection, into: &buffer) { buffer in
                buffer.writeInteger(connection)
                buffer.writeInteger(reset ? UInt8(1) : 0)
            }
        case let .done(connections):
            framed(.done, into: &buffer) { buffer in
                buffer.writeInteger(UInt32(connections.count))
                for connection in connections { buffer.writeInteger(connection) }
            }
        case let .pipeMessage(from, to, data):
            framed(.pipeMessage, into: &buffer) { buffer in
                buffer.writeInteger(Int32(from))
                buffer.writeInteger(Int32(to))
                buffer.writeImmutableBuffer(data)
            }
        case let .request(id, query, argument):
            framed(.request, into: &buffer) { buffer in
                buffer.writeInteger(id)
                buffer.writeInteger(query.rawValue)
                buffer.writeInteger(argument)
            }
        case let .response(id, data):
            framed(.response, into: &buffer) { buffer in
                buffer.writeInteger(id)
                buffer.writeImmutableBuffer(data)
            }
        case .stopping:
            framed(.stopping, into: &buffer) { _ in }
        case let .workerReady(workerId, generation, pid):
            framed(.workerReady, into: &buffer) { buffer in
                buffer.writeInteger(Int32(workerId))
                buffer.writeInteger(UInt32(generation))
                buffer.writeInteger(pid)
            }
        case let .reload(taskWorkersOnly):
            framed(.reload, into: &buffer) { buffer in
                buffer.writeInteger(taskWorkersOnly ? UInt8(1) : 0)
            }
        case .shutdown:
            framed(.shutdown, into: &buffer) { _ in }
        case let .task(id, source, target, data):
            framed(.task, into: &buffer) { buffer in
                buffer.writeInteger(id)
                buffer.writeInteger(Int32(source))
                buffer.writeInteger(Int32(target))
                buffer.writeImmutableBuffer(data)
            }
        case let .taskResult(id, source, status, data):
            framed(.taskResult, into: &buffer) { buffer in
                buffer.writeInteger(id)
                buffer.writeInteger(Int32(source))
                buffer.writeInteger(status.rawValue)
                buffer.writeImmutableBuffer(data)
            }
        case let .recycle(workerId, generation):
            framed(.recycle, into: &buffer) { buffer in
                buffer.writeInteger(Int32(workerId))
                buffer.writeInteger(UInt32(generation))
            }
        case let .activate(workerId, generation):
            framed(.activate, into: &buffer) { buffer in
                buffer.writeInteger(Int32(workerId))
                buffer.writeInteger(UInt32(generation))
            }
        case let .reloadDone(succeeded):
            framed(.reloadDone, into: &buffer) { buffer in
                buffer.writeInteger(succeeded ? UInt8(1) : 0)
            }
        case let .httpBody(connection, sequence, data, end):
            framed(.httpBody, into: &buffer) { buffer in
                buffer.writeInteger(connection)
                buffer.writeInteger(sequence)
                buffer.writeInteger(end ? UInt8(1) : 0)
                buffer.writeImmutableBuffer(data)
            }
        case let .httpSendfile(connection, sequence, status, headers, path, device, inode, offset, length):
            framed(.httpSendfile, into: &buffer) { buffer in
                buffer.writeInteger(connection)
                buffer.writeInteger(sequence)
                buffer.writeInteger(UInt16(truncatingIfNeeded: status))
                writeHeaders(headers, into: &buffer)
                writeString(path, into: &buffer)
                buffer.writeInteger(device)
                buffer.writeInteger(inode)
                buffer.writeInteger(offset)
                buffer.writeInteger(length)
            }
        }
    }

    /// A frame whose fields are written one by one (the rare messages): its length is filled in
    /// once they are.
    private static func framed(_ tag: Tag, into buffer: inout ByteBuffer, _ fields: (inout ByteBuffer) -> Void) {
        let start = buffer.writerIndex
        buffer.writeInteger(UInt32(0))
        buffer.writeInteger(tag.rawValue)
        fields(&buffer)
        buffer.setInteger(UInt32(buffer.writerIndex - start - headerSize), at: start)
    }

    /// Takes one whole frame off the front of `buffer`; `nil` until one is complete.
    static func decode(_ buffer: inout ByteBuffer, maxFrameLength: Int) throws -> IPCMessage? {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return nil }
        guard Int(length) <= maxFrameLength else { throw DecodeError.frameTooLong(Int(length)) }
        guard buffer.readableBytes >= headerSize + Int(length) else { return nil }
        buffer.moveReaderIndex(forwardBy: headerSize)
        var frame = buffer.readSlice(length: Int(length))!
        return try decodeBody(&frame)
    }

    /// The fields are read through one pointer (``FieldCursor``) rather than with a ByteBuffer
    /// call each, whose bounds and exclusivity checks were most of a request's decoding; the
    /// data at a frame's end stays a slice of it.
    private static func decodeBody(_ frame: inout ByteBuffer) throws -> IPCMessage {
        try frame.withUnsafeReadableBytes { raw in
            var cursor = FieldCursor(raw)
            return try decodeFields(&cursor) { [frame] offset in
                frame.getSlice(at: frame.readerIndex + offset, length: raw.count - offset)!
            }
        }
    }

    /// Decodes a frame's fields; `rest(offset)` is the frame's data from `offset` on.
    private static func decodeFields(_ cursor: inout FieldCursor, rest: (Int) -> ByteBuffer) throws -> IPCMessage {
        func read<T: FixedWidthInteger>(_: T.Type = T.self) throws -> T {
            try cursor.integer()
        }
        guard let tag = Tag(rawValue: try read(UInt8.self)) else { throw DecodeError.malformed("unknown type") }
        switch tag {
        case .hello:
            guard let role = ProcessRole(rawValue: try read()) else { throw DecodeError.malformed("role") }
            return .hello(role: role, workerId: Int(try read(Int32.self)), generation: Int(try read(UInt32.self)),
                          pid: try read(), token: try read())
        case .connect:
            return .connect(connection: try read(), reactor: Int(try read(UInt16.self)),
                            listener: Int(try read(UInt16.self)))
        case .receive:
            let connection: UInt64 = try read()
            let reactor = Int(try read(UInt16.self))
            return .receive(connection: connection, reactor: reactor, data: rest(cursor.offset))
        case .close:
            return .close(connection: try read(), reactor: Int(try read(UInt16.self)), byServer: try read(UInt8.self) != 0)
        case .packet:
            let listener = Int(try read(UInt16.self))
            let (address, port) = try cursor.address()
            return .packet(listener: listener, address: address, port: port, data: rest(cursor.offset))
        case .send:
            let connection: UInt64 = try read()
            return .send(connection: connection, data: rest(cursor.offset))
        case .sendTo:
            let listener = Int(try read(UInt16.self))
            let (address, port) = try cursor.address()
            return .sendTo(listener: listener, address: address, port: port, data: rest(cursor.offset))
        case .closeConnection:
            return .closeConnection(connection: try read(), reset: try read(UInt8.self) != 0)
        case .done:
            let count = Int(try read(UInt32.self))
            guard count <= cursor.remaining / 8 else { throw DecodeError.malformed("done count") }
            var connections: [UInt64] = []
            connections.reserveCapacity(count)
            for _ in 0..<count { connections.append(try read()) }
            return .done(connections: connections)
        case .pipeMessage:
            let from = Int(try read(Int32.self))
            let to = Int(try read(Int32.self))
            return .pipeMessage(from: from, to: to, data: rest(cursor.offset))
        case .request:
            let id: UInt32 = try read()
            guard let query = MasterQuery(rawValue: try read()) else { throw DecodeError.malformed("query") }
            return .request(id: id, query: query, argument: try read())
        case .response:
            let id: UInt32 = try read()
            return .response(id: id, data: rest(cursor.offset))
        case .stopping:
            return .stopping
        case .workerReady:
            return .workerReady(workerId: Int(try read(Int32.self)), generation: Int(try read(UInt32.self)),
                                pid: try read())
        case .reload:
            return .reload(taskWorkersOnly: try read(UInt8.self) != 0)
        case .shutdown:
            return .shutdown
        case .task:
            let id: UInt64 = try read()
            let source = Int(try read(Int32.self))
            let target = Int(try read(Int32.self))
            return .task(id: id, source: source, target: target, data: rest(cursor.offset))
        case .taskResult:
            let id: UInt64 = try read()
            let source = Int(try read(Int32.self))
            guard let status = TaskStatus(rawValue: try read()) else { throw DecodeError.malformed("task status") }
            return .taskResult(id: id, source: source, status: status, data: rest(cursor.offset))
        case .recycle:
            return .recycle(workerId: Int(try read(Int32.self)), generation: Int(try read(UInt32.self)))
        case .activate:
            return .activate(workerId: Int(try read(Int32.self)), generation: Int(try read(UInt32.self)))
        case .reloadDone:
            return .reloadDone(succeeded: try read(UInt8.self) != 0)
        case .httpRequest:
            let connection: UInt64 = try read()
            let reactor = Int(try read(UInt16.self))
            let sequence: UInt32 = try read()
            let method = try cursor.string()
            let target = try cursor.string()
            let major = Int(try read(UInt8.self))
            let minor = Int(try read(UInt8.self))
            let headers = try cursor.headers()
            return .httpRequest(connection: connection, reactor: reactor, sequence: sequence,
                                head: HTTPWireHead(method: method, target: target, versionMajor: major,
                                                   versionMinor: minor, headers: headers),
                                body: rest(cursor.offset))
        case .httpResponse:
            let connection: UInt64 = try read()
            let sequence: UInt32 = try read()
            let status = Int(try read(UInt16.self))
            let end = try read(UInt8.self) != 0
            let headers = try cursor.headers()
            return .httpResponse(connection: connection, sequence: sequence, status: status, headers: headers,
                                 body: rest(cursor.offset), end: end)
        case .httpBody:
            let connection: UInt64 = try read()
            let sequence: UInt32 = try read()
            let end = try read(UInt8.self) != 0
            return .httpBody(connection: connection, sequence: sequence, data: rest(cursor.offset), end: end)
        case .httpSendfile:
            let connection: UInt64 = try read()
            let sequence: UInt32 = try read()
            let status = Int(try read(UInt16.self))
            let headers = try cursor.headers()
            let path = try cursor.string()
            return .httpSendfile(connection: connection, sequence: sequence, status: status, headers: headers, path: path,
                                 device: try read(), inode: try read(), offset: try read(), length: try read())
        }
    }

    /// A string with a 4-byte length: header values and request targets may be long.
    private static func writeString(_ text: String, into buffer: inout ByteBuffer) {
        let count = text.utf8.count
        buffer.write(exactly: 4 + count) { out in
            out.put(bigEndian: UInt32(count))
            out.put(text)
        }
    }

    /// The count, then each name and value as a length and its bytes, written in one go.
    private static func writeHeaders(_ headers: [HTTPWirePair], into buffer: inout ByteBuffer) {
        buffer.write(exactly: headersSize(headers)) { out in putHeaders(headers, into: &out) }
    }

    private static func headersSize(_ headers: [HTTPWirePair]) -> Int {
        var size = 4
        for header in headers { size += 8 + header.name.utf8.count + header.value.utf8.count }
        return size
    }

    private static func putHeaders(_ headers: [HTTPWirePair], into out: inout ByteWriter) {
        out.put(bigEndian: UInt32(headers.count))
        for header in headers {
            out.put(bigEndian: UInt32(header.name.utf8.count))
            out.put(header.name)
            out.put(bigEndian: UInt32(header.value.utf8.count))
            out.put(header.value)
        }
    }

    /// An address takes at most 255 bytes (its length is one byte). A longer one, which no IP
    /// address is, is cut at a character boundary, so the frame still holds valid UTF-8.
    private static func writeAddress(_ address: String, _ port: Int, into buffer: inout ByteBuffer) {
        var bytes = Array(address.utf8)
        if bytes.count > 255 {
            var end = 255
            while end > 0 && bytes[end] & 0xC0 == 0x80 { end -= 1 }  // a continuation byte: the character began before
            bytes.removeSubrange(end...)
        }
        buffer.writeInteger(UInt8(bytes.count))
        buffer.writeBytes(bytes)
        buffer.writeInteger(UInt16(truncatingIfNeeded: port))
    }

}

/// Reads a frame's fields in order from its bytes: big-endian integers, strings and header
/// lists with 4-byte lengths, addresses with a 1-byte length; a field that runs past the end
/// is `IPCCodec.DecodeError.malformed`.
struct FieldCursor {
    private let bytes: UnsafeRawBufferPointer
    private(set) var offset = 0

    init(_ bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
    }

    var remaining: Int { bytes.count - offset }

    mutating func integer<T: FixedWidthInteger>(_: T.Type = T.self) throws -> T {
        let size = MemoryLayout<T>.size
        guard size <= remaining else { throw IPCCodec.DecodeError.malformed("short frame") }
        defer { offset += size }
        return T(bigEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
    }

    /// Takes `count` bytes.
    private mutating func take(_ count: Int, _ what: String) throws -> UnsafeRawBufferPointer {
        guard count <= remaining else { throw IPCCodec.DecodeError.malformed(what) }
        defer { offset += count }
        return UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + count)])
    }

    /// A string with a 4-byte length: header values and request targets may be long.
    mutating func string() throws -> String {
        let count = Int(try integer(UInt32.self))
        return String(decoding: try take(count, "string"), as: UTF8.self)
    }

    mutating func headers() throws -> [HTTPWirePair] {
        let count = Int(try integer(UInt32.self))
        guard count <= remaining / 8 else { throw IPCCodec.DecodeError.malformed("header count") }
        var headers: [HTTPWirePair] = []
        headers.reserveCapacity(count)
        for _ in 0..<count {
            headers.append(HTTPWirePair(name: try string(), value: try string()))
        }
        return headers
    }

    /// Invalid UTF-8 is refused rather than repaired: a repaired address could be longer than
    /// the 255 bytes its length byte allows, and would then not survive being sent on.
    mutating func address() throws -> (String, Int) {
        let count = Int(try integer(UInt8.self))
        let raw = try take(count, "address")
        let port = Int(try integer(UInt16.self))
        let address = String(decoding: raw, as: UTF8.self)
        guard address.utf8.elementsEqual(raw) else { throw IPCCodec.DecodeError.malformed("address is not UTF-8") }
        return (address, port)
    }
}

/// Cuts an IPC socket's byte stream into messages, read after read: a frame that a read
/// ends in the middle of waits for the next. The link handlers call it themselves rather
/// than through NIO's `ByteToMessageHandler`, which would box every message in an
/// existential (`NIOAny`) and cast it back, per message, in both directions.
struct IPCFrameReader {
    let maxFrameLength: Int
    /// The start of a frame that the last read ended in the middle of.
    private var partial: ByteBuffer?

    init(maxFrameLength: Int) {
        self.maxFrameLength = maxFrameLength
    }

    /// Hands each whole message of what has arrived to `body`, in order; throws
    /// `IPCCodec.DecodeError` at a frame that is malformed or too long (the rest is dropped).
    ///
    /// Messages are slices of the read that carried them, except the one frame a read ended
    /// in the middle of: only its bytes are copied, into a buffer of its own. (Appending each
    /// new read to a slice of the last one would copy the whole read, and the messages' slices
    /// would keep both reads' memory alive for as long as their bytes wait for a slow client.)
    mutating func read(_ incoming: ByteBuffer, _ body: (IPCMessage) throws -> Void) throws {
        var incoming = incoming
        if var held = partial {
            partial = nil
            complete(&held, from: &incoming, upTo: IPCCodec.headerSize)
            if let length = held.getInteger(at: held.readerIndex, as: UInt32.self) {
                guard Int(length) <= maxFrameLength else { throw IPCCodec.DecodeError.frameTooLong(Int(length)) }
                complete(&held, from: &incoming, upTo: IPCCodec.headerSize + Int(length))
            }
            guard let message = try IPCCodec.decode(&held, maxFrameLength: maxFrameLength) else {
                partial = held
                return
            }
            try body(message)
        }
        while let message = try IPCCodec.decode(&incoming, maxFrameLength: maxFrameLength) {
            try body(message)
        }
        if incoming.readableBytes > 0 {
            let whole = incoming.getInteger(at: incoming.readerIndex, as: UInt32.self).map { IPCCodec.headerSize + Int($0) }
            var held = ByteBufferAllocator().buffer(capacity: max(whole ?? 0, incoming.readableBytes))
            held.writeImmutableBuffer(incoming)
            partial = held
        }
    }

    /// Moves bytes from `incoming` to `held` until it holds `count` (or `incoming` is empty).
    private func complete(_ held: inout ByteBuffer, from incoming: inout ByteBuffer, upTo count: Int) {
        let missing = min(count - held.readableBytes, incoming.readableBytes)
        if missing > 0, let bytes = incoming.readSlice(length: missing) {
            held.writeImmutableBuffer(bytes)
        }
    }
}
