import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Hot reload of rebuilt code, for real: a small package that depends on Swoop is built,
/// started and connected to; its source is changed and rebuilt; SIGUSR1 makes new workers
/// run the new executable while the master keeps the connection, which then gets the new
/// reply. A build whose workers cannot start is rolled back and the old code keeps serving.
final class HotReloadTests: SwoopTestCase {
    /// The package root (this file is Tests/SwoopIntegrationTests/HotReloadTests.swift).
    private let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    private func appSource(reply: String, crashOnStart: Bool) -> String {
        """
        import Foundation
        import Swoop

        // The harness passes --host, --port and --log-file.
        var options: [String: String] = [:]
        var arguments = CommandLine.arguments.dropFirst()
        while let key = arguments.popFirst() {
            if key.hasPrefix("--"), let value = arguments.popFirst() { options[String(key.dropFirst(2))] = value }
        }
        var settings = ServerSettings()
        settings.workerNum = 2
        settings.reactorNum = 1
        settings.workerStartTimeout = 20
        settings.logFile = options["log-file"]
        settings.protocol.openEOFSplit = true
        settings.protocol.packageEOF = Array("\\n".utf8)
        let server = Server(host: options["host"] ?? "127.0.0.1", port: Int(options["port"] ?? "0") ?? 0, settings: settings)
        server.onStart { server in
            FileHandle.standardOutput.write(Data("hotapp ready master=\\(server.masterPid) manager=\\(server.managerPid) port=\\(server.ports[0]) udp-port=0 http-port=0\\n".utf8))
        }
        server.onWorkerStart { _, _ in
            if \(crashOnStart) { abort() }
        }
        server.onReceive { server, connection, _, _ in
            try server.send(connection, "\(reply) pid=\\(server.workerPid)\\n")
        }
        try server.start()
        """
    }

    private func write(_ text: String, to path: String) throws {
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent,
                                                withIntermediateDirectories: true)
        try text.write(toFile: path, atomically: true, encoding: .utf8)
    }

    /// Builds the app; returns the executable's path.
    private func build(_ package: String, scratch: String) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["swift", "build", "--package-path", package, "--scratch-path", scratch, "--product", "hotapp"]
        let logPath = package + "/build.log"
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        defer { try? log.close() }
        process.standardOutput = log
        process.standardError = log
        try process.run()
        let deadline = Date().addingTimeInterval(900)
        while process.isRunning {
            if Date() > deadline {
                process.terminate()
                throw HarnessError("swift build did not finish in 15 minutes")
            }
            Thread.sleep(forTimeInterval: 0.2)
        }
        guard process.terminationStatus == 0 else {
            let output = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
            throw HarnessError("swift build failed:\n\(output.suffix(4000))")
        }
        return scratch + "/debug/hotapp"
    }

    func testRebuiltCodeServesTheSameConnectionAfterReloadAndAFailedBuildRollsBack() throws {
        let package = NSTemporaryDirectory() + "swoop-hotapp-\(getpid())-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: package) }
        // Kept between runs (it is ignored by git) so that only the first run builds SwiftNIO.
        let scratch = root.path + "/.build-hotreload"
        let manifest = """
            // swift-tools-version:6.0
            import PackageDescription
            let package = Package(
                name: "hotapp",
                dependencies: [.package(path: "\(root.path)")],
                targets: [.executableTarget(name: "hotapp", dependencies: [.product(name: "Swoop", package: "\(root.lastPathComponent)")])],
                swiftLanguageModes: [.v6]
            )
            """
        try write(manifest, to: package + "/Package.swift")
        let source = package + "/Sources/hotapp/main.swift"
        try write(appSource(reply: "version one", crashOnStart: false), to: source)
        let binary = try build(package, scratch: scratch)

        let server = try startServer([], timeout: 30, program: "hotapp", binary: binary)
        let client = try connect(server)
        XCTAssertTrue(try client.request("hello").hasPrefix("version one "))
        let firstWorkers = Set(server.processTree().filter { $0.title.contains(": worker ") }.map(\.pid))
        XCTAssertEqual(firstWorkers.count, 2)

        // Change the code, rebuild: the file on disk is replaced; the running tree is not.
        try write(appSource(reply: "version two", crashOnStart: false), to: source)
        _ = try build(package, scratch: scratch)
        XCTAssertTrue(try client.request("still").hasPrefix("version one "), "nothing changes before the reload")
        try server.signal(SIGUSR1)
        try eventually("the new workers took over", timeout: 20) {
            server.readLog().contains { $0.contains("reload complete") }
        }
        XCTAssertTrue(try client.request("hello again").hasPrefix("version two "),
                      "the connection opened before the reload is served by the new code")
        let master = server.processTree().first { $0.pid == server.masterPid }
        XCTAssertNotNil(master, "the master (and its code) stays")

        // A build whose workers cannot start: the reload is rolled back, the old code serves on.
        try write(appSource(reply: "version three", crashOnStart: true), to: source)
        _ = try build(package, scratch: scratch)
        try server.signal(SIGUSR1)
        try eventually("the reload was rolled back", timeout: 20) {
            server.readLog().contains { $0.contains("reload rolled back") }
        }
        XCTAssertTrue(try client.request("after rollback").hasPrefix("version two "))
    }
}
