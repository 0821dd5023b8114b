import XCTest
@testable import Swoop

final class SettingsTests: XCTestCase {
    private func assertInvalid(_ name: String, _ change: (inout ServerSettings) -> Void,
                               file: StaticString = #filePath, line: UInt = #line) {
        var settings = ServerSettings()
        change(&settings)
        XCTAssertThrowsError(try settings.validate(), file: file, line: line) { error in
            guard case let ServerError.invalidSetting(named, _)? = error as? ServerError else {
                return XCTFail("expected invalidSetting, got \(error)", file: file, line: line)
            }
            XCTAssertEqual(named, name, file: file, line: line)
        }
    }

    func testDefaultsAreValidAndFollowSwoole() throws {
        let settings = ServerSettings()
        XCTAssertNoThrow(try settings.validate())
        XCTAssertEqual(settings.workerNum, System.coreCount)
        XCTAssertEqual(settings.reactorNum, System.coreCount)
        XCTAssertEqual(settings.taskWorkerNum, 0)
        XCTAssertEqual(settings.dispatchMode.description, DispatchMode.fixed.description)
        XCTAssertEqual(settings.protocol.packageMaxLength, 2 * 1024 * 1024)
        XCTAssertEqual(settings.maxWaitTime, 3)
    }

    func testEachInvalidSettingIsNamed() {
        assertInvalid("workerNum") { $0.workerNum = 0 }
        assertInvalid("reactorNum") { $0.reactorNum = 0 }
        assertInvalid("taskWorkerNum") { $0.taskWorkerNum = -1 }
        assertInvalid("maxRequest") { $0.maxRequest = -5 }
        assertInvalid("maxWaitTime") { $0.maxWaitTime = 0 }
        assertInvalid("taskQueueLimit") { $0.taskQueueLimit = 0 }
        assertInvalid("protocol.openHTTPProtocol") {
            $0.protocol.openHTTPProtocol = true
            $0.protocol.openEOFSplit = true
        }
        assertInvalid("protocol.httpHeaderTimeout") { $0.protocol.httpHeaderTimeout = 0 }
        assertInvalid("protocol.httpBodyTimeout") { $0.protocol.httpBodyTimeout = -1 }
        assertInvalid("protocol.httpResponseTimeout") { $0.protocol.httpResponseTimeout = .nan }
        assertInvalid("protocol.httpCompressionMinLength") { $0.protocol.httpCompressionMinLength = -1 }
        assertInvalid("protocol.documentRoot") { $0.protocol.enableStaticHandler = true }
        assertInvalid("protocol.documentRoot") {
            $0.protocol.enableStaticHandler = true
            $0.protocol.documentRoot = "/nonexistent/swoop-root"
        }
        assertInvalid("bufferOutputSize") { $0.bufferOutputSize = 0 }
        assertInvalid("protocol.packageEOF") {
            $0.protocol.openEOFSplit = true
            $0.protocol.packageEOF = []
        }
        assertInvalid("protocol.packageEOF") {
            $0.protocol.openEOFSplit = true
            $0.protocol.packageEOF = Array("123456789".utf8)
        }
        assertInvalid("protocol.openEOFSplit") {
            $0.protocol.openEOFSplit = true
            $0.protocol.openLengthCheck = true
        }
        assertInvalid("protocol.packageBodyOffset") {
            $0.protocol.openLengthCheck = true
            $0.protocol.packageLengthOffset = 2
            $0.protocol.packageBodyOffset = 4
        }
        assertInvalid("protocol.packageMaxLength") { $0.protocol.packageMaxLength = 0 }
    }

    func testHeartbeatIntervalDerivesFromIdleTimeAsInSwoole() {
        var settings = ServerSettings()
        XCTAssertEqual(settings.effectiveHeartbeatInterval, 0)
        settings.protocol.heartbeatIdleTime = 10
        XCTAssertEqual(settings.effectiveHeartbeatInterval, 5)
        settings.heartbeatCheckInterval = 2
        XCTAssertEqual(settings.effectiveHeartbeatInterval, 2)
    }

    func testSwooleDispatchNumbers() {
        XCTAssertEqual(DispatchMode(swooleMode: 1)?.description, DispatchMode.roundRobin.description)
        XCTAssertEqual(DispatchMode(swooleMode: 3)?.description, DispatchMode.preemptive.description)
        XCTAssertEqual(DispatchMode(swooleMode: 4)?.description, DispatchMode.ipHash.description)
        XCTAssertNil(DispatchMode(swooleMode: 7))
    }
}
