import ContainerRuntime
import ExternalRuntime
import Foundation
import Logging
import PlaneCore
import PlaneTestSupport
import RuntimeConformance

/// The reference plugin `runtimes/process`, started through the real protocol on a real
/// socket, with a drone state directory of its own; ended (plugin process, state) after the
/// body, whatever it throws.
enum ProcessPluginSetup {
    static let repository = PythonEnvironment.packageRoot

    static func withPlugin<T>(manifestDirectory: String = repository + "/runtimes/process", configuration: ExternalRuntimeConfiguration = ExternalRuntimeConfiguration(),
                              _ body: (ExternalRuntime, RuntimeConformanceHarness) async throws -> T) async throws -> T {
        let state = try TestEnvironment.temporaryDirectory("plugin-drone")
        defer { try? FileManager.default.removeItem(atPath: state) }
        let drone = DroneID.random()
        let manifest = try RuntimePluginManifest.load(directory: manifestDirectory)
        let runtime = try await ExternalRuntime.make(manifest: manifest, context: RuntimeContext(droneID: drone, stateDirectory: state, logger: Logger(label: "test.plugin")),
                                                     configuration: configuration)
        let harness = RuntimeConformanceHarness(runtime: runtime, droneID: drone, testServerImage: try TestExecutables.path("plane-test-server"),
                                                unknownImage: "/nonexistent/plane-no-such-server")
        do {
            let result = try await body(runtime, harness)
            await end(runtime, harness)
            return result
        } catch {
            await end(runtime, harness)
            throw error
        }
    }

    /// Removes every backend the test left, then stops the plugin.
    static func end(_ runtime: ExternalRuntime, _ harness: RuntimeConformanceHarness) async {
        for handle in (try? await runtime.list()) ?? [] {
            try? await runtime.stop(handle.backendID, grace: .seconds(1))
            try? await runtime.remove(handle.backendID)
        }
        await runtime.shutdown()
    }
}
