// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "Swoop",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "Swoop", targets: ["Swoop"]),
        .executable(name: "swoop-demo", targets: ["swoop-demo"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-atomics.git", from: "1.3.0"),
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
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Atomics", package: "swift-atomics"),
            ]
        ),
        .executableTarget(
            name: "swoop-demo",
            dependencies: [
                "Swoop",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
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
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "SwoopIntegrationTests",
            dependencies: ["swoop-demo", "swoop-fixture"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
