import NIOCore
import XCTest
@testable import Swoop

final class IPCCodecTests: XCTestCase {
    private let samples: [IPCMessage] = [
        .hello(role: .worker, workerId: 3, generation: 7, pid: 4242, token: 0xDEAD_BEEF_0123_4567),
        .hello(role: .manager, workerId: -1, generation: 0, pid: 1, token: 0),
        .connect(connection: 1 << 40, reactor: 3, listener: 2),
        .receive(connection: 99, reactor: 1, data: ByteBuffer(string: "ping\n")),
        .receive(connection: 100, reactor: 0, data: ByteBuffer()),
        .close(connection: 5, reactor: 1, byServer: true),
        .packet(listener: 1, address: "127.0.0.1", port: 65535, data: ByteBuffer(string: "whoami")),
        .packet(listener: 0, address: "::1", port: 1, data: ByteBuffer(bytes: [0, 255, 10])),
        .send(connection: 7, data: ByteBuffer(string: "pong\n")),
        .sendTo(listener: 1, address: "10.1.2.3", port: 53, data: ByteBuffer(string: "x")),
        .closeConnection(connection: 8, reset: true),
        .done(connections: [12, 0, 1 << 50, 12]),
        .done(connections: []),
        .task(id: 1 << 40 | 7, source: 1, target: -1, data: ByteBuffer(string: "job")),
        .taskResult(id: 9, source: 0, status: .workerDied, data: ByteBuffer()),
        .recycle(workerId: 3, generation: 12),
        .pipeMessage(from: 0, to: 5, data: ByteBuffer(string: "relay 1 hi")),
        .request(id: 77, query: .clientInfo, argument: 123),
        .response(id: 77, data: ByteBuffer(string: "{}")),
        .stopping,
        .workerReady(workerId: 2, generation: 9, pid: 31337),
        .reload(taskWorkersOnly: true),
        .shutdown,
        .httpRequest(connection: 1 << 33, reactor: 2, sequence: 4_000_000_000,
                     head: HTTPWireHead(method: "POST", target: "/echo?a=1&b=%20", versionMajor: 1, versionMinor: 1,
                                        headers: [.init(name: "Host", value: "x"), .init(name: "Cookie", value: "a=1; b=2"),
                                                  .init(name: "X-Empty", value: "")]),
                     body: ByteBuffer(string: "hello=world")),
        .httpRequest(connection: 3, reactor: 0, sequence: 0,
                     head: HTTPWireHead(method: "GET", target: "/", versionMajor: 1, versionMinor: 0, headers: []),
                     body: ByteBuffer()),
        .httpResponse(connection: 3, sequence: 1, status: 200,
                      headers: [.init(name: "Content-Type", value: "text/plain"), .init(name: "Set-Cookie", value: "a=1"),
                                .init(name: "Set-Cookie", value: "b=2")],
                      body: ByteBuffer(string: "Hello, World!"), end: true),
        .httpResponse(connection: 4, sequence: 2, status: 599, headers: [], body: ByteBuffer(), end: false),
        .httpBody(connection: 4, sequence: 2, data: ByteBuffer(string: "chunk"), end: false),
        .httpBody(connection: 4, sequence: 2, data: ByteBuffer(), end: true),
        .httpSendfile(connection: 5, sequence: 9, status: 206, headers: [.init(name: "Content-Type", value: "text/html")],
                      path: "/srv/www/index.html", device: 2049, inode: 1 << 40, offset: 100, length: 5_000_000_000),
    ]

    func testEveryMessageRoundTrips() throws {
        for message in samples {
            var buffer = ByteBuffer()
            IPCCodec.encode(message, into: &buffer)
            let decoded = try IPCCodec.decode(&buffer, maxFrameLength: 1 << 20)
            XCTAssertEqual(decoded, message)
            XCTAssertEqual(buffer.readableBytes, 0, "\(message) left bytes behind")
        }
    }

    func testFramesSplitAtEveryByteDecodeInOrder() throws {
        var stream = ByteBuffer()
        for message in samples { IPCCodec.encode(message, into: &stream) }
        let bytes = Array(stream.readableBytesView)
        var buffer = ByteBuffer()
        var decoded: [IPCMessage] = []
        for byte in bytes {
            buffer.writeInteger(byte)
            while let message = try IPCCodec.decode(&buffer, maxFrameLength: 1 << 20) {
                decoded.append(message)
            }
        }
        XCTAssertEqual(decoded, samples)
    }

    func testLargePayloadTravelsWhole() throws {
        let payload = ByteBuffer(repeating: 0xAB, count: 3 * 1024 * 1024)
        var buffer = ByteBuffer()
        IPCCodec.encode(.send(connection: 1, data: payload), into: &buffer)
        let decoded = try IPCCodec.decode(&buffer, maxFrameLength: 4 * 1024 * 1024)
        XCTAssertEqual(decoded, .send(connection: 1, data: payload))
    }

    func testOversizedFrameIsRejectedBeforeItIsBuffered() {
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt32(10 * 1024 * 1024))
        buffer.writeInteger(UInt8(6))
        XCTAssertThrowsError(try IPCCodec.decode(&buffer, maxFrameLength: 1024)) { error in
            XCTAssertEqual(error as? IPCCodec.DecodeError, .frameTooLong(10 * 1024 * 1024))
        }
    }

    func testGarbageIsAnErrorNotACrash() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            let length = Int.random(in: 0...64, using: &generator)
            var buffer = ByteBuffer()
            buffer.writeInteger(UInt32(length))
            buffer.writeBytes((0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) })
            // Must either decode something or throw; it must never trap.
            _ = try? IPCCodec.decode(&buffer, maxFrameLength: 1024)
        }
        var unknown = ByteBuffer()
        unknown.writeInteger(UInt32(1))
        unknown.writeInteger(UInt8(250))
        XCTAssertThrowsError(try IPCCodec.decode(&unknown, maxFrameLength: 1024))
        var short = ByteBuffer()
        short.writeInteger(UInt32(3))
        short.writeInteger(UInt8(3))
        short.writeInteger(UInt16(1))
        XCTAssertThrowsError(try IPCCodec.decode(&short, maxFrameLength: 1024))
    }

    // MARK: Found by fuzzing (Fuzz/, target ipc-codec)

    /// A decoded message must survive being encoded again (the master relays frames). An
    /// address of 255 bytes that are not UTF-8 was repaired on decoding into 765 bytes of
    /// U+FFFD, which re-encoding cut back to 255, so the message changed in transit. Such an
    /// address is malformed now.
    func testAnAddressThatIsNotUTF8IsMalformed() {
        var frame = ByteBuffer()
        frame.writeInteger(UInt32(265))  // tag, listener, address length, address, port, "data"
        frame.writeInteger(UInt8(5))  // packet
        frame.writeInteger(UInt16(1))
        frame.writeInteger(UInt8(255))
        frame.writeBytes([UInt8](repeating: 0xFF, count: 255))
        frame.writeInteger(UInt16(53))
        frame.writeString("data")
        XCTAssertThrowsError(try IPCCodec.decode(&frame, maxFrameLength: 1024)) { error in
            XCTAssertEqual(error as? IPCCodec.DecodeError, .malformed("address is not UTF-8"))
        }
    }

    /// The encoder cut an address longer than 255 bytes in the middle of a character, writing
    /// a frame that was not valid UTF-8; it cuts at a character boundary now.
    func testAnOverlongAddressIsCutAtACharacterBoundary() throws {
        let address = String(repeating: "a", count: 254) + "é" + "bc"  // "é" is bytes 254 and 255
        var buffer = ByteBuffer()
        IPCCodec.encode(.sendTo(listener: 0, address: address, port: 1, data: ByteBuffer(string: "x")), into: &buffer)
        let decoded = try IPCCodec.decode(&buffer, maxFrameLength: 1024)
        XCTAssertEqual(decoded, .sendTo(listener: 0, address: String(repeating: "a", count: 254), port: 1,
                                        data: ByteBuffer(string: "x")))
    }
}
