// swift-tools-version: 6.2
import PackageDescription

let package = Package(
    name: "plane",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "plane", targets: ["plane"]),
        .library(name: "PlaneCore", targets: ["PlaneCore"]),
        .library(name: "NATS", targets: ["NATS"]),
        .library(name: "PlaneMessaging", targets: ["PlaneMessaging"]),
        .library(name: "ContainerRuntime", targets: ["ContainerRuntime"]),
        .library(name: "DockerRuntime", targets: ["DockerRuntime"]),
        .library(name: "OCIRuntime", targets: ["OCIRuntime"]),
        .library(name: "RuntimePluginKit", targets: ["RuntimePluginKit"]),
        .executable(name: "plane-runtime-process", targets: ["plane-runtime-process"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-distributed-tracing.git", from: "1.7.3"),
        // OTLP over HTTP only: the gRPC exporter would add grpc-swift to every build.
        .package(url: "https://github.com/swift-otel/swift-otel.git", from: "1.6.0", traits: ["OTLPHTTP"]),
    ],
    targets: [
        .target(
            name: "PlaneCore",
            dependencies: []
        ),
        .target(
            name: "PlaneMetrics",
            dependencies: [
                "PlaneCore",
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        .target(
            name: "NATS",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "PlaneMessaging",
            dependencies: [
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                "PlaneCore",
                "NATS",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "PlaneDNS",
            dependencies: [
                "PlaneHTTPServer",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "PlaneHTTPServer",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        .target(
            name: "PlaneController",
            dependencies: [
                "PlaneHTTPServer",
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                "PlaneMetrics",
                "PlaneCore",
                "NATS",
                "PlaneMessaging",
                "PlaneDNS",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        .target(
            name: "PlaneProxy",
            dependencies: [
                "PlaneHTTPServer",
                "PlaneMetrics",
                "PlaneCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "PlaneDrone",
            dependencies: [
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                "PlaneMetrics",
                "PlaneCore",
                "PlaneProxy",
                "PlaneACME",
                "NATS",
                "PlaneMessaging",
                "ContainerRuntime",
                "ProcessSupervision",
                "CLinux",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "PlaneACME",
            dependencies: [
                "PlaneMetrics",
                "PlaneCore",
                "NATS",
                "PlaneMessaging",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "ContainerRuntime",
            dependencies: [
                "PlaneCore",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "DockerRuntime",
            dependencies: [
                "ContainerRuntime",
                "PlaneCore",
                "ProcessSupervision",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CZstd", path: "Sources/CZstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CSeccomp", path: "Sources/CSeccomp", providers: [.apt(["libseccomp-dev"])]),
        .systemLibrary(name: "CLinux", path: "Sources/CLinux"),
        .target(
            name: "ProcessSupervision",
            dependencies: ["ContainerRuntime", "PlaneCore", "CLinux"]
        ),
        .target(
            name: "RuntimePluginProtocol",
            dependencies: ["ContainerRuntime", "PlaneCore", .product(name: "NIOCore", package: "swift-nio")]
        ),
        .target(
            name: "ExternalRuntime",
            dependencies: [
                "ContainerRuntime",
                "PlaneCore",
                "ProcessSupervision",
                "CLinux",
                "RuntimePluginProtocol",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "RuntimePluginKit",
            dependencies: [
                "ContainerRuntime",
                "PlaneCore",
                "RuntimePluginProtocol",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The reference runtime plugin (runtimes/process): built with the package so that
        // `swift build` puts it next to `plane`, where its runtime.toml finds it.
        .executableTarget(
            name: "plane-runtime-process",
            dependencies: ["RuntimePluginKit", "ContainerRuntime", "PlaneCore", "ProcessSupervision", "CSeccomp", "CLinux",
                           .product(name: "Logging", package: "swift-log")],
            path: "runtimes/process/Sources/plane-runtime-process"
        ),
        .target(
            name: "OCIRuntime",
            dependencies: [
                "ContainerRuntime",
                "PlaneCore",
                "ProcessSupervision",
                "CZlib",
                "CZstd",
                "CSeccomp",
                "CLinux",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            resources: [.embedInCode("Resources/default-seccomp.json")]
        ),
        .target(
            name: "ScriptedRuntime",
            dependencies: [
                "ContainerRuntime",
                "PlaneCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        .target(
            name: "RuntimeConformance",
            dependencies: [
                "ContainerRuntime",
                "PlaneCore",
                "PlaneTestSupport",
            ]
        ),
        .target(
            name: "PlaneCommands",
            dependencies: [
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "OTel", package: "swift-otel"),
                "PlaneMetrics",
                "PlaneCore",
                "NATS",
                "PlaneMessaging",
                "PlaneController",
                "PlaneDNS",
                "PlaneDrone",
                "PlaneProxy",
                "PlaneACME",
                "OCIRuntime",
                "ContainerRuntime",
                "DockerRuntime",
                "ExternalRuntime",
                "ImageBuilder",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "plane",
            dependencies: ["PlaneCommands"]
        ),
        .target(
            name: "PlaneTestSupport",
            dependencies: [
                "PlaneCore",
                "NATS",
                "ImageBuilder",
                "ProcessSupervision",
                "CLinux",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .target(name: "CTestServerSupport"),
        .executableTarget(
            name: "plane-test-server",
            dependencies: [
                "CTestServerSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
            ]
        ),
        .target(
            name: "ImageBuilder",
            dependencies: [.product(name: "Crypto", package: "swift-crypto")]
        ),
        .executableTarget(
            name: "plane-image-builder",
            dependencies: ["ImageBuilder"]
        ),
        .plugin(
            name: "BuildImage",
            capability: .command(
                intent: .custom(verb: "build-image", description: "Package an executable product into a container image (OCI layout and docker-load archive)."),
                permissions: [.writeToPackageDirectory(reason: "The image is written to .build/plane-images/<product>.")]
            ),
            dependencies: ["plane-image-builder"]
        ),
        .executableTarget(
            name: "plane-runtime-driver",
            dependencies: ["OCIRuntime", "ContainerRuntime", "PlaneCore", "PlaneTestSupport", .product(name: "Logging", package: "swift-log")]
        ),
        .executableTarget(
            name: "RuntimeBench",
            dependencies: ["DockerRuntime", "OCIRuntime", "ContainerRuntime", "PlaneCore", "PlaneMessaging", "NATS", "PlaneTestSupport",
                           .product(name: "Logging", package: "swift-log")]
        ),
        .executableTarget(
            name: "ProxyBench",
            dependencies: ["PlaneProxy", .product(name: "Logging", package: "swift-log"), .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio")]
        ),
        .executableTarget(
            name: "ControllerBench",
            dependencies: ["PlaneController", "PlaneCore", "PlaneDNS", "PlaneMessaging", "NATS", "PlaneTestSupport",
                           .product(name: "Logging", package: "swift-log")]
        ),
        .executableTarget(
            name: "NATSBench",
            dependencies: [
                "NATS",
                "PlaneTestSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // The parsers of outside bytes as fuzz targets (docs/security.md, "Fuzzing"), the
        // executable that runs them (libFuzzer in `make fuzz`; corpus replay otherwise), and
        // the tests that replay the corpus, crash reproducers included.
        .target(
            name: "PlaneFuzzTargets",
            dependencies: [
                "PlaneCore", "PlaneDNS", "PlaneProxy", "NATS", "OCIRuntime", "ContainerRuntime", "RuntimePluginProtocol", "PlaneCommands",
                "PlaneController", "PlaneACME", "DockerRuntime", "ImageBuilder", "PlaneTestSupport", "CZlib", "CZstd",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "plane-fuzz",
            dependencies: ["PlaneFuzzTargets"]
        ),
        .testTarget(
            name: "PlaneFuzzTests",
            dependencies: ["PlaneFuzzTargets", "PlaneTestSupport"]
        ),
        .testTarget(
            name: "PlaneCoreTests",
            dependencies: ["PlaneCore"],
            resources: [.copy("Fixtures")]
        ),
        .testTarget(
            name: "NATSTests",
            dependencies: [
                "NATS",
                "PlaneTestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "ContainerRuntimeTests",
            dependencies: ["ContainerRuntime", "PlaneCore", "ScriptedRuntime", "RuntimeConformance", "PlaneTestSupport"]
        ),
        .testTarget(
            name: "DockerRuntimeTests",
            dependencies: ["DockerRuntime", "ContainerRuntime", "ProcessSupervision", "CLinux", "RuntimeConformance", "PlaneTestSupport", "PlaneCore", "ImageBuilder", "plane-test-server", "plane-image-builder",
                           .product(name: "AsyncHTTPClient", package: "async-http-client"), .product(name: "NIOCore", package: "swift-nio")]
        ),
        .testTarget(
            name: "PlaneDNSTests",
            dependencies: ["PlaneDNS", "PlaneTestSupport", .product(name: "Logging", package: "swift-log")]
        ),
        .testTarget(
            name: "PlaneControllerTests",
            dependencies: ["PlaneMetrics", "PlaneController", "PlaneCore", "NATS", "PlaneMessaging", "PlaneDNS", "PlaneTestSupport",
                           .product(name: "Logging", package: "swift-log"), .product(name: "NIOPosix", package: "swift-nio")]
        ),
        .testTarget(
            name: "PlaneDroneTests",
            dependencies: ["PlaneDrone", "PlaneProxy", "PlaneCore", "ContainerRuntime", "DockerRuntime", "OCIRuntime", "ExternalRuntime", "ScriptedRuntime", "PlaneTestSupport", "NATS", "PlaneMessaging",
                           "plane", "plane-test-server", "plane-image-builder", "plane-runtime-process", .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                           .product(name: "Logging", package: "swift-log"), .product(name: "AsyncHTTPClient", package: "async-http-client")]
        ),
        .testTarget(
            name: "ImageBuilderTests",
            dependencies: ["ImageBuilder", "plane-image-builder", "plane-test-server", "PlaneTestSupport", "PlaneCore"]
        ),
        .testTarget(
            name: "PlaneTestServerTests",
            dependencies: ["plane-test-server", "PlaneTestSupport"]
        ),
        .testTarget(
            name: "PlaneCommandsTests",
            dependencies: ["PlaneMetrics", "PlaneCommands", "NATS", "PlaneTestSupport", "PlaneController", "PlaneCore", "PlaneDNS", "PlaneDrone", "PlaneACME", "PlaneProxy", "plane"],
            exclude: ["python"]
        ),
        .testTarget(
            name: "PlaneProxyTests",
            dependencies: ["PlaneMetrics", "PlaneProxy", "PlaneHTTPServer", "PlaneCore", "PlaneTestSupport", "PlaneFuzzTargets", "plane-test-server",
                           .product(name: "NIOHTTP1", package: "swift-nio"), .product(name: "NIOEmbedded", package: "swift-nio"),
                           .product(name: "Logging", package: "swift-log")],
            exclude: ["python"]
        ),
        .testTarget(
            name: "ExternalRuntimeTests",
            dependencies: ["ExternalRuntime", "RuntimePluginProtocol", "RuntimePluginKit", "ContainerRuntime", "PlaneCore", "PlaneTestSupport", "RuntimeConformance",
                           "plane-runtime-process", "plane-test-server", .product(name: "Logging", package: "swift-log")],
            exclude: ["plugins"]
        ),
        .testTarget(
            name: "OCIRuntimeTests",
            dependencies: ["OCIRuntime", "ContainerRuntime", "ProcessSupervision", "CZstd", "CLinux", "ImageBuilder", "PlaneCore", "PlaneTestSupport", "RuntimeConformance", "plane", "plane-test-server",
                           "plane-runtime-driver"]
        ),
        .testTarget(
            name: "PlaneACMETests",
            dependencies: ["PlaneMetrics", "PlaneACME", "PlaneCore", "NATS", "PlaneMessaging", "PlaneController", "PlaneDNS", "PlaneProxy", "PlaneTestSupport", "plane",
                           .product(name: "Crypto", package: "swift-crypto"), .product(name: "X509", package: "swift-certificates"),
                           .product(name: "Logging", package: "swift-log")]
        ),
        .testTarget(
            name: "PlaneMessagingTests",
            dependencies: ["PlaneMessaging", "PlaneCore", "NATS", "PlaneTestSupport", .product(name: "Logging", package: "swift-log")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
