import ContainerRuntime
import ExternalRuntime
import Foundation
import PlaneCore
import PlaneTestSupport
import RuntimeConformance
import Testing

/// The runtime conformance suite against `runtimes/process`, through the plugin protocol
/// (`ExternalRuntime` in this process, the plugin in its own), on real processes.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct ProcessPluginConformanceTests {
    @Test func startServesAndCleansUp() async throws { try await ProcessPluginSetup.withPlugin { try await RuntimeConformance.startServesAndCleansUp($1) } }
    @Test func exitCodeIsReportedAndEvented() async throws { try await ProcessPluginSetup.withPlugin { try await RuntimeConformance.exitCodeIsReportedAndEvented($1) } }
    @Test func exitPathEndsWithZero() async throws { try await ProcessPluginSetup.withPlugin { try await RuntimeConformance.exitPathEndsWithZero($1) } }
    @Test func waitReturnsHowTheBackendEnded() async throws { try await ProcessPluginSetup.withPlugin { try await RuntimeConformance.waitReturnsHowTheBackendEnded($1) } }
    @Test func stopAndRemoveAreIdempotent() async throws { try await ProcessPluginSetup.withPlugin { try await RuntimeConformance.stopAndRemoveAreIdempotent($1) } }
    @Test func unknownImageFailsFast() async throws { try await ProcessPluginSetup.withPlugin { try await RuntimeConformance.unknownImageFailsFast($1) } }
    @Test func invalidOptionFailsBeforeCreating() async throws { try await ProcessPluginSetup.withPlugin { try await RuntimeConformance.invalidOptionFailsBeforeCreating($1) } }
    @Test func twentyConcurrentBackends() async throws { try await ProcessPluginSetup.withPlugin { try await RuntimeConformance.twentyConcurrentBackends($1) } }

    /// The handshake reports what the plugin declared; a valid option passes the drone's
    /// schema check and reaches the backend (RLIMIT_NOFILE), a mistyped one does not.
    @Test func capabilitiesAndOptionsComeFromThePlugin() async throws {
        try await ProcessPluginSetup.withPlugin { runtime, h in
            #expect(runtime.descriptor.name == "process" && runtime.descriptor.version == "0.1.0")
            #expect(runtime.descriptor.capabilities.networkModes == [.host] && runtime.descriptor.capabilities.stats)
            #expect(runtime.calls == [.prepare, .events, .logs, .stats])
            var wrong = try h.spec()
            wrong.options = JSONObject([("nofile", .string("lots"))])
            #expect(throws: RuntimeError.self) { try runtime.validate(wrong) }
            do throws(RuntimeError) {
                try runtime.validate(wrong)
            } catch {
                #expect(error.code == .invalidSpec && error.message.contains("options.nofile must be an integer"), "\(error.message)")
            }
            var spec = try h.spec(env: ["PLANE_PROBE": "limits"])
            spec.options = JSONObject([("nofile", .integer(321))])
            _ = try await runtime.start(spec)
            let limits = try await output(of: spec.backendID, runtime)
            #expect(limits.contains("Max open files            321"), "\(limits)")
        }
    }

    /// From inside a backend: unshare and mount fail with EPERM, keyctl too; no_new_privs
    /// is set and a seccomp filter is in force.
    @Test func theSandboxRefusesPrivilegedCalls() async throws {
        try await ProcessPluginSetup.withPlugin { runtime, h in
            let spec = try h.spec(env: ["PLANE_PROBE": "sandbox"])
            _ = try await runtime.start(spec)
            let text = try await output(of: spec.backendID, runtime)
            let probe = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: String], "\(text)")
            #expect(probe["unshare"] == "EPERM" && probe["mount"] == "EPERM" && probe["keyctl"] == "EPERM", "\(probe)")
            #expect(probe["NoNewPrivs"] == "1" && probe["Seccomp"] == "2", "\(probe)")
        }
    }

    /// The backend's whole output once it has exited.
    func output(of backend: BackendID, _ runtime: ExternalRuntime) async throws -> String {
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline, try await runtime.status(of: backend).isRunning { try await Task.sleep(for: .milliseconds(50)) }
        var lines: [String] = []
        for try await line in runtime.logs(of: backend, follow: false) { lines.append(line.text) }
        return lines.joined(separator: "\n")
    }
}
