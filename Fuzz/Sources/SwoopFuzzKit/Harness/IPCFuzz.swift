// Fuzz harness for the IPC frame decoder (`IPCCodec`, `IPCFrameReader`).
//
// An arbitrary byte stream, cut into arbitrary reads, goes through `IPCFrameReader`, as on
// every IPC socket of the master and the workers. It must give the same messages and the same error as `IPCCodec.decode` over the
// whole stream at once. Each decoded message, re-encoded, must decode to an equal message,
// in exactly the bytes of its frame.

import NIOCore

public enum IPCFuzz {
    /// Input: [options] [chunk mode] [chunk seed] stream…
    /// options bit 0: a small frame limit (64 bytes) instead of 1 MiB.
    public static func decoder(_ data: UnsafeRawBufferPointer) {
        var input = FuzzInput(data)
        let options = input.byte()
        let maxFrameLength = options & 1 == 0 ? 1 << 20 : 64
        let chunking = Chunking(&input)
        let stream = input.rest()

        // The reference: the whole stream in one buffer.
        var whole = ByteBuffer(bytes: stream)
        var expected: [IPCMessage] = []
        var expectedError: IPCCodec.DecodeError?
        do {
            while let message = try IPCCodec.decode(&whole, maxFrameLength: maxFrameLength) {
                expected.append(message)
                fuzzCheck(expected.count <= stream.count / 5, "more messages than 5-byte frames in the stream")
            }
        } catch let error as IPCCodec.DecodeError {
            expectedError = error
        } catch {
            fuzzFail("IPCCodec.decode threw \(error)")
        }

        // The real path: reads of any size through the frame reader.
        var reader = IPCFrameReader(maxFrameLength: maxFrameLength)
        var received: [IPCMessage] = []
        var receivedError: IPCCodec.DecodeError?
        for chunk in chunking.split(stream) {
            do {
                try reader.read(ByteBuffer(bytes: chunk)) { received.append($0) }
            } catch let error as IPCCodec.DecodeError {
                receivedError = error
                break
            } catch {
                fuzzFail("IPCFrameReader threw \(error)")
            }
        }

        fuzzCheck(received == expected,
                  "\(chunking): \(received.count) messages through the reader, \(expected.count) in one piece")
        fuzzCheck(receivedError == expectedError,
                  "\(chunking): error \(String(describing: receivedError)), in one piece \(String(describing: expectedError))")

        for message in expected {
            checkRoundTrip(message)
        }
    }

    /// A decoded message re-encodes to one frame that decodes to an equal message.
    static func checkRoundTrip(_ message: IPCMessage) {
        var frame = ByteBuffer()
        IPCCodec.encode(message, into: &frame)
        let length = frame.readableBytes
        fuzzCheck(Int(frame.getInteger(at: frame.readerIndex, as: UInt32.self)!) == length - IPCCodec.headerSize,
                  "the length prefix of a re-encoded \(message) does not count its frame")
        do {
            guard let again = try IPCCodec.decode(&frame, maxFrameLength: Int(UInt32.max)) else {
                fuzzFail("a re-encoded \(message) is not a whole frame")
            }
            fuzzCheck(again == message, "re-encoded \(message) decodes as \(again)")
            fuzzCheck(frame.readableBytes == 0, "re-encoded \(message) leaves \(frame.readableBytes) bytes")
        } catch {
            fuzzFail("re-encoded \(message) does not decode: \(error)")
        }
    }
}
