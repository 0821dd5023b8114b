// swift-tools-version:6.0
// The benchmark harness: a package of its own, so the main package (and its CI) never builds
// it. `run.sh` beside this file builds it in release mode and runs everything.
import PackageDescription

let package = Package(
    name: "SwoopBenchmarks",
    products: [
        .executable(name: "nio-baseline", targets: ["nio-baseline"]),
        .executable(name: "swoop-load", targets: ["swoop-load"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
    ],
    targets: [
        // The line framing both executables share, so server and client cut lines the same way.
        .target(
            name: "LineBench",
            dependencies: [.product(name: "NIOCore", package: "swift-nio")]
        ),
        .executableTarget(
            name: "nio-baseline",
            dependencies: [
                "LineBench",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "swoop-load",
            dependencies: [
                "LineBench",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
