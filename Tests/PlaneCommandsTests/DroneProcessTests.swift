import Foundation
import NATS
import PlaneCore
import PlaneMessaging
import PlaneTestSupport
import Synchronization
import Testing

/// `plane drone` as an operator runs it, on nats-server and dockerd: killed with SIGKILL
/// while backends run, started again, it re-attaches them and sweeps them later; a NATS
/// restart in the middle of spawning loses no state update.
@Suite(.serialized, .timeLimit(.minutes(10)))
struct DroneProcessTests {
    /// Records the state updates a controller relay would get, answering `null`.
    final class Relay: Sendable {
        let states = Mutex<[BackendID: [BackendState]]>([:])
        let task = Mutex<Task<Void, Never>?>(nil)

        init(client: NATSClient) async throws {
            let subscription = try await PlaneMessenger(client: client).subscribe(PlaneSubjects.updateBackendStateAll)
            let relayTask = Task { [weak self] in
                for await delivery in subscription {
                    guard let self, case .success(let update) = delivery.message else { continue }
                    self.states.withLock { states in
                        // A repeat (at-least-once delivery) is stored once, as the controller does.
                        if states[update.backend]?.last != update.state { states[update.backend, default: []].append(update.state) }
                    }
                    _ = try? await delivery.respond(NullReply())
                }
            }
            task.withLock { $0 = relayTask }
        }

        func of(_ backend: BackendID) -> [BackendState] { states.withLock { $0[backend] ?? [] } }
        func stop() { task.withLock { $0?.cancel() } }
    }

    func droneConfig(server: NATSServerProcess, drone: DroneID, ports: String, extra: String = "") throws -> String {
        let directory = try TestEnvironment.temporaryDirectory("drone-process")
        let path = directory + "/drone.toml"
        try """
            cluster_domain = "plane.test"
            drone_id = "\(drone)"
            state_dir = "\(directory)/state"
            [nats]
            hosts = ["\(server.url)"]
            [agent]
            ip = "127.0.0.1"
            port_range = "\(ports)"
            stop_grace_secs = 2
            \(extra)
            """.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func request(_ drone: DroneID, image: String, idle: UInt64) -> SpawnRequest {
        SpawnRequest(cluster: "plane.test", droneID: drone, maxIdleSeconds: DurationSeconds(idle), backendID: .random(),
                     executable: DockerExecutableConfig(image: image))
    }

    @Test func sigkillThenRestartReattachesAndSweeps() async throws {
        let image = try await DockerTestImage.shared.ensureLoaded()
        try await withNATSServer { server in
            let client = try await server.connectedClient()
            let relay = try await Relay(client: client)
            let messenger = PlaneMessenger(client: client)
            let drone = DroneID.random()
            let config = try droneConfig(server: server, drone: drone, ports: "23000-23099")
            let plane = try TestExecutables.path("plane")
            var child = try ChildProcess(plane, arguments: ["drone", config])
            let requests = (0..<5).map { _ in request(drone, image: image, idle: 15) }
            #expect(try await eventually { (try? await messenger.request(PlaneSubjects.spawn(drone), requests[0], timeout: .seconds(2))) == true })
            for spawn in requests.dropFirst() { #expect(try await messenger.request(PlaneSubjects.spawn(drone), spawn, timeout: .seconds(10))) }
            for spawn in requests { #expect(try await eventually { relay.of(spawn.backendID).last == .ready }, "\(child.output)") }
            child.signal(SIGKILL)
            _ = await child.waitForExit()
            child = try ChildProcess(plane, arguments: ["drone", config])
            for spawn in requests {
                #expect(try await eventually(timeout: .seconds(60)) { relay.of(spawn.backendID).last == .swept }, "\(child.output)")
                #expect(relay.of(spawn.backendID) == [.loading, .starting, .ready, .swept])
            }
            let docker = SystemProgram("docker", debianPackage: "docker.io")
            #expect(try await eventually { try docker.run(["ps", "-aq", "--filter", "label=dev.plane.drone=\(drone)"]).isEmpty })
            child.signal(SIGTERM)
            #expect(await child.waitForExit(timeout: .seconds(20)) == 0, "\(child.output)")
            relay.stop()
            await client.close()
        }
    }

    @Test func aNATSRestartDuringSpawnsLosesNoState() async throws {
        let image = try await DockerTestImage.shared.ensureLoaded()
        try await withNATSServer { server in
            let drone = DroneID.random()
            let config = try droneConfig(server: server, drone: drone, ports: "23100-23199")
            let child = try ChildProcess(try TestExecutables.path("plane"), arguments: ["drone", config])
            let client = try await server.connectedClient()
            let relay = try await Relay(client: client)
            let messenger = PlaneMessenger(client: client)
            let requests = (0..<3).map { _ in request(drone, image: image, idle: 4) }
            #expect(try await eventually { (try? await messenger.request(PlaneSubjects.spawn(drone), requests[0], timeout: .seconds(2))) == true })
            for spawn in requests.dropFirst() { #expect(try await messenger.request(PlaneSubjects.spawn(drone), spawn, timeout: .seconds(10))) }
            // NATS goes away while the backends load, start and become ready, then returns.
            await server.kill9()
            try await Task.sleep(for: .seconds(2))
            try await server.startAgain()
            for spawn in requests {
                #expect(try await eventually(timeout: .seconds(60)) { relay.of(spawn.backendID) == [.loading, .starting, .ready, .swept] },
                        "\(relay.of(spawn.backendID)) \(child.output)")
            }
            child.signal(SIGTERM)
            #expect(await child.waitForExit(timeout: .seconds(20)) == 0)
            relay.stop()
            await client.close()
        }
    }

    @Test func theDroneProxiesToItsBackendsAndServesMetrics() async throws {
        let image = try await DockerTestImage.shared.ensureLoaded()
        try await withNATSServer { server in
            let drone = DroneID.random()
            let proxyPort = try TestEnvironment.freePort()
            let metricsPort = try TestEnvironment.freePort()
            let config = try droneConfig(server: server, drone: drone, ports: "23200-23299", extra: """
                [proxy]
                bind_ip = "127.0.0.1"
                https_port = \(proxyPort)
                [metrics]
                port = \(metricsPort)
                """)
            let child = try ChildProcess(try TestExecutables.path("plane"), arguments: ["drone", config])
            let client = try await server.connectedClient()
            let relay = try await Relay(client: client)
            let messenger = PlaneMessenger(client: client)
            var spawn = request(drone, image: image, idle: 60)
            spawn.bearerToken = "s3cret"
            #expect(try await eventually { (try? await messenger.request(PlaneSubjects.spawn(drone), spawn, timeout: .seconds(2))) == true }, "\(child.output)")
            #expect(try await eventually { relay.of(spawn.backendID).last == .ready }, "\(child.output)")
            let proxy = HTTPProbe(port: proxyPort, hostHeader: "\(spawn.backendID).plane.test:\(proxyPort)")
            #expect(try await proxy.getOffPool("/").status == 401)
            #expect(try await proxy.getOffPool("/", headers: ["Authorization": "Bearer s3cret"]).body == "Hello World!")
            #expect(try await HTTPProbe(port: proxyPort, hostHeader: "nothere.plane.test").getOffPool("/").status == 404)
            let metrics = try await HTTPProbe(port: metricsPort).getOffPool("/metrics").body
            #expect(metrics.contains("plane_proxy_responses_total{class=\"2xx\"} 1") && metrics.contains("plane_proxy_responses_total{class=\"4xx\"} 2"), "\(metrics)")
            _ = try await messenger.request(PlaneSubjects.terminate("plane.test", spawn.backendID), TerminationRequest(cluster: "plane.test", backendID: spawn.backendID), timeout: .seconds(2))
            #expect(try await eventually { relay.of(spawn.backendID).last == .terminated })
            #expect(try await proxy.getOffPool("/", headers: ["Authorization": "Bearer s3cret"]).status == 404, "the route left with the backend")
            child.signal(SIGTERM)
            #expect(await child.waitForExit(timeout: .seconds(20)) == 0, "\(child.output)")
            relay.stop()
            await client.close()
        }
    }
}
