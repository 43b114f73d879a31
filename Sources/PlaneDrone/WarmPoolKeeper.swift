import ContainerRuntime
import Logging
import PlaneCore
import PlaneMetrics
import Synchronization

/// The drone's warm pools (issue 15): for every pool definition the controllers published
/// (`plane_warm_pools`) that this drone can run (its cluster, pool and runtime class; a spec
/// the runtime takes), it keeps `size` backends started and answering their readiness check,
/// under warm ids of their own that the cluster never sees. A spawn naming the pool whose
/// request matches (`WarmPoolDefinition.matches`) takes one (`take`): the agent adopts the
/// process under the spawn's backend id (`AdoptingRuntime`), and the next round starts a
/// replacement. Warm backends hold a port and their memory limit of the drone's capacity
/// like any backend; they are stopped when their pool shrinks or goes, when they stop
/// answering, and when the drone stops (a drone that was killed has them removed by its next
/// start's recovery, as containers the store does not know).
public actor WarmPoolKeeper {
    /// One pre-started backend.
    struct Warm: Sendable {
        let id: BackendID
        let definition: WarmPoolDefinition
        let port: Int
        var address: String?
        var ready = false
        var memory: UInt64 { definition.executable.resourceLimits.memoryLimitBytes.flatMap { UInt64(exactly: $0) } ?? 0 }
    }

    /// What the agent reads without waiting for the keeper (heartbeats, capacity, metrics).
    struct Snapshot: Sendable {
        var ready: [String: UInt32] = [:]
        var reservedMemory: UInt64 = 0
        var backends = 0
        var hits: [String: UInt64] = [:]
        var misses: [String: UInt64] = [:]
    }

    /// What the keeper needs of its drone.
    struct Dependencies: Sendable {
        var runtime: any ContainerRuntime
        var configuration: AgentConfiguration
        var cluster: ClusterName
        /// The definitions of the cluster's pools (from `plane_warm_pools`).
        var fetchDefinitions: @Sendable () async throws -> [WarmPoolDefinition]
        /// A port for a new backend, and giving one back.
        var reservePort: @Sendable () async throws -> Int
        var releasePort: @Sendable (Int) -> Void
        /// Whether the drone has room for one more backend with this memory limit (besides
        /// what the keeper holds, which `snapshot` reports to the agent).
        var hasRoom: @Sendable (UInt64) -> Bool
        /// Whether the drone takes new backends (not draining or stopping).
        var accepting: @Sendable () -> Bool
        /// The spec a warm backend of `definition` starts with, or why it cannot.
        var makeSpec: @Sendable (WarmPoolDefinition, BackendID, Int) throws -> BackendSpec
        var logger: Logger
    }

    nonisolated let snapshot = Mutex(Snapshot())
    private let dependencies: Dependencies
    private var definitions: [String: WarmPoolDefinition] = [:]
    private var warm: [BackendID: Warm] = [:]
    /// Pools whose last start failed wait until then before the next.
    private var backoff: [String: ContinuousClock.Instant] = [:]
    private var lastFetch: ContinuousClock.Instant?
    let refreshInterval: Duration
    let reconcileInterval: Duration

    init(_ dependencies: Dependencies, refreshInterval: Duration = .seconds(5), reconcileInterval: Duration = .milliseconds(500)) {
        self.dependencies = dependencies
        self.refreshInterval = refreshInterval
        self.reconcileInterval = reconcileInterval
    }

    // MARK: Taking

    /// A ready warm backend the spawn can take, handed over (no longer the keeper's); nil
    /// when none matches (counted as a miss of the spawn's pool).
    func take(for request: SpawnRequest) -> Warm? {
        guard let pool = request.warmPool else { return nil }
        guard let taken = warm.values.first(where: { $0.ready && $0.definition.matches(request) }) else {
            snapshot.withLock { $0.misses[pool, default: 0] += 1 }
            return nil
        }
        warm[taken.id] = nil
        snapshot.withLock { $0.hits[pool, default: 0] += 1 }
        publish()
        dependencies.logger.info("warm_pool.taken", metadata: ["plane.pool": "\(pool)", "plane.warm_backend": "\(taken.id)", "plane.backend": "\(request.backendID)"])
        return taken
    }

    // MARK: Keeping

    /// Keeps the pools until cancelled. The warm backends stay: the agent's shutdown stops
    /// them (`stopAll`) outside the cancelled task, where the runtime's calls still go out.
    func run() async {
        while !Task.isCancelled {
            await reconcile(now: .now)
            try? await Task.sleep(for: reconcileInterval)
        }
    }

    /// One round: definitions refreshed (every `refreshInterval`), dead and unwanted warm
    /// backends stopped, missing ones started (concurrently, each until it answers).
    func reconcile(now: ContinuousClock.Instant) async {
        if lastFetch.map({ now - $0 >= refreshInterval }) ?? true {
            lastFetch = now
            await refreshDefinitions()
        }
        // Gone, resized or changed pools; processes that ended.
        var unwanted: [Warm] = []
        var kept: [String: Int] = [:]
        for backend in warm.values.sorted(by: { $0.ready && !$1.ready }) {
            let name = backend.definition.name
            guard let current = definitions[name], current == backend.definition, kept[name, default: 0] < current.size, dependencies.accepting() else {
                unwanted.append(backend)
                continue
            }
            kept[name, default: 0] += 1
        }
        for backend in warm.values where backend.ready && !unwanted.contains(where: { $0.id == backend.id }) {
            // A cancelled round (the drone stops) cannot ask the runtime: `stopAll` ends them.
            guard !Task.isCancelled, let status = try? await dependencies.runtime.status(of: backend.id) else { continue }
            if case .running = status { continue }
            dependencies.logger.notice("warm_pool.backend_ended", metadata: ["plane.pool": "\(backend.definition.name)", "plane.warm_backend": "\(backend.id)"])
            unwanted.append(backend)
        }
        for backend in unwanted { await discard(backend) }
        guard dependencies.accepting() else { return }
        // Missing ones, started together.
        var starts: [(WarmPoolDefinition, BackendID, Int)] = []
        for definition in definitions.values.sorted(by: { $0.name < $1.name }) where definition.size > 0 {
            if let until = backoff[definition.name], now < until { continue }
            let missing = definition.size - warm.values.count { $0.definition == definition }
            for _ in 0..<max(0, missing) {
                let memory = definition.executable.resourceLimits.memoryLimitBytes.flatMap { UInt64(exactly: $0) } ?? 0
                guard dependencies.hasRoom(memory), let port = try? await dependencies.reservePort() else { break }
                let id = BackendID.random()
                warm[id] = Warm(id: id, definition: definition, port: port)
                // Reserved at once: the next `hasRoom` counts it.
                publish()
                starts.append((definition, id, port))
            }
        }
        guard !starts.isEmpty else { return }
        let dependencies = self.dependencies
        let results = await withTaskGroup(of: (BackendID, String?).self) { group in
            for (definition, id, port) in starts {
                group.addTask { (id, await Self.start(definition, id: id, port: port, dependencies)) }
            }
            var results: [(BackendID, String?)] = []
            for await result in group { results.append(result) }
            return results
        }
        for (id, address) in results {
            guard var backend = warm[id] else {
                // Not ready, so not taken: `stopAll` discarded it while it started, before
                // its process (or container) existed. It exists now; it goes too.
                try? await dependencies.runtime.stop(id, grace: .zero)
                try? await dependencies.runtime.remove(id)
                continue
            }
            if let address {
                backend.address = address
                backend.ready = true
                warm[id] = backend
                dependencies.logger.debug("warm_pool.backend_ready", metadata: ["plane.pool": "\(backend.definition.name)", "plane.warm_backend": "\(id)"])
            } else {
                backoff[backend.definition.name] = .now + .seconds(10)
                await discard(backend)
            }
        }
        publish()
    }

    /// Starts a warm backend and waits until it answers its readiness check; its address,
    /// or nil (the caller discards it).
    static func start(_ definition: WarmPoolDefinition, id: BackendID, port: Int, _ dependencies: Dependencies) async -> String? {
        let logger = dependencies.logger
        do {
            let spec = try dependencies.makeSpec(definition, id, port)
            try dependencies.runtime.validate(spec)
            try await dependencies.runtime.prepare(spec)
            // The start runs to its end even when the round is cancelled (the drone stops):
            // a runtime call given up half way can leave a container the runtime still
            // creates after `stopAll` looked for it. `stopAll` ends the one it started.
            let runtime = dependencies.runtime
            let handle = try await Task { try await runtime.start(spec) }.value
            let address: String
            if let reported = handle.address {
                address = reported.description
            } else if case .host(let host) = spec.network {
                address = BackendAddress(host: host, port: spec.port).description
            } else {
                logger.warning("warm_pool.no_address", metadata: ["plane.pool": "\(definition.name)"])
                return nil
            }
            let path = definition.readiness?.path ?? dependencies.configuration.readinessPath
            let timeout = definition.readiness?.timeoutSeconds?.duration ?? dependencies.configuration.startupTimeout
            let deadline = ContinuousClock.now + timeout
            while ContinuousClock.now < deadline, !Task.isCancelled {
                if await BackendSupervisor.probeOnce(address: address, path: path, timeout: dependencies.configuration.probeTimeout,
                                                     requireSuccess: definition.readiness != nil) {
                    return address
                }
                try? await Task.sleep(for: .milliseconds(25))
            }
            logger.warning("warm_pool.not_ready", metadata: ["plane.pool": "\(definition.name)", "plane.warm_backend": "\(id)"])
        } catch {
            logger.warning("warm_pool.start_failed", metadata: ["plane.pool": "\(definition.name)", "error": "\(error)"])
        }
        return nil
    }

    /// Stops and removes a warm backend the keeper holds, and gives its port back. One that
    /// a spawn took meanwhile (the keeper awaits between deciding and discarding, and `take`
    /// runs in between) is no longer the keeper's: left alone.
    ///
    /// In a cancelled task (the keeper's round when the drone stops) the runtime's calls
    /// would fail at once and the backend would be forgotten while it runs: it stays the
    /// keeper's, and `stopAll`, outside that task, ends it.
    private func discard(_ backend: Warm) async {
        guard !Task.isCancelled, warm.removeValue(forKey: backend.id) != nil else { return }
        try? await dependencies.runtime.stop(backend.id, grace: .seconds(2))
        try? await dependencies.runtime.remove(backend.id)
        dependencies.releasePort(backend.port)
        publish()
    }

    /// Stops every warm backend (the drone stops).
    func stopAll() async {
        for backend in warm.values {
            warm[backend.id] = nil
            do {
                try await dependencies.runtime.stop(backend.id, grace: .seconds(2))
                try await dependencies.runtime.remove(backend.id)
            } catch {
                // The next start's recovery removes it (a container the store does not know).
                dependencies.logger.warning("warm_pool.stop_failed", metadata: ["plane.pool": "\(backend.definition.name)", "plane.warm_backend": "\(backend.id)",
                                                                               "error": "\(error)"])
            }
            dependencies.releasePort(backend.port)
        }
        publish()
    }

    /// The definitions this drone can run.
    private func refreshDefinitions() async {
        let all: [WarmPoolDefinition]
        do {
            all = try await dependencies.fetchDefinitions()
        } catch {
            dependencies.logger.debug("warm_pool.definitions_unavailable", metadata: ["error": "\(error)"])
            return
        }
        let configuration = dependencies.configuration
        var usable: [String: WarmPoolDefinition] = [:]
        for definition in all where definition.cluster == dependencies.cluster && definition.pool == configuration.pool {
            if let runtimeClass = definition.runtimeClass, !configuration.runtimeClasses.contains(runtimeClass) { continue }
            // The drone and its runtime must take it, as they would a spawn of it (mounts,
            // spawn limits, image reference, options, limits).
            do {
                try dependencies.runtime.validate(dependencies.makeSpec(definition, .random(), 1))
            } catch {
                if definitions[definition.name] == nil {
                    dependencies.logger.notice("warm_pool.not_runnable_here", metadata: ["plane.pool": "\(definition.name)", "error": "\(error)"])
                }
                continue
            }
            usable[definition.name] = definition
        }
        definitions = usable
    }

    private func publish() {
        var ready: [String: UInt32] = [:]
        var memory: UInt64 = 0
        for backend in warm.values {
            if backend.ready { ready[backend.definition.name, default: 0] += 1 }
            memory = memory.addingReportingOverflow(backend.memory).partialValue
        }
        let count = warm.count
        snapshot.withLock {
            $0.ready = ready
            $0.reservedMemory = memory
            $0.backends = count
        }
    }

    /// Writes the pools' numbers into `registry` at each scrape: ready backends per pool
    /// (a pool that went reads 0), hits and misses.
    public nonisolated func report(into registry: PlaneMetrics) {
        let ready = GaugeFeed(MetricCatalog.warmPoolBackends, factory: registry.factory)
        let hits = CounterFeed(MetricCatalog.warmPoolHits, factory: registry.factory)
        let misses = CounterFeed(MetricCatalog.warmPoolMisses, factory: registry.factory)
        registry.addScrapeHook { [weak self] in
            guard let s = self?.snapshot.withLock({ $0 }) else { return }
            for labels in ready.series where s.ready[labels[1]] == nil { ready.set([("pool", labels[1])], to: 0) }
            for (pool, count) in s.ready { ready.set([("pool", pool)], to: Double(count)) }
            for (pool, count) in s.hits { hits.set([("pool", pool)], to: count) }
            for (pool, count) in s.misses { misses.set([("pool", pool)], to: count) }
        }
    }
}
