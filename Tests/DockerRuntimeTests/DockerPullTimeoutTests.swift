import ContainerRuntime
import Logging
import PlaneCore
import PlaneTestSupport
import Testing
@testable import DockerRuntime

/// dockerd gives up on a registry that never answers its first request after about 25 s of
/// its own, but not on one that answers and then sends its blobs a byte now and then: the
/// drone cuts every pull at `[agent.docker] pull_timeout_secs` and the spawn fails, naming
/// the key. (Here a silent registry, cut at 3 s, before dockerd's own timeout.)
@Suite(.timeLimit(.minutes(3)))
struct DockerPullTimeoutTests {
    @Test func aStalledRegistryIsCutAtThePullTimeout() async throws {
        // A "registry" that accepts connections and never answers a byte (dockerd treats
        // 127.0.0.0/8 registries as insecure: it tries HTTPS, then plain HTTP, both held).
        let relay = try await NetworkRelay(to: .tcp(host: "127.0.0.1", port: try TestEnvironment.freePort()))
        relay.partition()
        var configuration = DockerRuntimeConfiguration()
        configuration.endpoint = DockerTestSetup.endpoint
        configuration.pullTimeout = .seconds(3)
        let runtime = try await DockerRuntime.make(configuration: configuration, droneID: .random(), logger: Logger(label: "test.docker"))
        let spec = BackendSpec(backendID: .random(), droneID: runtime.droneID, image: "127.0.0.1:\(relay.port)/stalled/server:1",
                               port: UInt16(try TestEnvironment.freePort()), network: .bridge(network: nil), pullPolicy: .always)
        let started = ContinuousClock.now
        do {
            try await runtime.prepare(spec)
            Issue.record("a pull from a registry that never answers succeeded")
        } catch {
            #expect(error.code == .imageUnavailable && error.limit == "agent.docker.pull_timeout_secs", "\(error)")
        }
        #expect(ContinuousClock.now - started < .seconds(60))
        await relay.close()
    }
}
