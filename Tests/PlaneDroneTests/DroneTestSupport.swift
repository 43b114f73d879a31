import ContainerRuntime
import DockerRuntime
import ExternalRuntime
import Logging
import NATS
import OCIRuntime
import PlaneCore
import PlaneDrone
import PlaneMessaging
import PlaneTestSupport
import ScriptedRuntime
import ServiceLifecycle
import Synchronization
import Testing

/// Collects what a drone publishes: heartbeats, registrations, DNS records, logs, stats.
final class DroneObserver: Sendable {
    let heartbeats = Mutex<[DroneStatusMessage]>([])
    let registrations = Mutex<[DroneConnectRequest]>([])
    let dns = Mutex<[SetDnsRecord]>([])
    let logs = Mutex<[DroneLogMessage]>([])
    let stats = Mutex<[BackendStatsMessage]>([])
    let tasks = Mutex<[Task<Void, Never>]>([])
    let client: NATSClient

    init(server: NATSServerProcess) async throws {
        client = try await server.connectedClient()
        let messenger = PlaneMessenger(client: client)
        let heartbeats = try await messenger.subscribe(PlaneSubjects.droneStatusAll)
        let registrations = try await messenger.subscribe(PlaneSubjects.droneRegisterPattern)
        let dns = try await messenger.subscribe(PlaneSubjects.dnsAll)
        let logs = try await messenger.subscribe(PlaneSubjects.backendLogAll)
        let stats = try await messenger.subscribe(PlaneSubjects.backendStatsAll)
        let all = [
            Task { [weak self] in for await d in heartbeats { if case .success(let m) = d.message { self?.heartbeats.withLock { $0.append(m) } } } },
            Task { [weak self] in for await d in registrations { if case .success(let m) = d.message { self?.registrations.withLock { $0.append(m) } } } },
            Task { [weak self] in for await d in dns { if case .success(let m) = d.message { self?.dns.withLock { $0.append(m) } } } },
            Task { [weak self] in for await d in logs { if case .success(let m) = d.message { self?.logs.withLock { $0.append(m) } } } },
            Task { [weak self] in for await d in stats { if case .success(let m) = d.message { self?.stats.withLock { $0.append(m) } } } },
        ]
        tasks.withLock { $0 = all }
    }

    func lastHeartbeat(of drone: DroneID) -> DroneStatusMessage? { heartbeats.withLock { $0.last { $0.droneID == drone } } }

    func close() async {
        tasks.withLock { $0.forEach { $0.cancel() } }
        await client.close()
    }
}

/// Which runtime the agent tests run on: the real dockerd, runc through the OCI runtime
/// (each drone its own runtime root below its state directory), or the scripted in-memory
/// runtime (same contract, checked by `ScriptedRuntimeConformanceTests`; fast, and able to
/// script faults).
enum AgentRuntimeKind: String, CaseIterable, Sendable, CustomStringConvertible {
    case scripted, docker, oci
    /// The reference runtime plugin `runtimes/process`, through the plugin protocol.
    case process
    var description: String { rawValue }
}

/// Makes the runtimes of one test's drones: Docker runtimes on the one real daemon, or
/// scripted runtimes on one `ScriptedHost` (two drones share it as they share a daemon).
struct TestRuntimes: Sendable {
    let kind: AgentRuntimeKind
    /// The `plane-test-server` image as this runtime names it.
    let image: String
    let host = ScriptedHost()
    /// The plugin runtimes made for the test's drones; their processes are stopped when the
    /// test ends (after the drones, so a test can still ask a stopped drone's runtime).
    let plugins = PluginRuntimes()
    /// For `.scripted`: serve backends on this address of their own instead of on the
    /// host's network (the runtime then offers `bridge` networking only).
    var ownAddress: String?

    init(_ kind: AgentRuntimeKind) async throws {
        self.kind = kind
        switch kind {
        case .docker: image = try await DockerTestImage.shared.ensureLoaded()
        case .oci: image = try await OCITestImage.shared.reference()
        case .scripted: image = "plane-test-server"
        case .process: image = try TestExecutables.path("plane-test-server")
        }
    }

    /// An image reference of the right form that this runtime cannot get (ErrorLoading).
    var missingImage: String { kind == .process ? "/nonexistent/plane-no-such-server" : "127.0.0.1:9/plane-no-such-image:latest" }

    func make(drone: DroneID, stateDirectory: String, allowMounts: Bool, stats: Bool = true) async throws -> any ContainerRuntime {
        switch kind {
        case .scripted:
            return ScriptedRuntime(host: host, droneID: drone, stats: stats, ownAddress: ownAddress)
        case .docker:
            var docker = DockerRuntimeConfiguration()
            docker.allowMounts = allowMounts
            var logger = Logger(label: "test.docker")
            logger.logLevel = .warning
            return try await DockerRuntime.make(configuration: docker, droneID: drone, logger: logger)
        case .oci:
            var oci = OCIRuntimeConfiguration(stateDirectory: "\(stateDirectory)/oci")
            oci.allowMounts = allowMounts
            oci.shimExecutable = try TestExecutables.path("plane")
            var logger = Logger(label: "test.oci")
            logger.logLevel = .warning
            return try await OCIRuntime.make(configuration: oci, droneID: drone, logger: logger)
        case .process:
            var logger = Logger(label: "test.process")
            logger.logLevel = .warning
            let manifest = try RuntimePluginManifest.load(directory: PythonEnvironment.packageRoot + "/runtimes/process")
            let runtime = try await ExternalRuntime.make(manifest: manifest, context: RuntimeContext(droneID: drone, stateDirectory: stateDirectory, logger: logger))
            plugins.list.withLock { $0.append(runtime) }
            return runtime
        }
    }
}

final class PluginRuntimes: Sendable {
    let list = Mutex<[ExternalRuntime]>([])

    func shutdown() async {
        for runtime in list.withLock({ $0 }) { await runtime.shutdown() }
    }
}

/// A nats-server, a relay answering state updates, an observer of what drones publish,
/// and the runtimes of `kind`, for one test.
func withDroneCluster(_ kind: AgentRuntimeKind, _ body: (NATSServerProcess, TestRelay, DroneObserver, TestRuntimes) async throws -> Void) async throws {
    let runtimes = try await TestRuntimes(kind)
    try await withNATSServer { server in
        let relay = try await TestRelay(server: server)
        let observer = try await DroneObserver(server: server)
        do {
            try await body(server, relay, observer, runtimes)
        } catch {
            await observer.close()
            await relay.close()
            await runtimes.plugins.shutdown()
            throw error
        }
        await observer.close()
        await relay.close()
        await runtimes.plugins.shutdown()
    }
}

/// A drone agent on a test runtime, with a short heartbeat and stats interval.
final class RunningDrone: Sendable {
    let agent: DroneAgent
    let client: NATSClient
    let store: DroneStore
    let runtime: any ContainerRuntime
    let statePath: String
    let group: ServiceGroup
    let task: Task<Void, Never>

    var id: DroneID { agent.droneID }

    init(server: NATSServerProcess, runtimes: TestRuntimes, id: DroneID = .random(), statePath: String? = nil, stats: Bool = true,
         adjust: (inout AgentConfiguration) -> Void = { _ in }) async throws {
        let statePath = try statePath ?? TestEnvironment.temporaryDirectory("drone")
        self.statePath = statePath
        var configuration = AgentConfiguration(ip: .literal("127.0.0.1"))
        configuration.portRange = 20000...21999
        // Generous: CI's busy machine has taken more than 20 s to start a Docker container.
        configuration.startupTimeout = .seconds(60)
        configuration.stopGrace = .seconds(2)
        adjust(&configuration)
        var timing = AgentTiming()
        timing.heartbeat = .milliseconds(500)
        timing.stats = .seconds(1)
        timing.activityFlush = .milliseconds(500)
        timing.shutdownFlush = .seconds(5)
        var logger = Logger(label: "test.drone")
        logger.logLevel = .warning
        runtime = try await runtimes.make(drone: id, stateDirectory: statePath, allowMounts: configuration.allowVolumeMounts, stats: stats)
        store = try DroneStore(path: statePath + "/drone.sqlite3")
        client = try await server.connectedClient()
        agent = DroneAgent(droneID: id, cluster: "plane.test", configuration: configuration, runtime: runtime, store: store, client: client,
                           publicIP: "127.0.0.1", timing: timing, logger: logger)
        try await agent.start()
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(services: [.init(service: agent)], logger: logger))
        self.group = group
        task = Task { try? await group.run() }
    }

    /// Stops the agent as SIGTERM does, with a graceful shutdown (backends keep running
    /// unless it drains on shutdown).
    func stop() async {
        await group.triggerGracefulShutdown()
        _ = await task.value
        await client.close()
    }
}

func spawnRequest(drone: DroneID, image: String, backend: BackendID = .random(), idle: UInt64 = 30, env: [String: String] = [:],
                  mounts: [VolumeMount] = [], token: String? = nil) -> SpawnRequest {
    SpawnRequest(cluster: "plane.test", droneID: drone, maxIdleSeconds: DurationSeconds(idle), backendID: backend,
                 executable: DockerExecutableConfig(image: image, env: env, volumeMounts: mounts), bearerToken: token)
}

/// Sends a spawn request to the drone; its answer.
func spawn(_ request: SpawnRequest, via client: NATSClient) async throws -> Bool {
    try await PlaneMessenger(client: client).request(PlaneSubjects.spawn(request.droneID), request, timeout: .seconds(10))
}
