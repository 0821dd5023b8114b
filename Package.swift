// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "Swoop",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "Swoop", targets: ["Swoop"]),
        .library(name: "SwoopControl", targets: ["SwoopControl"]),
        .executable(name: "swoop-demo", targets: ["swoop-demo"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-atomics.git", from: "1.3.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
    ],
    targets: [
        .target(name: "CSwoop"),
        .target(
            name: "Swoop",
            dependencies: [
                "CSwoop",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                // Also for the C modules they bring: llhttp (CNIOLLHTTP), which HTTPRequestParser
                // drives, and zlib (CNIOExtrasZlib), which ResponseCompressor drives.
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOHTTPCompression", package: "swift-nio-extras"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Atomics", package: "swift-atomics"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
        // The start/stop/reload/status commands, for programs that want them.
        .target(
            name: "SwoopControl",
            dependencies: [
                "Swoop",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "swoop-demo",
            dependencies: [
                "Swoop",
                "SwoopControl",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "swoop-fixture",
            dependencies: [
                "Swoop",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(
            name: "SwoopTests",
            dependencies: [
                "Swoop",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
        .testTarget(
            name: "SwoopIntegrationTests",
            dependencies: ["swoop-demo", "swoop-fixture"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
