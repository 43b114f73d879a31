import Logging
import NATS
import PlaneController
import PlaneCore
import PlaneDNS
import PlaneMessaging
import PlaneTestSupport
import Synchronization
import Testing

/// A drone written as test code: heartbeats on `drone.{id}.status` and answers spawn
/// requests by policy, remembering each.
final class FakeDrone: Sendable {
    /// `acceptLate`: answers true after the delay (a drone slower than the scheduler's
    /// spawn timeout, which still starts the backend). `reportUnanswered`: reports the
    /// backend `Loading` (as a drone does once it recorded it) and never answers (the
    /// answer lost on its way).
    enum Policy: Sendable { case accept, refuse, silent, acceptLate(Duration), reportUnanswered }

    let id = DroneID.random()
    let cluster: ClusterName
    let client: NATSClient
    let messenger: PlaneMessenger
    let policy: Mutex<Policy>
    let ready = Mutex(true)
    let runningBackends = Mutex<UInt32?>(nil)
    let spawns = Mutex<[SpawnRequest]>([])
    /// The per-connect access tokens it holds, by backend.
    let accessTokens = Mutex<[BackendID: Set<String>]>([:])
    private let tasks = Mutex<[Task<Void, Never>]>([])

    init(server: NATSServerProcess, cluster: ClusterName = "plane.test", policy: Policy = .accept) async throws {
        self.cluster = cluster
        self.client = try await server.connectedClient()
        self.messenger = PlaneMessenger(client: client)
        self.policy = Mutex(policy)
        let subscription = try await messenger.subscribe(PlaneSubjects.spawn(id))
        let spawnTask = Task { [weak self] in
            for await delivery in subscription {
                guard case .success(let request) = delivery.message, let self else { continue }
                self.spawns.withLock { $0.append(request) }
                switch self.policy.withLock({ $0 }) {
                case .accept: _ = try? await delivery.respond(true)
                case .refuse: _ = try? await delivery.respond(false)
                case .silent: break
                case .reportUnanswered:
                    let update = UpdateBackendStateMessage(cluster: self.cluster, state: .loading, backend: request.backendID, time: .now(), drone: self.id)
                    _ = try? await self.messenger.request(PlaneSubjects.updateBackendState(self.cluster, request.backendID), update, timeout: .seconds(5))
                case .acceptLate(let delay):
                    try? await Task.sleep(for: delay)
                    _ = try? await delivery.respond(true)
                }
            }
        }
        // Access tokens of the backends it accepted: stored and confirmed, as a drone does.
        let tokenSubscription = try await messenger.subscribe(PlaneSubjects.accessTokenAll(cluster))
        let tokenTask = Task { [weak self] in
            for await delivery in tokenSubscription {
                guard case .success(let request) = delivery.message, let self,
                      self.spawns.withLock({ $0.contains { $0.backendID == request.backendID } }) else { continue }
                self.accessTokens.withLock { tokens in
                    if request.revoke { tokens[request.backendID]?.remove(request.token) } else { tokens[request.backendID, default: []].insert(request.token) }
                }
                _ = try? await delivery.respond(true)
            }
        }
        tasks.withLock { $0.append(contentsOf: [spawnTask, tokenTask]) }
    }

    /// Sends one heartbeat now.
    func heartbeat() async throws {
        let ready = ready.withLock { $0 }
        let message = DroneStatusMessage(droneID: id, cluster: cluster, droneVersion: "test", ready: ready, state: ready ? .ready : .draining,
                                         runningBackends: runningBackends.withLock { $0 })
        try await messenger.publish(PlaneSubjects.droneStatus(id), message)
        try await client.flush()
    }

    /// Heartbeats every `interval` until stopped.
    func startHeartbeats(every interval: Duration = .milliseconds(500)) async throws {
        try await heartbeat()
        let task = Task { [weak self] () -> Void in
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                try? await self?.heartbeat()
            }
        }
        tasks.withLock { $0.append(task) }
    }

    func stopHeartbeats() {
        let all = tasks.withLock { $0 }
        if all.count > 1 { all[1...].forEach { $0.cancel() } }
    }

    var spawnCount: Int { spawns.withLock { $0.count } }

    /// Renews this drone's lease as a `plane drone` does (lease_hard `hard`).
    func renewLease(epoch: UInt64?, hard: Duration = .seconds(2), backends: [BackendID]? = nil, timeout: Duration = .seconds(5)) async throws -> DroneLeaseGrant {
        let request = DroneLeaseRequest(cluster: cluster, drone: id, epoch: epoch, leaseHardMilliseconds: UInt64(hard.components.seconds * 1000), backends: backends)
        return try await messenger.request(PlaneSubjects.lease(cluster, id), request, timeout: timeout)
    }

    /// `count` drones of `plane.test`, heartbeating.
    static func heartbeating(_ count: Int, server: NATSServerProcess) async throws -> [FakeDrone] {
        var drones: [FakeDrone] = []
        for _ in 0..<count {
            let drone = try await FakeDrone(server: server)
            try await drone.startHeartbeats()
            drones.append(drone)
        }
        return drones
    }

    func close() async {
        tasks.withLock { $0 }.forEach { $0.cancel() }
        await client.close()
    }
}

/// A controller on a real nats-server, served by `run()` in a task.
final class RunningController: Sendable {
    let controller: Controller
    let client: NATSClient
    let task: Task<Void, Never>

    init(server: NATSServerProcess, adjust: (inout ControllerConfiguration) -> Void = { _ in }) async throws {
        var configuration = ControllerConfiguration(nats: server.clientConfiguration(), scheduler: SchedulerConfiguration())
        configuration.scheduler?.spawnTimeout = .seconds(2)
        adjust(&configuration)
        client = try await server.connectedClient()
        var logger = Logger(label: "test.controller")
        logger.logLevel = .warning
        controller = Controller(configuration: configuration, client: client, logger: logger)
        try await controller.start()
        let controller = controller
        task = Task { try? await controller.run() }
    }

    func stop() async {
        task.cancel()
        _ = await task.value
        await controller.stop()
        await client.close()
    }
}

/// Runs `body` with a nats-server (JetStream) and cleans up whatever happens.
func withCluster(_ body: (NATSServerProcess) async throws -> Void) async throws {
    try await withNATSServer { server in try await body(server) }
}

func scheduleRequest(cluster: ClusterName = "plane.test", lock: LockName? = nil, backend: BackendID? = nil, token: Bool = false) -> ScheduleRequest {
    ScheduleRequest(cluster: cluster, backendID: backend, maxIdleSeconds: 30, executable: DockerExecutableConfig(image: "plane-test-server"),
                    requireBearerToken: token, lock: lock)
}


/// Sends `count` copies of `request` at once; the replies in arrival order.
func concurrentRequests(_ count: Int, client: PlaneMessenger, _ request: ScheduleRequest) async throws -> [ScheduleResponse] {
    try await withThrowingTaskGroup(of: ScheduleResponse.self) { group in
        for _ in 0..<count {
            group.addTask { try await client.request(PlaneSubjects.schedule("plane.test"), request, timeout: .seconds(30)) }
        }
        return try await group.reduce(into: [ScheduleResponse]()) { $0.append($1) }
    }
}
