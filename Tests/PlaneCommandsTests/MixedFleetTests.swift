import Foundation
import NATS
import PlaneCore
import PlaneMessaging
import PlaneTestSupport
import Synchronization
import Testing

/// Mixed fleets (issue 14) with real processes: nats-server, `plane controller`, and three
/// `plane drone`s — Docker, OCI with crun pulling from a local `docker-registry`, and the
/// process plugin in a pool of its own. Spawns ask for classes, pools, memory, options,
/// readiness and lifetimes; the test looks at where they land and, from inside the
/// backends, at what they got.
@Suite(.serialized)
struct MixedFleetTests {
    static let cluster: ClusterName = "plane.test"

    struct Fleet: Sendable {
        let messenger: PlaneMessenger
        let natsURL: String
        let httpPort: Int
        let docker: DroneID
        let oci: DroneID
        let process: DroneID
        /// The drone's proxy port, by drone.
        let proxies: [DroneID: Int]
        let registryImage: String
        let processImage: String
        let children: [ChildProcess]

        var logs: String { children.map { String($0.output.suffix(2500)) }.joined(separator: "\n----\n") }

        func schedule(_ runtimeClass: FleetLabel? = nil, pool: FleetLabel? = nil, image: String? = nil, memory: Int64? = nil,
                      options: JSONObject = JSONObject(), readiness: ReadinessCheck? = nil, lifetime: UInt64? = nil, idle: UInt64 = 60) async throws -> ScheduleResponse {
            var executable = DockerExecutableConfig(image: image ?? (pool == "batch" ? processImage : registryImage))
            executable.resourceLimits.memoryLimitBytes = memory
            let request = ScheduleRequest(cluster: MixedFleetTests.cluster, maxIdleSeconds: DurationSeconds(idle), executable: executable, runtimeClass: runtimeClass,
                                          pool: pool, runtimeOptions: options, readiness: readiness, maxLifetimeSeconds: lifetime.map { DurationSeconds($0) })
            return try await messenger.request(PlaneSubjects.schedule(MixedFleetTests.cluster), request, timeout: .seconds(30))
        }

        func scheduled(_ runtimeClass: FleetLabel? = nil, pool: FleetLabel? = nil, options: JSONObject = JSONObject(), readiness: ReadinessCheck? = nil,
                       lifetime: UInt64? = nil, idle: UInt64 = 60, memory: Int64? = nil) async throws -> ScheduledBackend {
            let response = try await schedule(runtimeClass, pool: pool, memory: memory, options: options, readiness: readiness, lifetime: lifetime, idle: idle)
            guard case .scheduled(let backend) = response else { throw TestSupportError("not scheduled: \(response)\n\(logs)") }
            return backend
        }

        func state(of backend: BackendID) async -> String? {
            guard let response = try? await HTTPProbe(port: httpPort).get("/backend/\(backend)/status"), response.status == 200,
                  let json = try? JSONParser.parse(response.body).objectValue else { return nil }
            return json["state"]?.stringValue
        }

        func waitFor(_ state: String, _ backend: ScheduledBackend, timeout: Duration = .seconds(60)) async throws -> Bool {
            try await eventually(timeout: timeout) { await self.state(of: backend.backendID) == state }
        }

        /// GET `path` from inside the backend, through its drone's proxy.
        func get(_ backend: ScheduledBackend, _ path: String) async throws -> HTTPProbe.Response {
            try await HTTPProbe(port: proxies[backend.drone] ?? 0, hostHeader: "\(backend.backendID).\(MixedFleetTests.cluster)").get(path)
        }

        func terminate(_ backend: ScheduledBackend) async throws {
            let request = TerminationRequest(cluster: MixedFleetTests.cluster, backendID: backend.backendID)
            try await messenger.client.publish(PlaneSubjects.terminate(MixedFleetTests.cluster, backend.backendID).subject, payload: WireEncoder().encode(request))
        }
    }

    @Test(.timeLimit(.minutes(10))) func classesPoolsCapacityOptionsReadinessAndLifetimes() async throws {
        _ = try await DockerTestImage.shared.ensureLoaded()
        let registry = try await RegistryProcess.start()
        do {
            let image = try await registry.push(ociLayout: try await OCITestImage.shared.layout(), tag: OCITestImage.tag, as: "plane/fleet-server")
            try await withNATSServer { server in try await withFleet(server: server, registry: registry, image: image) { fleet in try await exercise(fleet) } }
        } catch {
            await registry.stop()
            throw error
        }
        await registry.stop()
    }

    func withFleet(server: NATSServerProcess, registry: RegistryProcess, image: String, _ body: (Fleet) async throws -> Void) async throws {
        let directory = try TestEnvironment.temporaryDirectory("mixed-fleet")
        let httpPort = try TestEnvironment.freePort()
        try """
            [nats]
            hosts = ["\(server.url)"]
            [scheduler]
            [http]
            bind_ip = "127.0.0.1"
            port = \(httpPort)
            cluster = "plane.test"
            [http.services.gpu]
            image = "\(image)"
            runtime_class = "gpu"
            """.write(toFile: directory + "/controller.toml", atomically: true, encoding: .utf8)
        let plane = try TestExecutables.path("plane")
        var children = [try ChildProcess(plane, arguments: ["controller", directory + "/controller.toml"])]
        let (docker, oci, process) = (DroneID.random(), DroneID.random(), DroneID.random())
        var proxies: [DroneID: Int] = [:]
        let common = "memory_bytes = 1073741824\ndrain_on_shutdown = true\n"
        let drones: [(DroneID, String, String)] = [
            (docker, "25000-25099", common + "runtime_classes = [\"container\", \"trusted\"]\n[agent.docker]\n"),
            (oci, "25100-25199", common + "runtime = \"oci\"\nruntime_classes = [\"container\", \"sandbox\"]\n[agent.oci]\nruntime = \"crun\"\ninsecure_registries = [\"\(registry.address)\"]\n"),
            (process, "25200-25299", common + "runtime = \"process\"\nruntimes_dir = \"\(PythonEnvironment.packageRoot)/runtimes\"\nruntime_classes = [\"process\"]\npool = \"batch\"\n"),
        ]
        for (id, ports, extra) in drones {
            let proxyPort = try TestEnvironment.freePort()
            proxies[id] = proxyPort
            let config = try DroneConfigFile.write(in: try TestEnvironment.temporaryDirectory("mixed-fleet-drone"), drone: id.rawValue, nats: server.url, ports: ports,
                                                   extra: extra + "[proxy]\nbind_ip = \"127.0.0.1\"\nhttps_port = \(proxyPort)\n")
            children.append(try ChildProcess(plane, arguments: ["drone", config]))
        }
        let client = try await server.connectedClient()
        let fleet = Fleet(messenger: PlaneMessenger(client: client), natsURL: server.url, httpPort: httpPort, docker: docker, oci: oci, process: process,
                          proxies: proxies, registryImage: image, processImage: try TestExecutables.path("plane-test-server"), children: children)
        do {
            try await body(fleet)
        } catch {
            Issue.record("\(error)\n\(fleet.logs)")
        }
        // The drones end their backends as they stop (drain_on_shutdown).
        for child in children.reversed() {
            child.signal(SIGTERM)
            if await child.waitForExit(timeout: .seconds(40)) == nil { child.signal(SIGKILL) }
        }
        let dockerCLI = SystemProgram("docker", debianPackage: "docker.io")
        let left = (try? await dockerCLI.run(["ps", "-aq", "--filter", "label=dev.plane.drone=\(docker)"])) ?? ""
        for id in left.split(separator: "\n") { _ = try? await dockerCLI.run(["rm", "-f", String(id)]) }
        #expect(left.isEmpty, "the Docker drone left containers behind")
        await client.close()
        try? FileManager.default.removeItem(atPath: directory)
    }

    func exercise(_ fleet: Fleet) async throws {
        // Every drone is a candidate once its heartbeat (with its classes) reached the scheduler.
        for (runtimeClass, pool) in [("trusted", nil), ("sandbox", nil), ("process", "batch")] as [(FleetLabel, FleetLabel?)] {
            #expect(try await eventually(timeout: .seconds(90)) {
                if case .scheduled? = try? await fleet.schedule(runtimeClass, pool: pool, idle: 5) { return true }
                return false
            }, "\(runtimeClass) was never scheduled\n\(fleet.logs)")
        }

        // 30 spawns: classes land only on the drones that have them; without a class, on any
        // drone of the default pool; the pool only on its drone.
        var landed: [String: Set<DroneID>] = [:]
        let plan: [(String, FleetLabel?, FleetLabel?)] = (0..<6).flatMap { _ in
            [("sandbox", "sandbox", nil), ("trusted", "trusted", nil), ("container", "container", nil), ("none", nil, nil), ("batch", nil, "batch")]
        }
        for (name, runtimeClass, pool) in plan {
            let backend = try await fleet.scheduled(runtimeClass, pool: pool, idle: 20)
            landed[name, default: []].insert(backend.drone)
        }
        #expect(landed["sandbox"] == [fleet.oci])
        #expect(landed["trusted"] == [fleet.docker])
        #expect(landed["batch"] == [fleet.process])
        #expect(landed["container"]?.isSubset(of: [fleet.docker, fleet.oci]) == true)
        #expect(landed["none"]?.isSubset(of: [fleet.docker, fleet.oci]) == true)
        #expect(landed["container", default: []].union(landed["none", default: []]).count == 2, "power of two among the matching drones: \(landed)")

        // No match is NoDroneAvailable with the reason: an unknown class, a class outside
        // the pool, more memory than any drone has free.
        let unknown = try await fleet.schedule("gpu")
        #expect(unknown == .noDroneAvailable(reason: "no ready drone in the default pool has runtime class 'gpu' (classes offered there: container, sandbox, trusted)"))
        guard case .noDroneAvailable(let outsidePool?) = try await fleet.schedule("sandbox", pool: "batch") else { Issue.record("sandbox in batch"); return }
        #expect(outsidePool.contains("pool 'batch'") && outsidePool.contains("classes offered there: process"), "\(outsidePool)")
        guard case .noDroneAvailable(let tooBig?) = try await fleet.schedule("container", memory: 2 << 30) else { Issue.record("2 GiB"); return }
        #expect(tooBig.contains("\(2 << 30) bytes of memory free"), "\(tooBig)")
        // Memory is reserved by what runs: 768 MiB fit once on the OCI drone, not twice.
        let big = try await fleet.scheduled("sandbox", memory: 768 << 20)
        guard case .noDroneAvailable(let second?) = try await fleet.schedule("sandbox", memory: 768 << 20) else { Issue.record("second 768 MiB"); return }
        #expect(second.contains("memory free"), "\(second)")
        try await fleet.terminate(big)
        #expect(try await eventually(timeout: .seconds(30)) {
            if case .scheduled(let again)? = try? await fleet.schedule("sandbox", memory: 768 << 20, idle: 5) {
                try await fleet.terminate(again)
                return true
            }
            return false
        }, "the memory is free again once the backend ended")

        // A drone checks the same itself (a spawn sent to it directly, as by a confused or
        // hostile controller): another class, another pool, more memory than it has free.
        for (what, runtimeClass, pool, memory) in [("class", "gpu", nil, nil), ("pool", nil, "batch", nil), ("memory", nil, nil, Int64(2 << 30))] as [(String, FleetLabel?, FleetLabel?, Int64?)] {
            var executable = DockerExecutableConfig(image: fleet.registryImage)
            executable.resourceLimits.memoryLimitBytes = memory
            let spawn = SpawnRequest(cluster: Self.cluster, droneID: fleet.oci, maxIdleSeconds: 30, backendID: .random(), executable: executable,
                                     runtimeClass: runtimeClass, pool: pool)
            #expect(try await fleet.messenger.request(PlaneSubjects.spawn(fleet.oci), spawn, timeout: .seconds(10)) == false, "\(what)")
        }

        // The CLI and the HTTP API show the reason.
        let (status, output) = try await SystemProgram.run(executable: try TestExecutables.path("plane"),
                                                           ["spawn", "plane.test", fleet.registryImage, "--runtime-class", "gpu", "--nats", fleet.natsURL])
        #expect(status == 1 && output.contains("runtime class 'gpu'"), "\(output)")
        let (answer, _) = try await HTTPProbe(port: fleet.httpPort).raw("POST /service/gpu/spawn HTTP/1.1\r\nHost: api\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        #expect(answer.hasPrefix("HTTP/1.1 503") && answer.contains("runtime class 'gpu'"), "\(answer)")
        let (listed, listing) = try await SystemProgram.run(executable: try TestExecutables.path("plane"), ["list-drones", "--json", "--wait", "6", "--nats", fleet.natsURL])
        #expect(listed == 0)
        let rows = listing.split(separator: "\n").compactMap { try? JSONParser.parse(String($0)).objectValue }
        let byDrone = Dictionary(rows.compactMap { row in row["drone"]?.stringValue.map { ($0, row) } }, uniquingKeysWith: { a, _ in a })
        #expect(byDrone[fleet.docker.rawValue]?["runtime"] == .string("docker"), "\(listing)")
        #expect(byDrone[fleet.oci.rawValue]?["runtime_classes"] == .array([.string("container"), .string("sandbox")]))
        #expect(byDrone[fleet.process.rawValue]?["pool"] == .string("batch") && byDrone[fleet.process.rawValue]?["runtime"] == .string("process"))
        #expect(byDrone[fleet.oci.rawValue]?["memory_bytes"] == .integer(1 << 30), "\(listing)")

        // Per-spawn options reach the runtime, seen from inside the backend.
        let ociPids = try await fleet.scheduled("sandbox", options: JSONObject([("pids_limit", .integer(20))]))
        let dockerPids = try await fleet.scheduled("trusted", options: JSONObject([("pids_limit", .integer(20))]))
        let files = try await fleet.scheduled(pool: "batch", options: JSONObject([("nofile", .integer(100))]))
        for backend in [ociPids, dockerPids, files] { #expect(try await fleet.waitFor("Ready", backend), "\(backend)\n\(fleet.logs)") }
        for backend in [ociPids, dockerPids] {
            let body = try await fleet.get(backend, "/probe/spawn/40").body
            let started = Int((try? JSONParser.parse(body))?.objectValue?["started"]?.stringValue ?? "") ?? 99
            #expect(started < 20, "pids_limit 20 on \(backend.drone): \(body)")
        }
        let limits = try await fleet.get(files, "/probe/read/proc/self/limits").body
        #expect(limits.contains(/Max open files\s+100\s+100/), "\(limits)")
        // Options no runtime of the matching drones takes are refused before any drone is asked.
        guard case .error(let refused) = try await fleet.schedule("sandbox", options: JSONObject([("nofile", .integer(100))])) else { Issue.record("nofile on OCI"); return }
        #expect(refused.code == "invalid_runtime_options" && refused.message.contains("runtime_options"), "\(refused)")

        // Readiness: the spawn's path must answer below 400 within its timeout (the drone's
        // own check takes any answer, and waits 30 s).
        let missing = try await fleet.scheduled("sandbox", readiness: try ReadinessCheck(path: "/no-such-path", timeoutSeconds: 3))
        let healthy = try await fleet.scheduled("sandbox", readiness: try ReadinessCheck(path: "/env"))
        let since = ContinuousClock.now
        #expect(try await fleet.waitFor("TimedOutBeforeReady", missing, timeout: .seconds(25)), "\(fleet.logs)")
        #expect(ContinuousClock.now - since < .seconds(25))
        #expect(try await fleet.waitFor("Ready", healthy))
        // A readiness path whose answer never ends (an event stream, a byte a second) is
        // decided by its head; the body is not waited for beyond the probe's timeout (the
        // probe waited for it forever, so the backend stayed Starting and its timeout never came).
        let streaming = try await fleet.scheduled("sandbox", readiness: try ReadinessCheck(path: "/sse/100000/1000", timeoutSeconds: 20))
        #expect(try await fleet.waitFor("Ready", streaming), "\(fleet.logs)")

        // A lifetime ends a busy backend.
        // Timed from before the request: the drone's lifetime starts when it accepts the
        // spawn, which can be a while before the schedule's answer arrives here.
        let spawned = ContinuousClock.now
        let mortal = try await fleet.scheduled("sandbox", lifetime: 5, idle: 600)
        #expect(try await fleet.waitFor("Ready", mortal))
        var answered = 0
        var ended = false
        while ContinuousClock.now - spawned < .seconds(30) {
            if (try? await fleet.get(mortal, "/"))?.status == 200 { answered += 1 }
            if await fleet.state(of: mortal.backendID) == "Terminated" {
                ended = true
                break
            }
            try await Task.sleep(for: .milliseconds(300))
        }
        let lived = ContinuousClock.now - spawned
        #expect(ended && answered >= 5 && lived >= .seconds(5) && lived < .seconds(20), "ended \(ended) after \(lived), \(answered) answers")
    }
}
