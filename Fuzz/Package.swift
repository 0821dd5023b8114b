// swift-tools-version:6.0
//
// libFuzzer targets for Swoop's parsers of untrusted bytes. A package of its own, so the root
// package's `swift build` / `swift test` neither build nor see it; `Fuzz/run.sh` builds it
// with `--sanitize=fuzzer --sanitize=address` into `.build-fuzz`.
//
// The targets need Swoop's internal types (the framers' internals, `IPCCodec`, the binary
// coder, `HTTPSession`), so `SwoopFuzzKit` compiles Swoop's own sources, reached through the
// symlinks `Sources/SwoopFuzzKit/Swoop -> ../../../Sources/Swoop` and
// `Sources/CSwoop -> ../../Sources/CSwoop`, together with the harnesses in `Harness/`, as one
// module. Nothing is copied and nothing in the root package is marked for testing; a file
// added to Swoop is picked up here as it is.
import PackageDescription

let fuzzTargets = ["eof-framer", "length-framer", "ipc-codec", "binary-decoder", "http-request"]

let package = Package(
    name: "SwoopFuzz",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-atomics.git", from: "1.3.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
    ],
    targets: [
        .target(name: "CSwoop"),
        .target(
            name: "SwoopFuzzKit",
            dependencies: [
                "CSwoop",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOHTTPCompression", package: "swift-nio-extras"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Atomics", package: "swift-atomics"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
    ] + fuzzTargets.map { name in
        // One executable per target: libFuzzer supplies `main`, the target only
        // `LLVMFuzzerTestOneInput`.
        .executableTarget(name: "fuzz-\(name)", dependencies: ["SwoopFuzzKit"], path: "Targets/\(name)")
    },
    swiftLanguageModes: [.v6]
)
