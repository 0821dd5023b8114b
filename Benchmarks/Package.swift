// swift-tools-version:6.0
// The benchmark harness: a package of its own, so the main package (and its CI) never builds
// it. `run.sh` beside this file builds it in release mode and runs everything.
import PackageDescription

let package = Package(
    name: "SwoopBenchmarks",
    products: [
        .executable(name: "nio-baseline", targets: ["nio-baseline"]),
        .executable(name: "swoop-load", targets: ["swoop-load"]),
        .executable(name: "c-ceiling", targets: ["c-ceiling"]),
        .executable(name: "swift-epoll", targets: ["swift-epoll"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
    ],
    targets: [
        // The yardstick: a plain SwiftNIO server (line protocol, or HTTP/1.1).
        .executableTarget(
            name: "nio-baseline",
            dependencies: [
                "BenchSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // The load generator: raw epoll, so that it spends less CPU per request than the
        // servers it drives and they, not it, set the pace.
        .executableTarget(
            name: "swoop-load",
            dependencies: [
                "CEpoll",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // What the servers share: their ready line, written unbuffered.
        .target(name: "BenchSupport"),
        // <sys/epoll.h>, which Glibc's module does not export.
        .target(name: "CEpoll"),
        // The ceiling: a bare C epoll server speaking nio-baseline's protocols byte for byte,
        // so that the run shows the load generator's limit on this machine.
        .executableTarget(
            name: "c-ceiling",
            linkerSettings: [.linkedLibrary("pthread")]
        ),
        // c-ceiling's design in Swift: raw epoll, and for HTTP llhttp as NIOHTTP1 vendors it
        // (CNIOLLHTTP, reached through the NIOHTTP1 product), with or without async handlers.
        .executableTarget(
            name: "swift-epoll",
            dependencies: [
                "BenchSupport",
                "CEpoll",
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
