import ContainerRuntime
import Logging
import NATS
import NIOCore
import NIOPosix
import PlaneCore
import PlaneMessaging
import PlaneProxy
import ServiceLifecycle
import Synchronization
import Tracing

/// Intervals of the agent's periodic work; production values by default, shorter in tests.
public struct AgentTiming: Sendable {
    public var heartbeat: Duration = .seconds(4)
    public var stats: Duration = .seconds(10)
    public var dnsRefresh: Duration = .seconds(50)
    public var activityFlush: Duration = .seconds(5)
    /// How long a graceful shutdown waits for the outbox to empty.
    public var shutdownFlush: Duration = .seconds(10)
    public init() {}
}

/// The drone's agent: turns spawn requests into backends on its `ContainerRuntime`,
/// heartbeats, drains, terminates, re-attaches after a restart, and reports every state
/// change through the durable outbox. A `Service`: `start()` subscribes and recovers,
/// `run()` serves until graceful shutdown.
public final class DroneAgent: Service, Sendable {
    public let droneID: DroneID
    public let cluster: ClusterName
    public let configuration: AgentConfiguration
    public let routes: RouteTable
    let context: AgentContext
    let timing: AgentTiming
    let logger: Logger
    /// The room the drone offers backends (`memory_bytes`, `cpus`, `max_backends`).
    let capacityPlan: DroneCapacityPlan
    /// The runtime with adoption of warm backends (`context.runtime` is it).
    let adopting: AdoptingRuntime
    /// The warm pools (nil with `[agent] warm_pools = false`); set once, in `init`.
    private let warmPoolsBox = Mutex<WarmPoolKeeper?>(nil)
    public var warmPools: WarmPoolKeeper? { warmPoolsBox.withLock { $0 } }

    struct State {
        var draining = false
        var stopping = false
        var supervisors: [BackendID: BackendSupervisor] = [:]
        var reservedPorts: Set<Int> = []
        /// Memory reserved by spawns being accepted (not yet supervised).
        var pendingMemory: [BackendID: UInt64] = [:]
        /// Backends whose spawn is being accepted right now (a repeat of it waits).
        var accepting: Set<BackendID> = []
        var nextPort: Int?
        var started = false
        /// The lease lock-holding backends run under.
        var lease: DroneLease
        /// The next renewal lists the drone's backends (after a start or a failed renewal).
        var reconcileNeeded = true
        var renewals = 0
        var failedRenewals = 0
    }

    struct Subscriptions: Sendable {
        var spawns: PlaneSubscription<SpawnRequest, Bool>
        var terminations: PlaneSubscription<TerminationRequest, NullReply>
        var drains: PlaneSubscription<DrainDrone, NullReply>
        var accessTokens: PlaneSubscription<BackendAccessTokenMessage, Bool>
    }

    private let state: Mutex<State>
    private let subscriptions = Mutex<Subscriptions?>(nil)

    public init(droneID: DroneID, cluster: ClusterName, configuration: AgentConfiguration, runtime: any ContainerRuntime,
                store: DroneStore, client: NATSClient, publicIP: String, routes: RouteTable = RouteTable(),
                timing: AgentTiming = AgentTiming(), logger: Logger) {
        self.droneID = droneID
        self.cluster = cluster
        self.configuration = configuration
        self.routes = routes
        self.timing = timing
        self.logger = logger
        capacityPlan = DroneCapacityPlan(configuration: configuration)
        state = Mutex(State(lease: DroneLease(timing: configuration.lease)))
        let messenger = PlaneMessenger(client: client, logger: logger, limits: configuration.limits.json)
        adopting = AdoptingRuntime(runtime)
        context = AgentContext(droneID: droneID, cluster: cluster, configuration: configuration, runtime: adopting, store: store,
                               outbox: StateOutbox(store: store, messenger: messenger, logger: logger), routes: routes,
                               messenger: messenger, publicIP: publicIP, statsInterval: timing.stats, dnsInterval: timing.dnsRefresh,
                               logger: logger)
        if configuration.warmPools {
            let keeper = WarmPoolKeeper(makeWarmPoolDependencies())
            warmPoolsBox.withLock { $0 = keeper }
        }
    }

    /// What the warm pools need of this agent.
    private func makeWarmPoolDependencies() -> WarmPoolKeeper.Dependencies {
        let jetStream = context.messenger.jetStream
        let cluster = self.cluster
        let limits = configuration.limits.json
        let prefix = cluster.subjectForm + "."
        return WarmPoolKeeper.Dependencies(
            runtime: adopting, configuration: configuration, cluster: cluster,
            fetchDefinitions: {
                let bucket = try await jetStream.existingKeyValue(WarmPoolDefinition.bucket)
                var definitions: [WarmPoolDefinition] = []
                for key in try await bucket.keys() where key.hasPrefix(prefix) {
                    guard let entry = try await bucket.get(key),
                          let definition = try? WireDecoder(limits: limits).decode(WarmPoolDefinition.self, from: entry.value), definition.key == key else { continue }
                    definitions.append(definition)
                }
                return definitions
            },
            reservePort: { [unowned self] in try await self.reservePort() },
            releasePort: { [unowned self] port in self.state.withLock { _ = $0.reservedPorts.remove(port) } },
            hasRoom: { [unowned self] memory in
                self.state.withLock { state in
                    let (reserved, live) = Self.reservations(state, warm: self.warmPools)
                    return (try? self.capacityPlan.admit(memory: memory, reservedMemory: reserved, liveBackends: live)) != nil
                }
            },
            accepting: { [unowned self] in self.state.withLock { !$0.draining && !$0.stopping && $0.started } },
            makeSpec: { [unowned self] definition, id, port in
                var request = SpawnRequest(cluster: definition.cluster, droneID: self.droneID, maxIdleSeconds: DurationSeconds(60), backendID: id,
                                           executable: definition.executable, runtimeClass: definition.runtimeClass, pool: definition.pool,
                                           runtimeOptions: definition.runtimeOptions, readiness: definition.readiness)
                request.warmPool = definition.name
                try self.checkRunnable(request)
                return try self.makeSpec(request, port: port)
            },
            logger: logger)
    }

    public var isDraining: Bool { state.withLock { $0.draining } }

    /// Backends this agent is running (any state not finished).
    public var supervisedBackends: [BackendID] { state.withLock { Array($0.supervisors.keys) } }

    // MARK: Start

    public func start() async throws {
        if state.withLock({ $0.started }) { return }
        let messenger = context.messenger
        let spawns = try await messenger.subscribe(PlaneSubjects.spawn(droneID))
        let terminations = try await messenger.subscribe(PlaneSubjects.terminateAll(cluster))
        let drains = try await messenger.subscribe(PlaneSubjects.drain(cluster, droneID))
        let accessTokens = try await messenger.subscribe(PlaneSubjects.accessTokenAll(cluster))
        subscriptions.withLock { $0 = Subscriptions(spawns: spawns, terminations: terminations, drains: drains, accessTokens: accessTokens) }
        try await context.outbox.resume()
        try await loadLease()
        adopting.load(try await context.store.adoptions())
        try await recover()
        // A lease that ran out while the drone was down ends its lock-holding backends now.
        await performLease(state.withLock { $0.lease.tick(now: .now) })
        try await messenger.publish(PlaneSubjects.droneRegister, DroneConnectRequest(droneID: droneID, cluster: cluster, ip: context.publicIP))
        try await heartbeat()
        state.withLock { $0.started = true }
        logger.info("agent.started", metadata: ["plane.drone": "\(droneID)", "plane.cluster": "\(cluster)", "plane.runtime": "\(context.runtime.descriptor.name)"])
    }

    public func run() async throws {
        try await start()
        guard let subscriptions = subscriptions.withLock({ $0 }) else { return }
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                group.addTask {
                    await BoundedConcurrency.forEach(subscriptions.spawns, limit: BoundedConcurrency.handlersPerSubscription) { delivery in
                        await self.handleSpawn(delivery)
                    }
                }
                group.addTask {
                    for await delivery in subscriptions.accessTokens { await self.handleAccessToken(delivery) }
                }
                group.addTask {
                    for await delivery in subscriptions.terminations {
                        _ = try? await delivery.respond(NullReply())
                        guard case .success(let request) = delivery.message else { continue }
                        if let supervisor = self.state.withLock({ $0.supervisors[request.backendID] }) {
                            self.logger.info("agent.terminate", metadata: ["plane.backend": "\(request.backendID)", "plane.hard": "\(request.hard)"])
                            await supervisor.terminate(hard: request.hard)
                        }
                    }
                }
                group.addTask {
                    for await delivery in subscriptions.drains {
                        if case .success(let request) = delivery.message {
                            self.state.withLock { $0.draining = request.drain }
                            self.logger.notice("agent.drain", metadata: ["plane.drain": "\(request.drain)"])
                            try? await self.heartbeat()
                        }
                        _ = try? await delivery.respond(NullReply())
                    }
                }
                // Exits come from each backend's wait on the runtime. A runtime that cannot wait
                // natively (its wait asks `status` every 2 s) also has its event stream read,
                // so an exit it announces is handled at once.
                if !self.context.runtime.descriptor.capabilities.waits {
                    group.addTask {
                        for await event in self.context.runtime.events() {
                            guard let supervisor = self.state.withLock({ $0.supervisors[event.backendID] }) else { continue }
                            await supervisor.deliver(BackendLifecycle.observed(event.kind))
                        }
                    }
                }
                if let warmPools = self.warmPools {
                    group.addTask { await warmPools.run() }
                }
                group.addTask {
                    while !Task.isCancelled {
                        try? await Task.sleep(for: self.timing.heartbeat)
                        if Task.isCancelled { return }
                        do { try await self.heartbeat() } catch { self.logger.warning("agent.heartbeat_failed", metadata: ["error": "\(error)"]) }
                    }
                }
                group.addTask {
                    while !Task.isCancelled {
                        let sent = ContinuousClock.now
                        await self.renewLease()
                        try? await Task.sleep(until: sent + self.configuration.lease.renewInterval)
                    }
                }
                group.addTask {
                    while !Task.isCancelled {
                        try? await Task.sleep(for: .milliseconds(250))
                        await self.performLease(self.state.withLock { $0.lease.tick(now: .now) })
                    }
                }
                group.addTask {
                    while !Task.isCancelled {
                        try? await Task.sleep(for: self.timing.activityFlush)
                        try? await self.context.store.recordActivity(self.routes.takeDirtyActivity())
                    }
                }
            }
        }
        await shutdown()
    }

    /// SIGTERM: refuse new spawns, say so, optionally end the backends, flush the outbox.
    /// Backends keep running unless `drain_on_shutdown`; the next start re-attaches them.
    func shutdown() async {
        state.withLock { $0.stopping = true }
        try? await heartbeat()
        if let s = subscriptions.withLock({ $0 }) {
            try? s.spawns.unsubscribe()
            try? s.terminations.unsubscribe()
            try? s.drains.unsubscribe()
            try? s.accessTokens.unsubscribe()
        }
        // Many backends stopping at once take longer than one (twenty Docker stops and
        // removals on two cores overran a five-second margin and left exited containers);
        // a stop also waits up to 10 s for the backend's last output. One deadline for all
        // of it, so the drone's own stop stays within a supervisor's timeout.
        let deadline = ContinuousClock.now + configuration.stopGrace + .seconds(30)
        if configuration.drainOnShutdown {
            for supervisor in state.withLock({ Array($0.supervisors.values) }) { await supervisor.deliver(.terminateRequested) }
            while ContinuousClock.now < deadline, !state.withLock({ $0.supervisors.isEmpty }) {
                try? await Task.sleep(for: .milliseconds(50))
            }
        }
        // The backends keep running; this agent stops watching them. Those being stopped
        // and removed right now (a termination that came just before) are given the time
        // left to finish: an ended backend's container is not left behind.
        var cleaningUp: [BackendID] = []
        for (id, supervisor) in state.withLock({ Array($0.supervisors) }) where !(await supervisor.detach()) { cleaningUp.append(id) }
        while ContinuousClock.now < deadline, state.withLock({ state in cleaningUp.contains { state.supervisors[$0] != nil } }) {
            try? await Task.sleep(for: .milliseconds(50))
        }
        for supervisor in state.withLock({ Array($0.supervisors.values) }) { await supervisor.abandonCleanup() }
        await warmPools?.stopAll()
        try? await context.store.recordActivity(routes.takeDirtyActivity())
        let flushed = await context.outbox.flush(timeout: timing.shutdownFlush)
        await context.outbox.stop()
        logger.info("agent.stopped", metadata: ["outbox.flushed": "\(flushed)"])
    }

    // MARK: Heartbeat

    func heartbeat() async throws {
        let (draining, stopping) = state.withLock { ($0.draining, $0.stopping) }
        let running = try await context.store.liveBackendCount()
        let ready = !draining && !stopping
        let (reserved, live) = state.withLock { Self.reservations($0, warm: warmPools) }
        let descriptor = context.runtime.descriptor
        let message = DroneStatusMessage(droneID: droneID, cluster: cluster, droneVersion: PlaneVersion.current, ready: ready,
                                         state: ready ? .ready : (stopping ? .stopped : .draining), runningBackends: UInt32(clamping: running),
                                         runtime: descriptor.name, runtimeClasses: configuration.runtimeClasses, pool: configuration.pool,
                                         capabilities: Self.capabilityNames(descriptor.capabilities), optionsSchema: descriptor.capabilities.optionsSchema,
                                         capacity: capacityPlan.capacity(reservedMemory: reserved, liveBackends: live))
        var status = message
        status.warmPools = warmPools?.snapshot.withLock { $0.ready } ?? [:]
        try await context.messenger.publish(PlaneSubjects.droneStatus(droneID), status)
    }

    /// Memory reserved by the backends this agent supervises and the spawns it is
    /// accepting, and how many those are.
    static func reservations(_ state: State, warm: WarmPoolKeeper? = nil) -> (memory: UInt64, backends: Int) {
        var memory: UInt64 = 0
        var warmBackends = 0
        if let warm {
            let snapshot = warm.snapshot.withLock { $0 }
            memory = snapshot.reservedMemory
            warmBackends = snapshot.backends
        }
        for supervisor in state.supervisors.values {
            memory = memory.addingReportingOverflow(supervisor.reservedMemory).partialValue
        }
        for pending in state.pendingMemory.values { memory = memory.addingReportingOverflow(pending).partialValue }
        return (memory, state.supervisors.count + state.pendingMemory.count + warmBackends)
    }

    /// The runtime's capabilities as the status message names them.
    static func capabilityNames(_ capabilities: RuntimeCapabilities) -> [String] {
        var names = capabilities.networkModes.map { "network_\($0.rawValue)" }.sorted()
        if capabilities.mounts { names.append("mounts") }
        if capabilities.stats { names.append("stats") }
        if capabilities.outOfMemoryEvents { names.append("oom_events") }
        if capabilities.waits { names.append("waits") }
        if capabilities.optionsSchema != nil { names.append("options") }
        return names
    }

    // MARK: Lease

    /// Where the lease stood when the drone last ran: its epoch, and a deadline that counts
    /// the time the drone was down (by the wall clock; a clock that went back counts as the
    /// whole lease gone).
    func loadLease() async throws {
        guard let stored = try await context.store.lease() else { return }
        let hard = configuration.lease.hard
        var elapsed = Timestamp.now().duration(since: stored.grantedAt)
        if elapsed < .zero || elapsed > hard * 2 { elapsed = hard * 2 }
        let grantedAt = ContinuousClock.now - elapsed
        state.withLock { $0.lease = DroneLease(timing: configuration.lease, epoch: stored.epoch, grantedAt: grantedAt) }
    }

    /// The lease epoch (nil before the first grant).
    public var leaseEpoch: UInt64? { state.withLock { $0.lease.epoch } }

    /// One renewal through the controllers; after a start or a failed renewal (and every
    /// tenth time) it lists the drone's backends, and those the cluster ended meanwhile stop.
    func renewLease() async {
        let (epoch, reconcile) = state.withLock { state -> (UInt64?, Bool) in
            state.renewals &+= 1
            return (state.lease.epoch, state.reconcileNeeded || state.renewals % 10 == 0)
        }
        let timing = configuration.lease
        let hardMilliseconds = UInt64(clamping: timing.hard.components.seconds * 1000 + timing.hard.components.attoseconds / 1_000_000_000_000_000)
        let request = DroneLeaseRequest(cluster: cluster, drone: droneID, epoch: epoch, leaseHardMilliseconds: hardMilliseconds,
                                        backends: reconcile ? supervisedBackends.sorted { $0.rawValue < $1.rawValue } : nil)
        let sentAt = ContinuousClock.now
        let wallSentAt = Timestamp.now()
        let grant: DroneLeaseGrant
        do {
            grant = try await context.messenger.request(PlaneSubjects.lease(cluster, droneID), request, timeout: max(timing.renewInterval, .seconds(1)))
        } catch {
            let failures = state.withLock { state in
                state.reconcileNeeded = true
                state.failedRenewals += 1
                return state.failedRenewals
            }
            if failures == 1 || failures % 30 == 0 {
                logger.warning("agent.lease_renewal_failed", metadata: ["plane.drone": "\(droneID)", "lease.failures": "\(failures)", "error": "\(error)"])
            }
            return
        }
        let (actions, failures) = state.withLock { state in
            if reconcile { state.reconcileNeeded = false }
            let failures = state.failedRenewals
            state.failedRenewals = 0
            return (state.lease.granted(epoch: grant.epoch, sentAt: sentAt, now: .now), failures)
        }
        if failures > 0 {
            logger.notice("agent.lease_renewed", metadata: ["plane.drone": "\(droneID)", "lease.failures": "\(failures)", "plane.lease_epoch": "\(grant.epoch)"])
        }
        do { try await context.store.recordLease(epoch: grant.epoch, grantedAt: wallSentAt) } catch {
            logger.warning("agent.lease_store_failed", metadata: ["error": "\(error)"])
        }
        await performLease(actions)
        for ended in grant.ended {
            guard let supervisor = state.withLock({ $0.supervisors[ended.backend] }) else { continue }
            logger.notice("agent.ended_elsewhere", metadata: ["plane.backend": "\(ended.backend)", "plane.state": "\(ended.state.rawValue)"])
            await supervisor.deliver(.endedElsewhere(ended.state))
        }
    }

    /// Supervisors of backends that hold a lock.
    var lockHolders: [BackendSupervisor] { state.withLock { $0.supervisors.values.filter { $0.spawn.lock != nil } } }

    func performLease(_ actions: [DroneLease.Action]) async {
        for action in actions {
            switch action {
            case .stopLockHolders(let grace):
                let holders = lockHolders
                if !holders.isEmpty {
                    logger.warning("agent.lease_lapsing", metadata: ["plane.drone": "\(droneID)", "plane.backends": "\(holders.count)", "stop.grace": "\(grace)"])
                }
                for supervisor in holders { await supervisor.expireLease(grace: grace) }
            case .killLockHolders:
                let holders = lockHolders
                if !holders.isEmpty {
                    logger.warning("agent.lease_expired", metadata: ["plane.drone": "\(droneID)", "plane.backends": "\(holders.count)"])
                }
                for supervisor in holders {
                    await supervisor.expireLease(grace: .zero)
                    // Whatever stop is in flight (with a longer grace), the process ends now.
                    try? await context.runtime.stop(supervisor.backendID, grace: .zero)
                }
            case .fenceLockHolders(let epoch):
                let holders = lockHolders.filter { $0.leaseEpoch != epoch }
                if !holders.isEmpty {
                    logger.warning("agent.lease_revoked", metadata: ["plane.drone": "\(droneID)", "plane.backends": "\(holders.count)", "plane.lease_epoch": "\(epoch)"])
                }
                for supervisor in holders {
                    await supervisor.expireLease(grace: .zero)
                    try? await context.runtime.stop(supervisor.backendID, grace: .zero)
                }
            }
        }
    }

    // MARK: Spawning

    func handleSpawn(_ delivery: PlaneDelivery<SpawnRequest, Bool>) async {
        // The controller's trace goes on here; the backend's load (in its supervisor's task,
        // which takes this context along) continues it.
        await withSpan("plane.drone.spawn", context: delivery.traceContext, ofKind: .server) { span in
            span.attributes["plane.drone"] = droneID.rawValue
            await handleSpawnInSpan(delivery, span: span)
        }
    }

    private func handleSpawnInSpan(_ delivery: PlaneDelivery<SpawnRequest, Bool>, span: any Span) async {
        let request: SpawnRequest
        switch delivery.message {
        case .success(let decoded): request = decoded
        case .failure(let error):
            logger.warning("agent.spawn_refused", metadata: ["reason": "\(error)"])
            _ = try? await delivery.respond(false)
            return
        }
        span.attributes["plane.backend"] = request.backendID.rawValue
        // The same request again (a sender that retried after its first answer was late or
        // lost): the backend is this drone's already, so the answer is the first one's.
        // Starting it twice is not possible; answering `false` would tell the sender that
        // a backend that runs here does not. A repeat that arrives while the first is being
        // accepted waits for its outcome.
        let id = request.backendID
        let first = state.withLock { $0.accepting.insert(id).inserted }
        if !first {
            let deadline = ContinuousClock.now + .seconds(30)
            while ContinuousClock.now < deadline, state.withLock({ $0.accepting.contains(id) }) {
                try? await Task.sleep(for: .milliseconds(10))
            }
        }
        if await isRepeat(of: request) {
            if first { state.withLock { _ = $0.accepting.remove(id) } }
            logger.info("agent.spawn_repeated", metadata: ["plane.backend": "\(id)"])
            _ = try? await delivery.respond(true)
            return
        }
        let accepted: Result<BackendSupervisor, any Error>
        do { accepted = .success(try await accept(request)) } catch { accepted = .failure(error) }
        if first { state.withLock { _ = $0.accepting.remove(id) } }
        do {
            let supervisor = try accepted.get()
            await supervisor.holdRequestsBeforeAnswering()
            _ = try? await delivery.respond(true)
            // The next renewal lists the backends: had the scheduler given up on this answer
            // and placed the backend elsewhere, the cluster says so and this copy stops.
            state.withLock { $0.reconcileNeeded = true }
            await supervisor.begin()
        } catch {
            if let limit = (error as? PlaneCoreError)?.limit, let hits = LimitCounters.shared.record(limit) {
                logger.warning("limit.exceeded", metadata: ["plane.limit": "\(limit)", "plane.limit_hits": "\(hits)", "plane.backend": "\(request.backendID)",
                                                           "nats.subject": "\(delivery.subject)"])
            }
            logger.warning("agent.spawn_refused", metadata: ["plane.backend": "\(request.backendID)", "reason": "\(error)"])
            span.setStatus(SpanStatus(code: .error, message: "refused: \(error)"))
            _ = try? await delivery.respond(false)
        }
    }

    /// `request` is one this drone accepted already (the same backend, asked for with the
    /// same request) and its backend has not ended.
    func isRepeat(of request: SpawnRequest) async -> Bool {
        guard let existing = state.withLock({ $0.supervisors[request.backendID] }), existing.spawn == request else { return false }
        return !(await existing.state.isTerminal)
    }

    /// Grants or revokes a per-connect access token of a backend this drone runs (and is not
    /// ending): stored, then given to the route; answered `true`. Requests for backends of
    /// other drones are not answered (their drone answers).
    func handleAccessToken(_ delivery: PlaneDelivery<BackendAccessTokenMessage, Bool>) async {
        guard case .success(let request) = delivery.message, request.cluster == cluster,
              SubjectPattern<BackendAccessTokenMessage, Bool>.token(3, of: delivery.subject) == Substring(request.backendID.rawValue),
              let supervisor = state.withLock({ $0.supervisors[request.backendID] }), !(await supervisor.state.isTerminal) else { return }
        do {
            let tokens = try await context.store.changeAccessToken(request.token, of: request.backendID, revoke: request.revoke)
            routes.setAccessTokens(tokens, of: request.backendID)
            logger.info("agent.access_token", metadata: ["plane.backend": "\(request.backendID)", "plane.revoke": "\(request.revoke)", "plane.tokens": "\(tokens.count)"])
            _ = try? await delivery.respond(true)
        } catch {
            logger.warning("agent.access_token_refused", metadata: ["plane.backend": "\(request.backendID)", "error": "\(error)"])
            _ = try? await delivery.respond(false)
        }
    }

    /// Checks a spawn request and records it durably; the returned supervisor is registered
    /// (so a termination can reach it) but not started.
    func accept(_ request: SpawnRequest) async throws -> BackendSupervisor {
        let (draining, stopping) = state.withLock { ($0.draining, $0.stopping) }
        guard !draining, !stopping else { throw DroneError(.invalidSpawn, "The drone is draining; it takes no new backends.") }
        guard request.droneID == droneID else { throw DroneError(.invalidSpawn, "The request is for drone \(request.droneID), not this one (\(droneID)).") }
        if let requested = request.cluster, requested != cluster {
            throw DroneError(.invalidSpawn, "The request is for cluster \(requested); this drone serves \(cluster).")
        }
        try checkRunnable(request)
        var leaseEpoch: UInt64?
        if request.lock != nil {
            // A lock holder runs only under a lease the controllers know about (renewed now
            // if the drone has none yet, e.g. right after it started).
            leaseEpoch = state.withLock { $0.lease.allowsLockHolders(at: .now) ? $0.lease.epoch : nil }
            if leaseEpoch == nil {
                await renewLease()
                leaseEpoch = state.withLock { $0.lease.allowsLockHolders(at: .now) ? $0.lease.epoch : nil }
            }
            guard leaseEpoch != nil else {
                throw DroneError(.invalidSpawn, "The drone holds no current lease, so it starts no backend with a lock; it renews its lease through the controllers every \(configuration.lease.renewInterval).")
            }
        }
        // A pre-started backend of its warm pool, when one matches: the spawn takes it over
        // (its port and process) instead of starting one.
        let warm = await warmPools?.take(for: request)
        // Room for it (memory and a slot), reserved until its supervisor holds it.
        let memory = request.executable.resourceLimits.memoryLimitBytes.flatMap { UInt64(exactly: $0) } ?? 0
        do {
            try state.withLock { state throws(DroneError) in
                let (reserved, live) = Self.reservations(state, warm: warmPools)
                try capacityPlan.admit(memory: memory, reservedMemory: reserved, liveBackends: live)
                state.pendingMemory[request.backendID] = memory
            }
        } catch {
            if let warm { await discardTaken(warm) }
            throw error
        }
        defer { state.withLock { _ = $0.pendingMemory.removeValue(forKey: request.backendID) } }
        let port: Int
        if let warm { port = warm.port } else { port = try await reservePort() }
        do {
            let spec = try makeSpec(request, port: port)
            try context.runtime.validate(spec)
            let created = Timestamp.now()
            let entry = try await context.store.insert(request, cluster: cluster, runtime: context.runtime.descriptor.name, drone: droneID, time: created)
            if let warm {
                try await context.store.recordAdoption(request.backendID, runtimeBackend: warm.id)
                adopting.adopt(request.backendID, as: warm.id)
            }
            let supervisor = makeSupervisor(request, spec: spec, machine: BackendLifecycle(), loadingRecorded: true, logsSince: nil, leaseEpoch: leaseEpoch,
                                            created: created, adoptedAddress: warm?.address)
            await context.outbox.enqueue(entry)
            return supervisor
        } catch {
            if let warm {
                await discardTaken(warm)
            } else {
                state.withLock { _ = $0.reservedPorts.remove(port) }
            }
            throw error
        }
    }

    /// What this drone asks of anything it runs, a spawn's backend or a warm pool's
    /// (whose definitions come from the KV bucket, not through a spawn): volume mounts only
    /// where they are allowed, the spawn limits (environment names and sizes, metadata,
    /// resource limit ranges), a runtime class and pool of this drone's.
    func checkRunnable(_ request: SpawnRequest) throws {
        guard request.executable.volumeMounts.isEmpty || configuration.allowVolumeMounts else {
            throw DroneError(.invalidSpawn, "Volume mounts are not allowed on this drone (set allow_volume_mounts).")
        }
        try configuration.limits.spawn.check(request.executable, metadata: request.metadata)
        if let runtimeClass = request.runtimeClass, !configuration.runtimeClasses.contains(runtimeClass) {
            let offered = configuration.runtimeClasses.map(\.rawValue).joined(separator: ", ")
            throw DroneError(.invalidSpawn, "The request asks for runtime class '\(runtimeClass)'; this drone has \(offered.isEmpty ? "none" : offered) ([agent] runtime_classes).")
        }
        if let pool = request.pool, pool != configuration.pool {
            throw DroneError(.invalidSpawn, "The request is for pool '\(pool)'; this drone is in \(configuration.pool.map { "pool '\($0)'" } ?? "the default pool").")
        }
    }

    /// A warm backend taken for a spawn that was then refused: stopped and removed.
    func discardTaken(_ warm: WarmPoolKeeper.Warm) async {
        try? await adopting.inner.stop(warm.id, grace: .seconds(2))
        try? await adopting.inner.remove(warm.id)
        state.withLock { _ = $0.reservedPorts.remove(warm.port) }
    }

    func makeSupervisor(_ request: SpawnRequest, spec: BackendSpec, machine: BackendLifecycle, loadingRecorded: Bool, logsSince: Timestamp?,
                        leaseEpoch: UInt64?, created: Timestamp, adoptedAddress: String? = nil) -> BackendSupervisor {
        let supervisor = BackendSupervisor(spawn: request, spec: spec, context: context, machine: machine, loadingRecorded: loadingRecorded,
                                           logsSince: logsSince, leaseEpoch: leaseEpoch, created: created, adoptedAddress: adoptedAddress) { [weak self] backend in
            self?.state.withLock { state in
                state.supervisors[backend] = nil
                state.reservedPorts.remove(Int(spec.port))
            }
        }
        state.withLock { $0.supervisors[request.backendID] = supervisor }
        return supervisor
    }

    func makeSpec(_ request: SpawnRequest, port: Int) throws -> BackendSpec {
        var executable = request.executable
        if let token = request.fencingToken { executable.env["PLANE_FENCING_TOKEN"] = String(token) }
        var mounts: [MountSpec] = []
        for mount in executable.volumeMounts { mounts.append(try MountSpec(wire: mount)) }
        guard !executable.image.isEmpty else { throw DroneError(.invalidSpawn, "The request names no image.") }
        guard let backendPort = UInt16(exactly: port), backendPort > 0 else { throw DroneError(.invalidSpawn, "Port \(port) is not a TCP port.") }
        return BackendSpec(
            backendID: request.backendID, droneID: droneID, image: executable.image, env: executable.env, port: backendPort,
            network: Self.networkPlan(for: context.runtime.descriptor.capabilities), limits: try ResourceLimitsSpec(wire: executable.resourceLimits),
            pullPolicy: executable.pullPolicy, credentials: executable.credentials.map(RegistryCredentials.init(wire:)), mounts: mounts,
            options: request.runtimeOptions)
    }

    /// The host's network on loopback where the runtime offers it (the proxy and the
    /// probe connect to 127.0.0.1 and `PORT`); otherwise an address of the backend's own
    /// (the OCI runtime's `network = "namespace"`), which the runtime returns in its handle.
    static func networkPlan(for capabilities: RuntimeCapabilities) -> NetworkPlan {
        if capabilities.networkModes.contains(.host) { return .host(address: "127.0.0.1") }
        if capabilities.networkModes.contains(.bridge) { return .bridge(network: nil) }
        return .publish(hostAddress: "127.0.0.1")
    }

    /// A port from the range that no live backend holds and that is free on the host. The
    /// search starts at a random port of the range and goes on from the last one given, so
    /// drones whose ranges overlap (by mistake, or a `plane dev` beside a drone) rarely try
    /// the same port at the same moment: between the check and the backend's bind another
    /// drone's check would pass too.
    func reservePort() async throws -> Int {
        let inUse = try await context.store.portsInUse()
        let range = configuration.portRange
        return try state.withLock { state in
            var candidate = state.nextPort ?? Int.random(in: range)
            for _ in 0..<range.count {
                if candidate > range.upperBound { candidate = range.lowerBound }
                if !inUse.contains(candidate), !state.reservedPorts.contains(candidate), Self.isFree(port: candidate) {
                    state.reservedPorts.insert(candidate)
                    state.nextPort = candidate + 1
                    return candidate
                }
                candidate += 1
            }
            throw DroneError(.invalidSpawn, "No free port in \(range.lowerBound)-\(range.upperBound); widen [agent] port_range.")
        }
    }

    static func isFree(port: Int) -> Bool { TCPPortProbe.canBind(port: port, address: "0.0.0.0") }

    // MARK: Recovery

    /// A stored backend without a spec this drone can make (accepted before a check existed,
    /// or never placed): it ends without a supervisor, reported `ErrorLoading` (never placed)
    /// or `Failed`, and whatever the runtime holds of it is stopped and removed.
    func endUnsupervisable(_ backend: StoredBackend, status: RuntimeStatus) async {
        let id = backend.backendID
        if !backend.state.isTerminal {
            let terminal: BackendState = backend.state == .loading ? .errorLoading : .failed
            var exitCode: Int32?
            if case .exited(let code) = status { exitCode = code }
            let update = UpdateBackendStateMessage(cluster: backend.cluster, state: terminal, backend: id, time: .now(), drone: droneID)
            do {
                await context.outbox.enqueue(try await context.store.recordState(update, exitCode: exitCode))
            } catch {
                logger.error("backend.state_not_recorded", metadata: ["plane.backend": "\(id)", "plane.state": "\(terminal.rawValue)", "error": "\(error)"])
                await context.outbox.enqueueUnrecorded(update)
            }
            try? await context.store.removeRoute(of: id)
            logger.notice("agent.recovered_as_ended", metadata: ["plane.backend": "\(id)", "plane.state": "\(terminal.rawValue)"])
        }
        try? await context.runtime.stop(id, grace: configuration.stopGrace)
        try? await context.runtime.remove(id)
    }

    /// Reconciles the store with what the runtime holds for this drone. Each stored backend
    /// gets its supervisor back with its state, and what the runtime says about it is an
    /// event of its `BackendLifecycle`: a running one is re-attached (route, idle clock,
    /// monitor), one that ended or was lost while the drone was away ends as the lifecycle
    /// decides (and is stopped and removed like any ending backend), one interrupted while
    /// loading ends `ErrorLoading`. Containers the store does not know are removed.
    func recover() async throws {
        let runtime = context.runtime
        let handles = try await runtime.list()
        let held = Set(handles.map(\.backendID))
        let stored = try await context.store.allBackends()
        let storedIDs = Set(stored.map(\.backendID))
        let storedRoutes = Dictionary(try await context.store.allRoutes().map { ($0.backendID, $0) }, uniquingKeysWith: { a, _ in a })
        for backend in stored {
            let id = backend.backendID
            // An ended backend whose container is gone needs nothing.
            if backend.state.isTerminal && !held.contains(id) { continue }
            let status = held.contains(id) ? ((try? await runtime.status(of: id)) ?? .unknown) : .unknown
            // A stored spawn this drone would no longer accept cannot be supervised.
            guard let port = backend.port, let spec = try? makeSpec(backend.spawn, port: port) else {
                await endUnsupervisable(backend, status: status)
                continue
            }
            state.withLock { _ = $0.reservedPorts.insert(port) }
            let address = backend.address ?? BackendAddress(host: "127.0.0.1", port: spec.port).description
            let observed = BackendLifecycle.observed(status)
            if backend.state == .ready, observed == nil {
                let route = storedRoutes[id]
                let tokens = (try? await context.store.accessTokens(of: id)) ?? []
                routes.add(RouteTable.Route(backendID: id, address: address, bearerToken: backend.spawn.bearerToken, accessTokens: tokens),
                           lastActive: route?.lastActive ?? backend.updated)
            }
            // A lock holder goes on under the lease the drone had when it stopped.
            let supervisor = makeSupervisor(backend.spawn, spec: spec, machine: .resumed(state: backend.state, address: address),
                                            loadingRecorded: true, logsSince: backend.lastLogTime,
                                            leaseEpoch: backend.spawn.lock == nil ? nil : state.withLock { $0.lease.epoch }, created: backend.created)
            await supervisor.recover(observed: observed)
            let now = await supervisor.state
            if backend.state.isTerminal {
                logger.info("agent.recovered_cleanup", metadata: ["plane.backend": "\(id)", "plane.state": "\(backend.state.rawValue)"])
            } else if now.isTerminal {
                logger.notice("agent.recovered_as_ended", metadata: ["plane.backend": "\(id)", "plane.state": "\(now.rawValue)"])
            } else {
                logger.info("agent.reattached", metadata: ["plane.backend": "\(id)", "plane.state": "\(now.rawValue)"])
            }
        }
        for handle in handles where !storedIDs.contains(handle.backendID) {
            logger.notice("agent.removing_unknown_container", metadata: ["plane.backend": "\(handle.backendID)"])
            try? await runtime.stop(handle.backendID, grace: configuration.stopGrace)
            try? await runtime.remove(handle.backendID)
        }
    }
}
