import ContainerRuntime
import DockerRuntime
import Logging
import NATS
import PlaneCore
import PlaneDrone
import PlaneMessaging
import PlaneTestSupport
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

/// A drone agent on the real dockerd, with a short heartbeat and stats interval.
final class RunningDrone: Sendable {
    let agent: DroneAgent
    let client: NATSClient
    let store: DroneStore
    let runtime: DockerRuntime
    let statePath: String
    let task: Task<Void, Never>

    var id: DroneID { agent.droneID }

    init(server: NATSServerProcess, id: DroneID = .random(), statePath: String? = nil, adjust: (inout AgentConfiguration) -> Void = { _ in }) async throws {
        let statePath = try statePath ?? TestEnvironment.temporaryDirectory("drone")
        self.statePath = statePath
        var configuration = AgentConfiguration(ip: .literal("127.0.0.1"))
        configuration.portRange = 20000...21999
        configuration.startupTimeout = .seconds(20)
        configuration.stopGrace = .seconds(2)
        adjust(&configuration)
        var timing = AgentTiming()
        timing.heartbeat = .milliseconds(500)
        timing.stats = .seconds(1)
        timing.activityFlush = .milliseconds(500)
        timing.shutdownFlush = .seconds(5)
        var docker = DockerRuntimeConfiguration()
        docker.allowMounts = configuration.allowVolumeMounts
        var logger = Logger(label: "test.drone")
        logger.logLevel = .warning
        runtime = try await DockerRuntime.make(configuration: docker, droneID: id, logger: logger)
        store = try DroneStore(path: statePath + "/drone.sqlite3")
        client = try await server.connectedClient()
        agent = DroneAgent(droneID: id, cluster: "plane.test", configuration: configuration, runtime: runtime, store: store, client: client,
                           publicIP: "127.0.0.1", timing: timing, logger: logger)
        try await agent.start()
        let agent = agent
        task = Task { try? await agent.run() }
    }

    /// Stops the agent (backends keep running unless it drains on shutdown).
    func stop() async {
        task.cancel()
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
