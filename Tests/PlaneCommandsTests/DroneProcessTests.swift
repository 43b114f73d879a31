import Foundation
import NATS
import PlaneCore
import PlaneMessaging
import PlaneTestSupport
import Synchronization
import Testing

/// `plane drone` as an operator runs it, on nats-server and dockerd (or crun through the
/// oci runtime): killed with SIGKILL while backends run, started again, it re-attaches them
/// and sweeps them later; a NATS
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
        try DroneConfigFile.write(in: try TestEnvironment.temporaryDirectory("drone-process"), drone: drone.rawValue, nats: server.url, ports: ports, extra: extra)
    }

    func request(_ drone: DroneID, image: String, idle: UInt64) -> SpawnRequest {
        SpawnRequest(cluster: "plane.test", droneID: drone, maxIdleSeconds: DurationSeconds(idle), backendID: .random(),
                     executable: DockerExecutableConfig(image: image))
    }

    /// The runtime `plane drone` runs backends on in `sigkillThenRestartReattachesAndSweeps`.
    enum Runtime: String, CaseIterable, Sendable {
        case docker
        /// `runtime = "oci"` with crun (in a private mount namespace on this hybrid-cgroup
        /// host), the shim being the plane executable itself.
        case ociCrun = "oci (crun)"
        /// `runtime = "process"`: the reference runtime plugin from the repository's runtimes/.
        case process
    }

    @Test(arguments: Runtime.allCases)
    func sigkillThenRestartReattachesAndSweeps(_ runtime: Runtime) async throws {
        let image: String
        let extra: String
        switch runtime {
        case .docker:
            image = try await DockerTestImage.shared.ensureLoaded()
            extra = ""
        case .ociCrun:
            image = try await OCITestImage.shared.reference()
            extra = "runtime = \"oci\"\n[agent.oci]\nruntime = \"crun\""
        case .process:
            image = try TestExecutables.path("plane-test-server")
            extra = "runtime = \"process\"\nruntimes_dir = \"\(PythonEnvironment.packageRoot)/runtimes\""
        }
        try await withNATSServer { server in
            let client = try await server.connectedClient()
            let relay = try await Relay(client: client)
            let messenger = PlaneMessenger(client: client)
            let drone = DroneID.random()
            let config = try droneConfig(server: server, drone: drone, ports: ["docker": "23000-23099", "oci (crun)": "23400-23499"][runtime.rawValue] ?? "23600-23699", extra: extra)
            let stateDirectory = URL(fileURLWithPath: config).deletingLastPathComponent().path + "/state"
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
            switch runtime {
            case .docker:
                let docker = SystemProgram("docker", debianPackage: "docker.io")
                #expect(try await eventually { try await docker.run(["ps", "-aq", "--filter", "label=dev.plane.drone=\(drone)"]).isEmpty })
            case .ociCrun:
                #expect(try await eventually { try FileManager.default.contentsOfDirectory(atPath: "\(stateDirectory)/oci/backends").isEmpty })
                let containers = try FileManager.default.contentsOfDirectory(atPath: "\(stateDirectory)/oci/runtime-root").filter { $0.hasPrefix("plane-") }
                #expect(containers.isEmpty, "crun holds no container: \(containers)")
            case .process:
                #expect(try await eventually { try FileManager.default.contentsOfDirectory(atPath: "\(stateDirectory)/runtimes/process/backends").isEmpty })
            }
            child.signal(SIGTERM)
            #expect(await child.waitForExit(timeout: .seconds(20)) == 0, "\(child.output)")
            // The plugin ends with the drone (the first one with the killed drone's connection).
            #expect(try await eventually {
                try FileManager.default.contentsOfDirectory(atPath: "/proc").filter { Int($0) != nil }.allSatisfy { pid in
                    !(BoundedFile.generatedText("/proc/\(pid)/environ") ?? "").contains("\(stateDirectory)/runtimes/")
                }
            }, "a plugin process outlived the drone")
            relay.stop()
            await client.close()
        }
    }

    /// v0.3.10's `[agent.docker] network = "NAME"` (its compose sample's setting): the drone
    /// starts, its backends join that network and are reached at their address there.
    @Test func aV0310DroneTomlWithANamedDockerNetworkStartsAndServes() async throws {
        let docker = SystemProgram("docker", debianPackage: "docker.io")
        let network = "plane-test-v0310-\(UInt32.random(in: 0...UInt32.max))"
        // A network of this test that an earlier run left behind (a run killed mid-test) holds
        // the subnet: removed first. This run's is removed however the test ends.
        for stale in try await docker.run(["network", "ls", "-q", "--filter", "name=plane-test-v0310-"]).split(separator: "\n") {
            _ = try? await docker.run(["network", "rm", String(stale)])
        }
        _ = try await docker.run(["network", "create", "--subnet", "10.215.254.0/24", network])
        do {
            try await servesOnTheNamedNetwork(network, docker: docker)
        } catch {
            _ = try? await docker.run(["network", "rm", network])
            throw error
        }
        _ = try? await docker.run(["network", "rm", network])
    }

    func servesOnTheNamedNetwork(_ network: String, docker: SystemProgram) async throws {
        let image = try await DockerTestImage.shared.ensureLoaded()
        try await withNATSServer { server in
            let client = try await server.connectedClient()
            let relay = try await Relay(client: client)
            let messenger = PlaneMessenger(client: client)
            let drone = DroneID.random()
            let config = try droneConfig(server: server, drone: drone, ports: "23700-23799", extra: "[agent.docker]\nnetwork = \"\(network)\"")
            let child = try ChildProcess(try TestExecutables.path("plane"), arguments: ["drone", config])
            let spawn = request(drone, image: image, idle: 3)
            #expect(try await eventually { (try? await messenger.request(PlaneSubjects.spawn(drone), spawn, timeout: .seconds(2))) == true }, "\(child.output)")
            // Seen at any time (with a short idle time, a test starved for a moment on a busy
            // machine could find it swept already).
            #expect(try await eventually(timeout: .seconds(60)) { relay.of(spawn.backendID).contains(.ready) }, "\(child.output)")
            let inspect = try await docker.run(["inspect", "plane-\(spawn.backendID)"])
            let info = try JSONParser.parse(inspect).arrayValue?.first?.objectValue
            #expect(info?["HostConfig"]?.objectValue?["NetworkMode"]?.stringValue == network)
            let address = info?["NetworkSettings"]?.objectValue?["Networks"]?.objectValue?[network]?.objectValue?["IPAddress"]?.stringValue
            #expect(address?.hasPrefix("10.215.254.") == true, "\(address ?? "no address")")
            // Ready means the drone's readiness probe reached it there; idle, it is swept.
            #expect(try await eventually(timeout: .seconds(30)) { relay.of(spawn.backendID).last == .swept }, "\(child.output)")
            #expect(try await eventually { try await docker.run(["ps", "-aq", "--filter", "label=dev.plane.drone=\(drone)"]).isEmpty })
            child.signal(SIGTERM)
            #expect(await child.waitForExit(timeout: .seconds(20)) == 0, "\(child.output)")
            relay.stop()
            await client.close()
        }
    }

    /// Host networking, an explicit opt-in: a backend becomes Ready only once the drone has
    /// seen that the listener on its port is its own (Docker and OCI).
    @Test(arguments: ["docker", "oci"])
    func hostNetworkingBackendsBecomeReadyWhenTheListenerIsTheirOwn(_ runtime: String) async throws {
        let image = runtime == "docker" ? try await DockerTestImage.shared.ensureLoaded() : try await OCITestImage.shared.reference()
        let extra = runtime == "docker" ? "[agent.docker]\nnetwork = \"host\"" : "runtime = \"oci\"\n[agent.oci]\nnetwork = \"host\""
        try await withNATSServer { server in
            let client = try await server.connectedClient()
            let relay = try await Relay(client: client)
            let messenger = PlaneMessenger(client: client)
            let drone = DroneID.random()
            let config = try droneConfig(server: server, drone: drone, ports: runtime == "docker" ? "23900-23949" : "23950-23999", extra: extra)
            let child = try ChildProcess(try TestExecutables.path("plane"), arguments: ["drone", config])
            let spawn = request(drone, image: image, idle: 2)
            #expect(try await eventually { (try? await messenger.request(PlaneSubjects.spawn(drone), spawn, timeout: .seconds(2))) == true }, "\(child.output)")
            // Seen at any time (with a short idle time, a test starved for a moment on a busy
            // machine could find it swept already).
            #expect(try await eventually(timeout: .seconds(60)) { relay.of(spawn.backendID).contains(.ready) }, "\(child.output)")
            #expect(!child.output.contains("backend.port_taken"))
            #expect(try await eventually(timeout: .seconds(30)) { relay.of(spawn.backendID).last == .swept }, "\(child.output)")
            child.signal(SIGTERM)
            #expect(await child.waitForExit(timeout: .seconds(20)) == 0, "\(child.output)")
            relay.stop()
            await client.close()
        }
    }

    @Test func aRefusedPluginSectionStopsTheDroneWithThePluginsMessage() async throws {
        try await withNATSServer { server in
            let config = try droneConfig(server: server, drone: .random(), ports: "23600-23699",
                                         extra: "runtime = \"process\"\nruntimes_dir = \"\(PythonEnvironment.packageRoot)/runtimes\"\n[agent.process]\ncolour = 1")
            let child = try ChildProcess(try TestExecutables.path("plane"), arguments: ["drone", config])
            let status = await child.waitForExit(timeout: .seconds(30))
            #expect(status != nil && status != 0, "\(child.output)")
            #expect(child.output.contains("[agent.process] has no key \"colour\""), "\(child.output)")
        }
    }

    @Test func planeRuntimesListsBuiltInsAndPlugins() async throws {
        let plane = try TestExecutables.path("plane")
        let (status, output) = try await SystemProgram.run(executable: plane, ["runtimes", "--json", "--runtimes-dir", PythonEnvironment.packageRoot + "/runtimes"])
        #expect(status == 0, "\(output)")
        let objects = output.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(Set(objects.compactMap { $0["name"] as? String }) == ["docker", "oci", "process"], "\(output)")
        let process = try #require(objects.first { $0["name"] as? String == "process" })
        #expect(process["kind"] as? String == "plugin" && process["version"] as? String == "0.1.0" && process["network_modes"] as? [String] == ["host"])
        #expect(process["calls"] as? [String] == ["events", "logs", "prepare", "stats"] && process["protocol_versions"] as? [Int] == [1])
        // A broken manifest is named, and the exit status says so.
        let broken = try TestEnvironment.temporaryDirectory("runtimes")
        defer { try? FileManager.default.removeItem(atPath: broken) }
        try FileManager.default.createDirectory(atPath: broken + "/bad", withIntermediateDirectories: true)
        try "name = 1".write(toFile: broken + "/bad/runtime.toml", atomically: true, encoding: .utf8)
        let (badStatus, badOutput) = try await SystemProgram.run(executable: plane, ["runtimes", "--runtimes-dir", broken])
        #expect(badStatus == 1 && badOutput.contains("Skipped: ") && badOutput.contains(broken + "/bad/runtime.toml"), "\(badOutput)")
    }

    @Test func aBadOCISettingStopsTheDroneNamingTheSetting() async throws {
        try await withNATSServer { server in
            let config = try droneConfig(server: server, drone: .random(), ports: "23400-23499", extra: "runtime = \"oci\"\n[agent.oci]\nbinary = \"crun\"")
            let child = try ChildProcess(try TestExecutables.path("plane"), arguments: ["drone", config])
            let status = await child.waitForExit(timeout: .seconds(30))
            #expect(status != nil && status != 0, "\(child.output)")
            #expect(child.output.contains("[agent.oci] has no setting 'binary'; known: allow_mounts,"), "\(child.output)")
        }
    }

    /// A spawn sent again (a sender whose first answer came too late for it) is answered
    /// `true` again and starts nothing; another request for the same backend id is refused,
    /// and so is the same request once its backend has ended.
    @Test func aRepeatedSpawnIsAnsweredAgainAndStartsNothing() async throws {
        try await withNATSServer { server in
            let drone = DroneID.random()
            let config = try droneConfig(server: server, drone: drone, ports: "23700-23799",
                                         extra: "runtime = \"process\"\nruntimes_dir = \"\(PythonEnvironment.packageRoot)/runtimes\"")
            let backends = URL(fileURLWithPath: config).deletingLastPathComponent().path + "/state/runtimes/process/backends"
            let child = try ChildProcess(try TestExecutables.path("plane"), arguments: ["drone", config])
            let client = try await server.connectedClient()
            let relay = try await Relay(client: client)
            let messenger = PlaneMessenger(client: client)
            let spawn = request(drone, image: try TestExecutables.path("plane-test-server"), idle: 60)
            #expect(try await eventually { (try? await messenger.request(PlaneSubjects.spawn(drone), spawn, timeout: .seconds(5))) == true }, "\(child.output)")
            // Again, at once and several at a time.
            let answers = try await withThrowingTaskGroup(of: Bool.self) { group in
                for _ in 0..<4 { group.addTask { try await messenger.request(PlaneSubjects.spawn(drone), spawn, timeout: .seconds(30)) } }
                return try await group.reduce(into: [Bool]()) { $0.append($1) }
            }
            #expect(answers == [true, true, true, true], "\(child.output)")
            #expect(try await eventually { relay.of(spawn.backendID).last == .ready }, "\(child.output)")
            #expect(try await messenger.request(PlaneSubjects.spawn(drone), spawn, timeout: .seconds(30)), "\(child.output)")
            var changed = spawn
            changed.maxIdleSeconds = DurationSeconds(61)
            #expect(try await messenger.request(PlaneSubjects.spawn(drone), changed, timeout: .seconds(30)) == false)
            // One process: one start, one set of states.
            #expect(try FileManager.default.contentsOfDirectory(atPath: backends).count == 1)
            #expect(child.output.components(separatedBy: "agent.spawn_repeated").count - 1 == 5, "\(child.output)")
            _ = try await messenger.request(PlaneSubjects.terminate("plane.test", spawn.backendID),
                                        TerminationRequest(cluster: "plane.test", backendID: spawn.backendID), timeout: .seconds(10))
            #expect(try await eventually(timeout: .seconds(30)) { relay.of(spawn.backendID).last?.isTerminal == true }, "\(child.output)")
            #expect(relay.of(spawn.backendID) == [.loading, .starting, .ready, .terminated])
            #expect(try await messenger.request(PlaneSubjects.spawn(drone), spawn, timeout: .seconds(30)) == false)
            #expect(try await eventually { try FileManager.default.contentsOfDirectory(atPath: backends).isEmpty })
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
            #expect(try await proxy.get("/").status == 401)
            #expect(try await proxy.get("/", headers: ["Authorization": "Bearer s3cret"]).body == "Hello World!")
            #expect(try await HTTPProbe(port: proxyPort, hostHeader: "nothere.plane.test").get("/").status == 404)
            let metrics = try await HTTPProbe(port: metricsPort).get("/metrics").body
            #expect(metrics.contains("plane_proxy_responses_total{class=\"2xx\"} 1") && metrics.contains("plane_proxy_responses_total{class=\"4xx\"} 2"), "\(metrics)")
            _ = try await messenger.request(PlaneSubjects.terminate("plane.test", spawn.backendID), TerminationRequest(cluster: "plane.test", backendID: spawn.backendID), timeout: .seconds(10))
            #expect(try await eventually { relay.of(spawn.backendID).last == .terminated })
            #expect(try await proxy.get("/", headers: ["Authorization": "Bearer s3cret"]).status == 404, "the route left with the backend")
            child.signal(SIGTERM)
            #expect(await child.waitForExit(timeout: .seconds(20)) == 0, "\(child.output)")
            relay.stop()
            await client.close()
        }
    }

    /// Resident memory of a process, in bytes.
    static func residentBytes(of pid: Int32) -> Int {
        guard let status = BoundedFile.generatedText("/proc/\(pid)/status"),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
              let kilobytes = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") else { return 0 }
        return kilobytes * 1024
    }

    @Test func aGigabyteStreamsThroughTheProxyInBoundedMemory() async throws {
        let image = try await DockerTestImage.shared.ensureLoaded()
        try await withNATSServer { server in
            let drone = DroneID.random()
            let proxyPort = try TestEnvironment.freePort()
            let config = try droneConfig(server: server, drone: drone, ports: "23300-23399", extra: """
                [proxy]
                bind_ip = "127.0.0.1"
                https_port = \(proxyPort)
                """)
            let child = try ChildProcess(try TestExecutables.path("plane"), arguments: ["drone", config], environment: ["PLANE_LOG": "debug"])
            let client = try await server.connectedClient()
            let relay = try await Relay(client: client)
            let messenger = PlaneMessenger(client: client)
            let spawn = request(drone, image: image, idle: 300)
            #expect(try await eventually { (try? await messenger.request(PlaneSubjects.spawn(drone), spawn, timeout: .seconds(2))) == true }, "\(child.output)")
            #expect(try await eventually { relay.of(spawn.backendID).last == .ready }, "\(child.output)")
            let host = "\(spawn.backendID).plane.test"
            let url = "http://\(host):\(proxyPort)"
            let curl = try SystemProgram("curl", debianPackage: "curl").path()
            let resolve = ["--resolve", "\(host):\(proxyPort):127.0.0.1"]
            _ = try await SystemProgram.run(executable: curl, ["-sS"] + resolve + ["\(url)/"])
            try await Task.sleep(for: .seconds(1))
            let idle = Self.residentBytes(of: child.pid)
            let peak = Mutex(idle)
            let sampler = Task {
                while !Task.isCancelled {
                    let now = Self.residentBytes(of: child.pid)
                    peak.withLock { $0 = max($0, now) }
                    try? await Task.sleep(for: .milliseconds(50))
                }
            }
            // A sparse 1 GiB file: reads as zeros, costs no disk.
            let file = try TestEnvironment.temporaryDirectory("gigabyte") + "/upload.bin"
            _ = FileManager.default.createFile(atPath: file, contents: nil)
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: file))
            try handle.truncate(atOffset: 1 << 30)
            try handle.close()
            let gigabyte = 1 << 30
            async let upload = SystemProgram.run(executable: curl, ["-sS", "-X", "POST", "-T", file] + resolve + ["\(url)/upload"])
            async let download = SystemProgram.run(executable: curl, ["-sS", "-o", "/dev/null", "-w", "%{size_download}"] + resolve + ["\(url)/download/\(gigabyte)"])
            let (up, down) = try await (upload, download)
            sampler.cancel()
            #expect(up.status == 0 && up.output == "received \(gigabyte)", "\(up.output)\n\(child.output)")
            #expect(down.status == 0 && down.output == String(gigabyte), "\(down.output)\n\(child.output)")
            let growth = peak.withLock { $0 } - idle
            #expect(growth < 100 << 20, "resident memory grew by \(growth >> 20) MiB (idle \(idle >> 20) MiB)")
            // The backend goes before the drone (terminated after the drone stopped, it stayed in dockerd).
            _ = try await messenger.request(PlaneSubjects.terminate("plane.test", spawn.backendID), TerminationRequest(cluster: "plane.test", backendID: spawn.backendID), timeout: .seconds(5))
            #expect(try await eventually { relay.of(spawn.backendID).last == .terminated }, "\(child.output)")
            child.signal(SIGTERM)
            #expect(await child.waitForExit(timeout: .seconds(20)) == 0, "\(child.output)")
            relay.stop()
            await client.close()
        }
    }
}
