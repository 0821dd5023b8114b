// Seed inputs for each target, made from Swoop's own encoders so they follow the formats as
// they are now. `Fuzz/run.sh` has each fuzzer write them (SWOOP_FUZZ_SEEDS=dir) before it
// fuzzes; libFuzzer mutates from there instead of from nothing.

import Foundation
import NIOCore

public enum FuzzSeeds {
    /// Writes the seeds of `target` into `directory`, one file each.
    public static func write(_ target: String, to directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        for (index, seed) in try seeds(for: target).enumerated() {
            let path = "\(directory)/seed-\(index)"
            guard FileManager.default.createFile(atPath: path, contents: Data(seed)) else {
                throw CocoaError(.fileWriteUnknown)
            }
        }
    }

    /// When SWOOP_FUZZ_SEEDS names a directory: writes the seeds there and exits. Called from
    /// each target's LLVMFuzzerInitialize, before libFuzzer reads its corpus.
    public static func writeIfAsked(_ target: String) {
        guard let directory = ProcessInfo.processInfo.environment["SWOOP_FUZZ_SEEDS"], !directory.isEmpty else { return }
        do {
            try write(target, to: directory)
            exit(0)
        } catch {
            FileHandle.standardError.write(Data("cannot write the seeds of \(target) to \(directory): \(error)\n".utf8))
            exit(1)
        }
    }

    static func seeds(for target: String) throws -> [[UInt8]] {
        switch target {
        case "eof-framer": return eofFramer
        case "length-framer": return lengthFramer
        case "ipc-codec": return ipcCodec
        case "binary-decoder": return try binaryDecoder()
        case "http-request": return httpRequest
        default: throw CocoaError(.fileNoSuchFile)
        }
    }

    private static func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    static var eofFramer: [[UInt8]] {
        [
            // terminator length 2, maxLength 33, small cuts
            [0x01, 0x20, 2, 7] + bytes("\r\n") + bytes("ping\r\necho hello\r\n\r\nwhoami\r\npartial"),
            // terminator length 1, maxLength 384, any cuts
            [0x00, 0x85, 3, 1] + bytes("\n") + bytes("a\nbb\n\nccc\n" + String(repeating: "x", count: 400) + "\n"),
            // terminator length 4, maxLength 16, byte by byte
            [0x03, 0x0F, 1, 0] + bytes("\r\n\r\n") + bytes("GET / HTTP/1.1\r\n\r\nHost: a\r\n\r\n\r\n"),
            // overlapping terminator "aaa"
            [0x02, 0x07, 2, 3] + bytes("aaa") + bytes("baaaaab aaaa aaa"),
        ]
    }

    static var lengthFramer: [[UInt8]] {
        func frame(_ body: String) -> [UInt8] {
            let count = UInt32(body.utf8.count)
            return [UInt8(count >> 24), UInt8(count >> 16 & 0xFF), UInt8(count >> 8 & 0xFF), UInt8(count & 0xFF)] + bytes(body)
        }
        let uint32BE = UInt8(PackageLengthType.allCases.firstIndex(of: .uint32BE)!)
        let uint16LE = UInt8(PackageLengthType.allCases.firstIndex(of: .uint16LE)!)
        let int8 = UInt8(PackageLengthType.allCases.firstIndex(of: .int8)!)
        return [
            [uint32BE, 0, 4, 0x04, 0x00, 2, 5] + frame("hello") + frame("") + frame("world, again") + [0, 0, 1],
            // Swoole's usual header: 2 bytes of type, then the length (little endian, whole packet)
            [uint16LE, 2, 0, 0x01, 0x00, 3, 9] + [7, 7, 8, 0] + bytes("abcd") + [1, 1, 6, 0] + bytes("xy"),
            [int8, 0, 1, 0x00, 0x40, 1, 0] + [3] + bytes("abc") + [0xFF],
            [uint32BE, 0, 4, 0x00, 0x10, 0, 0] + [0x7F, 0xFF, 0xFF, 0xFF],
        ]
    }

    static var sampleMessages: [IPCMessage] {
        let head = HTTPWireHead(method: "POST", target: "/a/b?x=1&y=%20", versionMajor: 1, versionMinor: 1,
                                headers: [HTTPWirePair(name: "Host", value: "example"),
                                          HTTPWirePair(name: "Cookie", value: "a=1; b=\"two\"")])
        return [
            .hello(role: .worker, workerId: 3, generation: 7, pid: 4242, token: 0xDEAD_BEEF),
            .connect(connection: 1 << 40, reactor: 3, listener: 2),
            .receive(connection: 99, reactor: 1, data: ByteBuffer(string: "ping\n")),
            .close(connection: 5, reactor: 1, byServer: true),
            .packet(listener: 1, address: "127.0.0.1", port: 65535, data: ByteBuffer(string: "whoami")),
            .send(connection: 7, data: ByteBuffer(string: "pong\n")),
            .sendTo(listener: 1, address: "::1", port: 53, data: ByteBuffer(string: "x")),
            .closeConnection(connection: 8, reset: true),
            .done(connections: [12, 0, 1 << 50]),
            .pipeMessage(from: 0, to: 5, data: ByteBuffer(string: "relay")),
            .request(id: 77, query: .clientInfo, argument: 123),
            .response(id: 77, data: ByteBuffer(string: "{}")),
            .stopping,
            .workerReady(workerId: 2, generation: 9, pid: 31337),
            .reload(taskWorkersOnly: true),
            .shutdown,
            .task(id: 7, source: 1, target: -1, data: ByteBuffer(string: "job")),
            .taskResult(id: 9, source: 0, status: .failed, data: ByteBuffer(string: "boom")),
            .recycle(workerId: 3, generation: 12),
            .activate(workerId: 1, generation: 2),
            .reloadDone(succeeded: false),
            .httpRequest(connection: 1 << 33, reactor: 2, sequence: 4, head: head, body: ByteBuffer(string: "a=b")),
            .httpResponse(connection: 3, sequence: 4, status: 404, headers: head.headers, body: ByteBuffer(string: "no"), end: false),
            .httpBody(connection: 3, sequence: 4, data: ByteBuffer(string: "more"), end: true),
            .httpSendfile(connection: 3, sequence: 5, status: 200, headers: [], path: "/tmp/x", device: 1, inode: 2,
                          offset: 3, length: 4),
        ]
    }

    static var ipcCodec: [[UInt8]] {
        var seeds: [[UInt8]] = []
        var all = ByteBuffer()
        for (index, message) in sampleMessages.enumerated() {
            var frame = ByteBuffer()
            IPCCodec.encode(message, into: &frame)
            all.writeImmutableBuffer(frame)
            seeds.append([0, UInt8(index % 4), UInt8(index)] + Array(frame.readableBytesView))
        }
        seeds.append([0, 2, 42] + Array(all.readableBytesView))
        // A packet whose 255-byte address is not UTF-8 (the first finding, see IPCCodecTests).
        var packet = ByteBuffer()
        let invalidAddress = [UInt8](repeating: 0xFF, count: 255)
        packet.writeInteger(UInt32(262))
        packet.writeBytes([5, 0, 1, 255] as [UInt8])
        packet.writeBytes(invalidAddress)
        packet.writeBytes([0, 53, 0x78] as [UInt8])
        seeds.append([0, 0, 0] + Array(packet.readableBytesView))
        seeds.append([1, 3, 5] + Array(all.readableBytesView))
        return seeds
    }

    static func binaryDecoder() throws -> [[UInt8]] {
        let record = FuzzRecord(
            id: 42, name: "résumé", tags: ["a", "bb"], scores: ["x": 1.5, "y": -0.0], byNumber: [1: "one", -7: "minus"],
            maybe: nil, twice: .some(nil), data: Data([0, 1, 2]), bytes: [9, 8], date: Date(timeIntervalSinceReferenceDate: 1.25),
            url: URL(string: "https://example.com/a?b=c"), uuid: UUID(uuidString: "E621E1F8-C36C-495A-93FC-0C247A3E6E5F")!,
            big: Int128(Int64.min) * 4, ubig: UInt128(UInt64.max) + 1, kind: .named("n", weight: 0.5), set: [1, 2, 3],
            children: [FuzzRecord(id: 1, name: "", tags: [], scores: [:], byNumber: [:], maybe: 3, twice: 4, data: Data(),
                                  bytes: [], date: Date(timeIntervalSinceReferenceDate: 0), url: nil,
                                  uuid: UUID(uuid: (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)), big: 0, ubig: 0,
                                  kind: .pair(1, [-1]), set: [], children: nil)])
        let scalars = FuzzScalars(int: -1, int8: .min, int16: 300, int32: -70_000, int64: .max, uint: 1, uint8: 255,
                                  uint16: 128, uint32: 16_384, uint64: 1 << 63, bool: true, float: .nan, double: -0.1,
                                  string: "héllo 🚀")
        let tree = FuzzTree.node(.leaf(1), .list([.leaf(2), .node(.leaf(3), .leaf(-4))]))
        let manual = FuzzManual(fields: ["a": 1, "b": -2], matrix: [[1, nil], [], [2.5]], flag: nil)
        let derived = FuzzDerived(serial: 7, label: "derived", weights: [1, 2.5])
        var encoder = BinaryEncoder()
        var seeds: [[UInt8]] = []
        for embedsName in [false, true] {
            encoder.embedsTypeName = embedsName
            let options: UInt8 = embedsName ? 1 : 0
            let payloads: [(UInt8, ByteBuffer)] = [
                (0, try encoder.encode(record)),
                (1, try encoder.encode(scalars)),
                (2, try encoder.encode(tree)),
                (3, try encoder.encode(manual)),
                (4, try encoder.encode(derived)),
                (5, try encoder.encode(["k": [1, 2], "": []])),
                (6, try encoder.encode([3: FuzzKind.code(5), -1: .none])),
                (7, try encoder.encode([record, nil] as [FuzzRecord?])),
                (8, try encoder.encode("text" as String?)),
                (9, try encoder.encode([Data([1]), Data()])),
                (10, try encoder.encode(Int???.some(.some(nil)))),
                (11, try encoder.encode([UUID(uuid: (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16)): [URL(string: "file:///tmp")!]])),
            ]
            for (type, payload) in payloads {
                seeds.append([type, options] + Array(payload.readableBytesView))
            }
        }
        return seeds
    }

    static var httpRequest: [[UInt8]] {
        let requests = [
            "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET /search?q=swoop&page=2&q=%41+b HTTP/1.1\r\nHost: a\r\nCookie: s=1; t=\"x y\"; s=2\r\n\r\n"
                + "GET /next HTTP/1.1\r\nHost: a\r\n\r\nHEAD /h HTTP/1.1\r\nHost: a\r\n\r\n",
            "POST /form HTTP/1.1\r\nHost: a\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 13\r\n\r\n"
                + "a=1&b=%20c&=x",
            "POST /chunked HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            "PUT /big HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 70\r\n\r\n"
                + String(repeating: "z", count: 70),
            "GET /old HTTP/1.0\r\n\r\n",
            "GET /keep HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /x HTTP/1.1\r\nConnection: close\r\n\r\n",
            "GET /a.txt HTTP/1.1\r\nHost: a\r\nRange: bytes=2-5\r\n\r\nGET /sub/ HTTP/1.1\r\nHost: a\r\n\r\n"
                + "GET /%2e%2e/secret.txt HTTP/1.1\r\n\r\nGET /out.txt HTTP/1.1\r\n\r\nGET /up/secret.txt HTTP/1.1\r\n\r\n"
                + "HEAD /inside.txt HTTP/1.1\r\nIf-None-Match: *\r\n\r\nGET /empty.json HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nAccept-Encoding: gzip, deflate\r\n\r\n",
            "BREW /pot HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET /\u{0} HTTP/1.1\r\n\r\n",
            // Garbage, alone and behind a request, with compression on: the 400 must not pass
            // the compressor, which has no request to pair it with.
            "NOT HTTP\u{d0}\r\n\r\n",
            "GET / HTTP/1.1\r\nAccept-Encoding: gzip\r\n\r\nNOT HTTP\r\n\r\n",
        ]
        var seeds: [[UInt8]] = []
        for (index, request) in requests.enumerated() {
            // Options: static files on for the file requests, compression for one, the
            // default limits elsewhere; cuts of every kind.
            var options: UInt8 = 2 << 1  // 64 KiB bodies
            if request.contains("a.txt") { options |= 8 }
            if request.contains("gzip") || request.hasPrefix("NOT") { options |= 1 }
            if index == 4 { options = 0 }  // 64-byte bodies: the 413 path
            if index == 5 { options |= 16 }  // the clock jumps
            if index == 6 { options |= 32 }  // half-close
            seeds.append([options, UInt8(index % 4), UInt8(index), UInt8(index * 7)] + bytes(request))
        }
        return seeds
    }
}
