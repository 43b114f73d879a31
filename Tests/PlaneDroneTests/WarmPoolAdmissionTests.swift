import ContainerRuntime
import NATS
import PlaneCore
@testable import PlaneDrone
import PlaneMessaging
import PlaneTestSupport
import ScriptedRuntime
import Testing

/// A warm pool's definition reaches a drone through the `plane_warm_pools` KV bucket, not
/// through a spawn, so the drone's checks of a spawn must be made of it too: a definition
/// this drone would refuse as a spawn (a volume mount where mounts are not allowed, an
/// environment over `limits.max_env_bytes`) starts no process, while a good one beside it
/// does. (Before, both refused definitions were started: their processes ran, only never
/// handed to a spawn.) A real nats-server and agent on the scripted runtime, which itself
/// takes any mount.
@Suite(.timeLimit(.minutes(3)))
struct WarmPoolAdmissionTests {
    @Test func aWarmPoolGetsTheChecksASpawnOfItWouldGet() async throws {
        try await withDroneCluster(.scripted) { server, _, _, runtimes in
            let client = try await server.connectedClient()
            let bucket = try await PlaneMessenger(client: client).jetStream.keyValue(KeyValueConfiguration(bucket: WarmPoolDefinition.bucket))
            let image = runtimes.image
            let definitions = [
                WarmPoolDefinition(cluster: "plane.test", name: "mounted", size: 1,
                                   executable: DockerExecutableConfig(image: image, volumeMounts: [VolumeMount(type: "bind", source: "/", target: "/host")])),
                WarmPoolDefinition(cluster: "plane.test", name: "large-env", size: 1,
                                   executable: DockerExecutableConfig(image: image, env: ["BIG": String(repeating: "x", count: 300)])),
                WarmPoolDefinition(cluster: "plane.test", name: "good", size: 1, executable: DockerExecutableConfig(image: image)),
            ]
            for definition in definitions {
                _ = try await bucket.put(definition.key, value: try WireEncoder().encode(definition))
            }
            let drone = try await RunningDrone(server: server, runtimes: runtimes) { configuration in
                configuration.allowVolumeMounts = false
                configuration.limits.spawn.maxEnvBytes = 256
            }
            let keeper = try #require(drone.agent.warmPools)
            let goodIsReady = try await eventually(timeout: .seconds(30)) { keeper.snapshot.withLock { $0.ready["good"] } == 1 }
            #expect(goodIsReady)
            // All three were read in one refresh; give the refused ones time to show up if
            // they were (wrongly) being started.
            try await Task.sleep(for: .seconds(2))
            let ready = keeper.snapshot.withLock { $0.ready }
            let backends = keeper.snapshot.withLock { $0.backends }
            #expect(ready == ["good": 1], "\(ready)")
            #expect(backends == 1)
            #expect(runtimes.host.backendIDs.count == 1, "processes started: \(runtimes.host.backendIDs)")
            await drone.stop()
            await client.close()
        }
    }
}
