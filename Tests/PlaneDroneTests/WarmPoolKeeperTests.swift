import ContainerRuntime
import Logging
import PlaneCore
import ScriptedRuntime
import Synchronization
import PlaneTestSupport
import Testing

@testable import PlaneDrone

/// The keeper's own rounds, on the scripted runtime: what it started is gone when the drone
/// stops, even when the stop cancels a round in the middle of starting backends.
@Suite struct WarmPoolKeeperTests {
    static func keeper(host: ScriptedHost, size: Int) -> (WarmPoolKeeper, any ContainerRuntime) {
        let drone = DroneID.random()
        let runtime = ScriptedRuntime(host: host, droneID: drone, stats: false, ownAddress: nil)
        let definition = WarmPoolDefinition(cluster: "plane.test", name: "warm", size: size, executable: DockerExecutableConfig(image: "plane-test-server"))
        let ports = Mutex(Set<Int>())
        var logger = Logger(label: "test.warm")
        logger.logLevel = .warning
        let dependencies = WarmPoolKeeper.Dependencies(
            runtime: runtime, configuration: AgentConfiguration(ip: .literal("127.0.0.1")), cluster: "plane.test",
            fetchDefinitions: { [definition] },
            reservePort: {
                let port = try TestEnvironment.freePort()
                ports.withLock { _ = $0.insert(port) }
                return port
            },
            releasePort: { port in ports.withLock { _ = $0.remove(port) } },
            hasRoom: { _ in true },
            accepting: { true },
            makeSpec: { _, id, port in
                BackendSpec(backendID: id, droneID: drone, image: "plane-test-server", port: UInt16(port), network: .host(address: "127.0.0.1"))
            },
            logger: logger)
        return (WarmPoolKeeper(dependencies, refreshInterval: .seconds(1), reconcileInterval: .milliseconds(50)), runtime)
    }

    @Test func keepsItsPoolAndStopsItWhenTheDroneStops() async throws {
        let host = ScriptedHost()
        let (keeper, runtime) = Self.keeper(host: host, size: 2)
        let ready = await withTaskGroup(of: Void.self) { group in
            group.addTask { await keeper.run() }
            let ready = (try? await eventually { keeper.snapshot.withLock { $0.ready["warm"] } == 2 }) ?? false
            group.cancelAll()
            return ready
        }
        #expect(ready)
        #expect(try await runtime.list().count == 2, "a stopped round leaves its backends running for stopAll")
        await keeper.stopAll()
        #expect(try await runtime.list().isEmpty)
        #expect(keeper.snapshot.withLock { $0.backends } == 0)
    }

    /// The drone stops while warm backends are still starting: the cancelled round cannot
    /// reach the runtime (an HTTP client's calls fail at once), so it must not forget them;
    /// `stopAll` ends them, also one whose start finished after the round gave up.
    @Test func backendsStartingWhenTheDroneStopsAreNotLeftBehind() async throws {
        let host = ScriptedHost()
        host.update {
            $0.startDelay = .milliseconds(600)
            $0.failsWhenCancelled = true
        }
        let (keeper, runtime) = Self.keeper(host: host, size: 3)
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await keeper.run() }
            try? await Task.sleep(for: .milliseconds(300))
            group.cancelAll()
        }
        #expect(keeper.snapshot.withLock { $0.backends } == 3, "the starting backends are still the keeper's")
        await keeper.stopAll()
        #expect(try await runtime.list().isEmpty)
        // Nothing comes up later either.
        try await Task.sleep(for: .milliseconds(800))
        #expect(try await runtime.list().isEmpty)
    }
}
