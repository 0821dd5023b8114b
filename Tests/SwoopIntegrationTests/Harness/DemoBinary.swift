import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Finds the executables (`swoop-demo`, `swoop-fixture`) that `swift test` built next to the
/// test bundle.
enum DemoBinary {
    /// The environment variable that overrides the search with an explicit path.
    static let overrideVariable = "SWOOP_DEMO_BINARY"

    /// The executable's path, or an error that lists every place that was searched.
    /// Computed once per test run.
    static func path(_ name: String = "swoop-demo") throws -> String {
        try locate(name).get()
    }

    private static func isExecutable(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG && access(path, X_OK) == 0
    }

    private static func locate(_ name: String, filePath: String = #filePath) -> Result<String, HarnessError> {
        if name == "swoop-demo", let explicit = ProcessInfo.processInfo.environment[overrideVariable], !explicit.isEmpty {
            return isExecutable(explicit)
                ? .success(explicit)
                : .failure(HarnessError("\(overrideVariable)=\(explicit) is not an executable file"))
        }

        // The products directory (".build/debug", ".build/x86_64-unknown-linux-gnu/debug", ...)
        // holds both the test bundle and the executables of the package. On Linux the
        // bundle is itself an executable in that directory; where it is a directory bundle
        // (X.xctest/Contents/MacOS/X) walk up out of it to the products directory.
        var starts: [URL] = []
        if let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            starts.append(URL(fileURLWithPath: exe).deletingLastPathComponent())
        }
        starts.append(Bundle.main.bundleURL)
        starts.append(Bundle.main.bundleURL.deletingLastPathComponent())
        if let arg0 = CommandLine.arguments.first, arg0.contains("/") {
            starts.append(URL(fileURLWithPath: arg0).deletingLastPathComponent())
        }

        var searched: [String] = []
        for start in starts {
            var dir = start.standardizedFileURL
            while true {
                let candidate = dir.appendingPathComponent(name).path
                if !searched.contains(candidate) {
                    searched.append(candidate)
                    if isExecutable(candidate) { return .success(candidate) }
                }
                guard dir.path.contains(".xctest"), dir.path != "/" else { break }
                dir = dir.deletingLastPathComponent()
            }
        }

        // Fallback: <package root>/.build/debug/swoop-demo, the root being the first
        // ancestor of this source file that holds a Package.swift.
        var dir = URL(fileURLWithPath: filePath).deletingLastPathComponent()
        while dir.path != "/" {
            if FileManager.default.fileExists(atPath: dir.appendingPathComponent("Package.swift").path) {
                let candidate = dir.appendingPathComponent(".build/debug/\(name)").path
                searched.append(candidate)
                if isExecutable(candidate) { return .success(candidate) }
                break
            }
            dir = dir.deletingLastPathComponent()
        }

        return .failure(HarnessError(
            "\(name) executable not found (set \(overrideVariable) to override). Searched:\n  "
                + searched.joined(separator: "\n  ")
        ))
    }
}
