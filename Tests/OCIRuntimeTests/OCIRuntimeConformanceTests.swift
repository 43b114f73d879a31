import ContainerRuntime
import Foundation
import Logging
@testable import OCIRuntime
import PlaneCore
import PlaneTestSupport
import RuntimeConformance
import Testing

/// The runtime under test: runc or crun, with the test server image from a local OCI
/// layout or from the real docker-registry.
enum OCIVariant: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case runcLayout = "runc, layout"
    case crunLayout = "crun, layout"
    case runcRegistry = "runc, registry"
    case crunRegistry = "crun, registry"

    var binary: String { self == .runcLayout || self == .runcRegistry ? "runc" : "crun" }
    var fromRegistry: Bool { self == .runcRegistry || self == .crunRegistry }
    var testDescription: String { rawValue }
}

enum OCITestSetup {
    /// One registry for the whole test process, with the test server image pushed once.
    actor SharedRegistry {
        static let shared = SharedRegistry()
        private var reference: String?
        private var process: RegistryProcess?

        func imageReference() async throws -> (reference: String, address: String) {
            if let reference, let process { return (reference, process.address) }
            let process = try await RegistryProcess.start()
            self.process = process
            let pushed = try await process.push(ociLayout: try await OCITestImage.shared.layout(), tag: OCITestImage.tag, as: "plane/test-server")
            reference = pushed
            return (pushed, process.address)
        }
    }

    static func logger() -> Logger {
        var logger = Logger(label: "test.oci")
        logger.logLevel = .warning
        return logger
    }

    /// A fresh runtime (own state directory, own drone id) for `variant`.
    static func runtime(_ variant: OCIVariant, configure: (inout OCIRuntimeConfiguration) -> Void = { _ in }) async throws -> (OCIRuntime, DroneID, String) {
        let drone = DroneID.random()
        var configuration = OCIRuntimeConfiguration(stateDirectory: try TestEnvironment.temporaryDirectory("oci-runtime"))
        configuration.runtime = variant.binary
        configuration.shimExecutable = try TestExecutables.path("plane")
        // These tests reach backends on 127.0.0.1 and `PORT`; namespace networking (the
        // default) has its own tests (OCINetworkNamespaceTests, in a namespace of their own).
        configuration.network = .host
        var image = try await OCITestImage.shared.reference()
        if variant.fromRegistry {
            let registry = try await SharedRegistry.shared.imageReference()
            configuration.insecureRegistries = [registry.address]
            image = registry.reference
        }
        configure(&configuration)
        let runtime = try await OCIRuntime.make(configuration: configuration, droneID: drone, logger: logger())
        return (runtime, drone, image)
    }

    static func harness(_ variant: OCIVariant) async throws -> RuntimeConformanceHarness {
        let (runtime, drone, image) = try await runtime(variant)
        return RuntimeConformanceHarness(runtime: runtime, droneID: drone, testServerImage: image, unknownImage: "127.0.0.1:9/plane-no-such-image:latest")
    }
}

/// The runtime conformance suite with runc and crun, from a layout and from a registry.
@Suite(.serialized, .timeLimit(.minutes(10)))
struct OCIRuntimeConformanceTests {
    @Test(arguments: OCIVariant.allCases)
    func startServesAndCleansUp(_ variant: OCIVariant) async throws { try await RuntimeConformance.startServesAndCleansUp(try await OCITestSetup.harness(variant)) }

    @Test(arguments: OCIVariant.allCases)
    func exitCodeIsReportedAndEvented(_ variant: OCIVariant) async throws { try await RuntimeConformance.exitCodeIsReportedAndEvented(try await OCITestSetup.harness(variant)) }

    @Test(arguments: OCIVariant.allCases)
    func exitPathEndsWithZero(_ variant: OCIVariant) async throws { try await RuntimeConformance.exitPathEndsWithZero(try await OCITestSetup.harness(variant)) }

    @Test(arguments: OCIVariant.allCases)
    func waitReturnsHowTheBackendEnded(_ variant: OCIVariant) async throws { try await RuntimeConformance.waitReturnsHowTheBackendEnded(try await OCITestSetup.harness(variant)) }

    @Test(arguments: OCIVariant.allCases)
    func stopAndRemoveAreIdempotent(_ variant: OCIVariant) async throws { try await RuntimeConformance.stopAndRemoveAreIdempotent(try await OCITestSetup.harness(variant)) }

    @Test(arguments: OCIVariant.allCases)
    func unknownImageFailsFast(_ variant: OCIVariant) async throws { try await RuntimeConformance.unknownImageFailsFast(try await OCITestSetup.harness(variant)) }

    @Test(arguments: OCIVariant.allCases)
    func invalidOptionFailsBeforeCreating(_ variant: OCIVariant) async throws { try await RuntimeConformance.invalidOptionFailsBeforeCreating(try await OCITestSetup.harness(variant)) }

    @Test(arguments: [OCIVariant.runcLayout, .crunRegistry])
    func twentyConcurrentBackends(_ variant: OCIVariant) async throws { try await RuntimeConformance.twentyConcurrentBackends(try await OCITestSetup.harness(variant)) }
}
