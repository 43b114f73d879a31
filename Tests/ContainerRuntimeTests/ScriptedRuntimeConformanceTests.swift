import ContainerRuntime
import PlaneCore
import PlaneTestSupport
import RuntimeConformance
import ScriptedRuntime
import Testing

/// The scripted runtime keeps the same contract as the real ones, so agent tests that run
/// on it (PlaneDroneTests) mean what they say.
@Suite(.timeLimit(.minutes(2)))
struct ScriptedRuntimeConformanceTests {
    func harness() -> RuntimeConformanceHarness {
        let drone = DroneID.random()
        return RuntimeConformanceHarness(runtime: ScriptedRuntime(host: ScriptedHost(), droneID: drone), droneID: drone,
                                         testServerImage: "plane-test-server", unknownImage: "127.0.0.1:9/plane-no-such-image:latest")
    }

    @Test func startServesAndCleansUp() async throws { try await RuntimeConformance.startServesAndCleansUp(harness()) }
    @Test func exitCodeIsReportedAndEvented() async throws { try await RuntimeConformance.exitCodeIsReportedAndEvented(harness()) }
    @Test func exitPathEndsWithZero() async throws { try await RuntimeConformance.exitPathEndsWithZero(harness()) }
    @Test func waitReturnsHowTheBackendEnded() async throws { try await RuntimeConformance.waitReturnsHowTheBackendEnded(harness()) }
    @Test func stopAndRemoveAreIdempotent() async throws { try await RuntimeConformance.stopAndRemoveAreIdempotent(harness()) }
    @Test func unknownImageFailsFast() async throws { try await RuntimeConformance.unknownImageFailsFast(harness()) }
    @Test func invalidOptionFailsBeforeCreating() async throws { try await RuntimeConformance.invalidOptionFailsBeforeCreating(harness()) }
    @Test func twentyConcurrentBackends() async throws { try await RuntimeConformance.twentyConcurrentBackends(harness()) }

    @Test func dronesSeeOnlyTheirOwnBackends() async throws {
        let host = ScriptedHost()
        let mine = ScriptedRuntime(host: host, droneID: .random())
        let theirs = ScriptedRuntime(host: host, droneID: .random())
        let spec = BackendSpec(backendID: .random(), droneID: theirs.droneID, image: "plane-test-server",
                               port: UInt16(try TestEnvironment.freePort()), network: .host(address: "127.0.0.1"))
        _ = try await theirs.start(spec)
        #expect(try await mine.list().isEmpty)
        #expect(try await mine.status(of: spec.backendID) == .unknown)
        try await mine.remove(spec.backendID)
        #expect(try await theirs.status(of: spec.backendID).isRunning)
        try await theirs.remove(spec.backendID)
        #expect(host.backendIDs.isEmpty)
    }

    @Test func scriptedFaults() async throws {
        let host = ScriptedHost()
        let runtime = ScriptedRuntime(host: host, droneID: .random())
        let spec = BackendSpec(backendID: .random(), droneID: runtime.droneID, image: "plane-test-server",
                               port: UInt16(try TestEnvironment.freePort()), network: .host(address: "127.0.0.1"))
        host.update { $0.available = false }
        await #expect(throws: RuntimeError(.unavailable, "The scripted runtime is unavailable (the test made it so).")) { try await runtime.list() }
        host.update {
            $0.available = true
            $0.dropsEvents = true
        }
        let events = runtime.events()
        _ = try await runtime.start(spec)
        host.crash(spec.backendID, code: 7)
        #expect(try await runtime.status(of: spec.backendID) == .exited(code: 7))
        host.update { $0.dropsEvents = false }
        try await runtime.remove(spec.backendID)
        // The dropped exit never arrives; the stream is still open for later ones.
        let next = try await runtime.start(BackendSpec(backendID: .random(), droneID: runtime.droneID, image: "plane-test-server",
                                                        env: ["EXIT_CODE": "4"], port: spec.port, network: .host(address: "127.0.0.1")))
        var iterator = events.makeAsyncIterator()
        let event = await iterator.next()
        #expect(event?.backendID == next.backendID && event?.kind == .exited(code: 4))
        try await runtime.remove(next.backendID)
    }
}
