import ContainerRuntime
import ExternalRuntime
import Foundation
import PlaneTestSupport
import RuntimeConformance
import Testing

/// `runtimes/examples/python-process`, a plugin in Python with only the standard library,
/// passes the conformance checks for what it declares (events, logs, stats): the protocol
/// is usable without Swift.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct PythonPluginConformanceTests {
    static let directory = ProcessPluginSetup.repository + "/runtimes/examples/python-process"

    func withPythonPlugin(_ body: (RuntimeConformanceHarness) async throws -> Void) async throws {
        _ = try SystemProgram("python3", debianPackage: "python3").path()
        try await ProcessPluginSetup.withPlugin(manifestDirectory: Self.directory) { runtime, harness in
            #expect(runtime.descriptor.name == "python-process")
            #expect(runtime.calls == [.events, .logs, .stats], "the checks below rely on these")
            try await body(harness)
        }
    }

    @Test func startServesAndCleansUp() async throws { try await withPythonPlugin { try await RuntimeConformance.startServesAndCleansUp($0) } }
    @Test func exitCodeIsReportedAndEvented() async throws { try await withPythonPlugin { try await RuntimeConformance.exitCodeIsReportedAndEvented($0) } }
    @Test func exitPathEndsWithZero() async throws { try await withPythonPlugin { try await RuntimeConformance.exitPathEndsWithZero($0) } }
    @Test func waitReturnsHowTheBackendEnded() async throws { try await withPythonPlugin { try await RuntimeConformance.waitReturnsHowTheBackendEnded($0) } }
    @Test func stopAndRemoveAreIdempotent() async throws { try await withPythonPlugin { try await RuntimeConformance.stopAndRemoveAreIdempotent($0) } }
    @Test func unknownImageFailsFast() async throws { try await withPythonPlugin { try await RuntimeConformance.unknownImageFailsFast($0) } }
    @Test func invalidOptionFailsBeforeCreating() async throws { try await withPythonPlugin { try await RuntimeConformance.invalidOptionFailsBeforeCreating($0) } }
    @Test func twentyConcurrentBackends() async throws { try await withPythonPlugin { try await RuntimeConformance.twentyConcurrentBackends($0) } }
}
