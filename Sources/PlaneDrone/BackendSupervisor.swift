import AsyncHTTPClient
import ContainerRuntime
import Logging
import NIOCore
import PlaneCore
import PlaneProxy
import ProcessSupervision
import Tracing

/// Runs one backend: feeds `BackendLifecycle` events and performs the actions it returns
/// (runtime calls, the readiness probe, the route, the monitor, durable state reports).
/// Results of slow work (load, probe, cleanup) come back as events, so a termination or an
/// exit is handled while that work is in flight.
actor BackendSupervisor {
    let spawn: SpawnRequest
    let spec: BackendSpec
    let context: AgentContext
    let onFinish: @Sendable (BackendID) async -> Void

    private var machine: BackendLifecycle
    private var work: Task<Void, Never>?
    /// Work cancelled by a termination. A cancelled load may still be inside the runtime's
    /// `start`, which runs to its end; cleanup waits for it, or it would stop and remove
    /// nothing and the container would be made afterwards and left behind.
    private var cancelledWork: Task<Void, Never>?
    private var idleWatch: Task<Void, Never>?
    /// Waits on the runtime for the process to end (`ContainerRuntime.wait(for:)`).
    private var exitWatch: Task<Void, Never>?
    private var monitor: BackendMonitor?
    /// The monitor of a backend being cleaned up: its log follower reads the last output
    /// until the process has been stopped.
    private var endingMonitor: BackendMonitor?
    private var exitCode: Int32?
    private var loadingRecorded: Bool
    private var logsSince: Timestamp?
    /// Set when the agent shuts down without ending the backend: nothing more happens here;
    /// the next agent re-attaches the backend.
    private var detached = false
    /// Cleared when the agent stops: a failing cleanup stops retrying (recovery finishes it).
    private var retriesCleanup = true
    /// The stop's grace when the lease ends the backend (what is left until `lease_hard`).
    private var stopGraceOverride: Duration?
    /// The lease epoch the backend was accepted under (nil: it holds no lock).
    let leaseEpoch: UInt64?
    /// When the drone accepted the spawn (its `max_lifetime_secs` counts from here).
    let created: Timestamp
    /// The memory the backend reserves of the drone's `memory_bytes`: its spawn's limit.
    let reservedMemory: UInt64
    /// Ends the backend when its `max_lifetime_secs` is over.
    private var lifetimeWatch: Task<Void, Never>?
    /// A report is being stored and queued; the next ones wait here, in order.
    private var reporting = false
    private var reportWaiters: [CheckedContinuation<Void, Never>] = []
    /// A warm pool's process this backend took over (its address): nothing is loaded or
    /// started, the readiness check runs at once.
    let adoptedAddress: String?

    var backendID: BackendID { spawn.backendID }
    var state: BackendState { machine.state }

    init(spawn: SpawnRequest, spec: BackendSpec, context: AgentContext, machine: BackendLifecycle = BackendLifecycle(),
         loadingRecorded: Bool, logsSince: Timestamp? = nil, leaseEpoch: UInt64? = nil, created: Timestamp = .now(),
         adoptedAddress: String? = nil, onFinish: @escaping @Sendable (BackendID) async -> Void) {
        self.adoptedAddress = adoptedAddress
        self.leaseEpoch = leaseEpoch
        self.created = created
        self.reservedMemory = spawn.executable.resourceLimits.memoryLimitBytes.flatMap { UInt64(exactly: $0) } ?? 0
        self.spawn = spawn
        self.spec = spec
        self.context = context
        self.machine = machine
        self.loadingRecorded = loadingRecorded
        self.logsSince = logsSince
        self.onFinish = onFinish
    }

    /// Makes the proxy hold requests for the backend from now on (it reports `Loading` only
    /// in `begin`): called before the spawn is answered, so a client told of the backend
    /// at once (a connect answers as soon as the spawn is) is held, not answered 404.
    func holdRequestsBeforeAnswering() async {
        guard !machine.state.isTerminal else { return }
        await holdRequestsWhileStarting()
    }

    /// Starts a new backend.
    func begin() async {
        // A termination can be handled before this runs (the spawn is answered first).
        if !machine.state.isTerminal { watchLifetime() }
        await apply(machine.handle(.spawned))
    }

    /// A backend found after a drone restart, with what the runtime says of it now: one
    /// that ended meanwhile ends as its lifecycle decides; otherwise it continues.
    func recover(observed: BackendLifecycle.Event?) async {
        if let observed, !machine.state.isTerminal, machine.state != .loading {
            await deliver(observed)
            return
        }
        await resume()
    }

    /// Continues a backend found after a drone restart.
    func resume() async {
        if !machine.state.isTerminal { watchLifetime() }
        if machine.state == .starting { await holdRequestsWhileStarting() }
        if machine.state == .starting || machine.state == .ready { await perform(.startMonitor) }
        await apply(machine.resume())
    }

    /// Delivers an event from work this supervisor started, on a task of its own: the
    /// event's actions may cancel that work, and must not be cancelled with it.
    nonisolated func post(_ event: BackendLifecycle.Event) {
        Task { await self.deliver(event) }
    }

    /// Stops watching the backend without touching it (agent shutdown). A backend that is
    /// already being cleaned up is left to finish; returns false for it. Returns once the
    /// position of its last published log line is stored.
    @discardableResult
    func detach() async -> Bool {
        if machine.cleaningUp { return false }
        detached = true
        work?.cancel()
        idleWatch?.cancel()
        exitWatch?.cancel()
        lifetimeWatch?.cancel()
        lifetimeWatch = nil
        exitWatch = nil
        let monitor = monitor
        work = nil
        idleWatch = nil
        self.monitor = nil
        monitor?.stop()
        await monitor?.positionRecorded()
        return true
    }

    /// The agent is stopping: a cleanup that keeps failing gives up; the next start's
    /// recovery stops and removes the container.
    func abandonCleanup() {
        retriesCleanup = false
        endingMonitor?.stop()
    }

    /// The lease ends this lock-holding backend: stopped with `grace` (what is left until
    /// `lease_hard`; zero kills it at once).
    func expireLease(grace: Duration) async {
        stopGraceOverride = min(stopGraceOverride ?? grace, grace)
        await deliver(.leaseExpired)
    }

    /// A termination request: stopped with the drone's `stop_grace_secs`, or killed at once
    /// (`hard`) — also when a graceful stop is already waiting out its grace period.
    func terminate(hard: Bool) async {
        if hard {
            stopGraceOverride = .zero
            if machine.cleaningUp && !detached {
                let runtime = context.runtime
                let backend = backendID
                try? await runtime.stop(backend, grace: .zero)
            }
        }
        await deliver(.terminateRequested)
    }

    func deliver(_ event: BackendLifecycle.Event) async {
        guard !detached else { return }
        if case .exited(let code) = event { exitCode = code }
        await apply(machine.handle(event))
    }

    /// Tells the proxy the backend is starting, with the tokens its requests must carry.
    private func holdRequestsWhileStarting() async {
        let tokens = (try? await context.store.accessTokens(of: backendID)) ?? []
        context.routes.starting(backendID, bearerToken: spawn.bearerToken, accessTokens: tokens)
        await refreshAccessTokens()
    }

    /// The stored per-connect tokens, read again once the proxy's entry exists: a token the
    /// agent stored between the first read and the entry found no entry to give it to (a
    /// connect answers only after its token is stored, and its client may ask at once).
    private func refreshAccessTokens() async {
        if let tokens = try? await context.store.accessTokens(of: backendID), !tokens.isEmpty {
            context.routes.setAccessTokens(tokens, of: backendID)
        }
    }

    /// Performs one event's actions in order. The actor is reentrant at every `await`, so
    /// another event can be handled while a batch waits (a termination while `report`
    /// stores `Loading`). Once that event has ordered the cleanup, what is left of an
    /// earlier batch is dropped: a load, a route, a probe or a `Starting` performed after the
    /// cleanup would outlive the backend (a process started after its stop and removal).
    private func apply(_ actions: [BackendLifecycle.Action]) async {
        let decidedWhileCleaningUp = machine.cleaningUp
        for action in actions {
            if !decidedWhileCleaningUp && machine.cleaningUp {
                context.logger.debug("backend.actions_superseded", metadata: ["plane.backend": "\(backendID)", "plane.action": "\(action)"])
                return
            }
            await perform(action)
        }
    }

    private func perform(_ action: BackendLifecycle.Action) async {
        let backend = backendID
        let logger = context.logger
        switch action {
        case .report(let state):
            // Reports go one at a time in the order they were decided: two interleaved at
            // their awaits would reach the outbox (and the cluster) out of order, and a
            // `Starting` could mark the proxy's entry after the terminal state cleared it.
            await waitForReportTurn()
            defer { endReportTurn() }
            // The proxy holds requests for a backend that is starting, and lets them go
            // (503) once it ends before Ready; Ready's route releases them.
            if state == .loading || state == .starting {
                await holdRequestsWhileStarting()
            } else if state.isTerminal {
                context.routes.notStarting(backend)
            }
            if state == .loading && loadingRecorded { return }
            let update = UpdateBackendStateMessage(cluster: context.cluster, state: state, backend: backend, time: .now(), drone: context.droneID)
            do {
                let entry = try await context.store.recordState(update, exitCode: state == .failed || state == .exited ? exitCode : nil)
                await context.outbox.enqueue(entry)
            } catch {
                // A full or failing disk: the cluster is still told (from memory).
                logger.error("backend.state_not_recorded", metadata: ["plane.backend": "\(backend)", "plane.state": "\(state.rawValue)", "error": "\(error)"])
                await context.outbox.enqueueUnrecorded(update)
            }
            logger.info("backend.state", metadata: ["plane.backend": "\(backend)", "plane.state": "\(state.rawValue)"])
        case .load:
            let runtime = context.runtime
            let store = context.store
            let spec = spec
            if let adoptedAddress {
                try? await store.recordPlacement(backend, runtimeID: nil, address: adoptedAddress, port: Int(spec.port))
                post(.loaded(address: adoptedAddress))
                return
            }
            work = Task {
                do {
                    // Spans of the spawn's trace (this task took the spawn's context along).
                    try await withSpan("plane.runtime.prepare", ofKind: .client) { span in
                        span.attributes["plane.backend"] = backend.rawValue
                        span.attributes["plane.runtime"] = runtime.descriptor.name
                        try await runtime.prepare(spec)
                    }
                    try Task.checkCancellation()
                    // The start is never cut short: interrupted, a runtime can leave what it
                    // was making where the cleanup does not see it yet (dockerd finishes a
                    // create whose client went away). A termination waits for it instead.
                    let handle = try await withSpan("plane.runtime.start", ofKind: .client) { span in
                        span.attributes["plane.backend"] = backend.rawValue
                        span.attributes["plane.runtime"] = runtime.descriptor.name
                        return try await Task { try await runtime.start(spec) }.value
                    }
                    let address: String
                    if let reported = handle.address {
                        address = reported.description
                    } else if case .host(let host) = spec.network {
                        address = BackendAddress(host: host, port: spec.port).description
                    } else {
                        // A backend with an address of its own that ended during its start has
                        // none any more (Docker clears it): it started, and ended.
                        guard let status = try? await runtime.status(of: backend), case .exited? = BackendLifecycle.observed(status) else {
                            throw RuntimeError(.internal, "The runtime did not say where backend \(backend) listens.")
                        }
                        self.post(BackendLifecycle.observed(status) ?? .notRunning)
                        guard !Task.isCancelled else { return }
                        self.post(.loaded(address: ""))
                        return
                    }
                    try? await store.recordPlacement(backend, runtimeID: handle.runtimeID, address: address, port: Int(spec.port))
                    guard !Task.isCancelled else { return }
                    self.post(.loaded(address: address))
                } catch is CancellationError {
                } catch {
                    // An image (or its registry) went beyond a configured bound.
                    if let limit = (error as? RuntimeError)?.limit, let hits = LimitCounters.shared.record(limit) {
                        logger.warning("limit.exceeded", metadata: ["plane.limit": "\(limit)", "plane.limit_hits": "\(hits)", "plane.backend": "\(backend)",
                                                                   "plane.image": "\(spec.image)"])
                    }
                    logger.warning("backend.load_failed", metadata: ["plane.backend": "\(backend)", "error": "\(error)"])
                    self.post(.loadFailed(reason: "\(error)"))
                }
            }
        case .probe(let address):
            let configuration = context.configuration
            let runtime = context.runtime
            let logger = context.logger
            // With host networking a neighbour could listen on this backend's port first:
            // it is Ready only when the listener is its own (when the runtime can tell).
            let hostPort: UInt16? = if case .host = spec.network { spec.port } else { nil }
            // The spawn's own check: its path must answer with a status below 400.
            let readiness = spawn.readiness
            let path = readiness?.path ?? configuration.readinessPath
            let startupTimeout = readiness?.timeoutSeconds?.duration ?? configuration.startupTimeout
            work = Task {
                let deadline = ContinuousClock.now + startupTimeout
                var reportedForeign = false
                while ContinuousClock.now < deadline, !Task.isCancelled {
                    if await Self.probeOnce(address: address, path: path, timeout: configuration.probeTimeout, requireSuccess: readiness != nil) {
                        guard let port = hostPort, let pid = try? await runtime.mainProcessID(of: backend) else {
                            self.post(.probeAnswered)
                            return
                        }
                        switch ListenerOwnership.check(port: port, mainProcess: pid) {
                        case .owned:
                            self.post(.probeAnswered)
                            return
                        case .unknown:
                            // The runtime's pid is not visible here (a drone in a container
                            // of its own): the check cannot be made.
                            logger.debug("backend.port_owner_unknown", metadata: ["plane.backend": "\(backend)"])
                            self.post(.probeAnswered)
                            return
                        case .foreign, .noListener:
                            break
                        }
                        if !reportedForeign {
                            reportedForeign = true
                            logger.warning("backend.port_taken", metadata: ["plane.backend": "\(backend)", "plane.port": "\(port)"])
                        }
                    }
                    // An exit while starting comes from the exit watch (`wait`).
                    try? await Task.sleep(for: .milliseconds(25))
                }
                if !Task.isCancelled { self.post(.probeTimedOut) }
            }
        case .startMonitor:
            monitor?.stop()
            monitor = BackendMonitor(backend: backend, context: context, logsSince: logsSince)
            watchExit()
        case .stopMonitor:
            monitor?.stopKeepingLogs()
            endingMonitor = monitor
            monitor = nil
        case .addRoute(let address):
            let tokens = (try? await context.store.accessTokens(of: backend)) ?? []
            // A termination handled during that await has removed the route already (before
            // it existed): adding it now would leave a route to a backend that is gone.
            guard !machine.cleaningUp else { return }
            let route = RouteTable.Route(backendID: backend, address: address, bearerToken: spawn.bearerToken, accessTokens: tokens)
            context.routes.add(route)
            await refreshAccessTokens()
            try? await context.store.setRoute(StoredRoute(subdomain: backend.rawValue, backendID: backend, address: address,
                                                          bearerToken: spawn.bearerToken, lastActive: .now()))
            if machine.cleaningUp {
                // One handled during these awaits may have removed it before it was stored.
                context.routes.remove(backend)
                try? await context.store.removeRoute(of: backend)
            }
        case .removeRoute:
            context.routes.remove(backend)
            try? await context.store.removeRoute(of: backend)
        case .watchIdle:
            let routes = context.routes
            let maxIdle = spawn.maxIdleSeconds.duration
            idleWatch = Task {
                while !Task.isCancelled {
                    if let idle = routes.idleTime(of: backend), idle >= maxIdle {
                        self.post(.idleExpired)
                        return
                    }
                    try? await Task.sleep(for: .milliseconds(250))
                }
            }
        case .cancelWork:
            work?.cancel()
            if let work { cancelledWork = work }
            work = nil
            idleWatch?.cancel()
            idleWatch = nil
            exitWatch?.cancel()
            exitWatch = nil
            lifetimeWatch?.cancel()
            lifetimeWatch = nil
        case .stopAndRemove:
            let runtime = context.runtime
            let grace = stopGraceOverride.map { min($0, context.configuration.stopGrace) } ?? context.configuration.stopGrace
            let unfinished = cancelledWork
            let endingMonitor = endingMonitor
            cancelledWork = nil
            Task {
                await unfinished?.value
                // A runtime that is down right now does not get to leave the container
                // behind: retry with backoff until it answers (or the agent stops; the
                // next start's recovery removes what is left).
                var backoff = Duration.milliseconds(500)
                while true {
                    do {
                        try await runtime.stop(backend, grace: grace)
                        // What it printed until it ended is published before its log goes. The
                        // stream ends with the process; the bound is for a runtime whose stream
                        // does not, and generous for a busy one.
                        await endingMonitor?.finishLogs(within: .seconds(10))
                        try await runtime.remove(backend)
                        break
                    } catch {
                        logger.warning("backend.cleanup_failed", metadata: ["plane.backend": "\(backend)", "error": "\(error)", "retry_in": "\(backoff)"])
                    }
                    try? await Task.sleep(for: backoff)
                    guard self.retriesCleanup else { return }
                    backoff = min(backoff * 2, .seconds(30))
                }
                self.post(.cleanedUp)
            }
        case .finish:
            exitWatch?.cancel()
            exitWatch = nil
            monitor?.stop()
            endingMonitor?.stop()
            monitor = nil
            endingMonitor = nil
            await onFinish(backend)
        }
    }

    /// Lets one report run at a time, in the order they asked (actor calls run up to their
    /// first `await` in order, so a waiter queued here keeps its place).
    private func waitForReportTurn() async {
        guard reporting else {
            reporting = true
            return
        }
        await withCheckedContinuation { reportWaiters.append($0) }
    }

    private func endReportTurn() {
        if reportWaiters.isEmpty {
            reporting = false
        } else {
            reportWaiters.removeFirst().resume()
        }
    }

    /// With `max_lifetime_secs`, ends the backend (`Terminated`) that long after its spawn
    /// was accepted, busy or not; after a drone restart the time counts from then too.
    private func watchLifetime() {
        guard lifetimeWatch == nil, let lifetime = spawn.maxLifetimeSeconds?.duration else { return }
        let elapsed = Timestamp.now().duration(since: created)
        let left = elapsed < .zero ? lifetime : lifetime - elapsed
        let backend = backendID
        let logger = context.logger
        lifetimeWatch = Task {
            if left > .zero { try? await Task.sleep(for: left) }
            guard !Task.isCancelled else { return }
            logger.info("backend.lifetime_expired", metadata: ["plane.backend": "\(backend)", "max_lifetime_secs": "\(lifetime.components.seconds)"])
            self.post(.lifetimeExpired)
        }
    }

    /// Waits on the runtime until the process ends and delivers what that means. A runtime
    /// that fails (is down) is asked again with backoff; cancelled when the backend ends.
    private func watchExit() {
        guard exitWatch == nil else { return }
        let runtime = context.runtime
        let backend = backendID
        let logger = context.logger
        exitWatch = Task {
            var backoff = Duration.milliseconds(500)
            while !Task.isCancelled {
                do {
                    let status = try await runtime.wait(for: backend)
                    guard !Task.isCancelled else { return }
                    if let event = BackendLifecycle.observed(status) { self.post(event) }
                    return
                } catch {
                    logger.debug("backend.wait_failed", metadata: ["plane.backend": "\(backend)", "error": "\(error)", "retry_in": "\(backoff)"])
                }
                try? await Task.sleep(for: backoff)
                backoff = min(backoff * 2, .seconds(30))
            }
        }
    }

    /// One readiness attempt: any HTTP answer counts, or with `requireSuccess` (a spawn's
    /// own `readiness`) one with a status below 400. The answer's head decides; its body is
    /// read (so the connection can be reused) for at most `timeout` more and then dropped: a
    /// backend is not trusted to finish a body it began (one that sent a head and then
    /// nothing held the probe, and with it the startup timeout, forever).
    static func probeOnce(address: String, path: String, timeout: Duration, requireSuccess: Bool = false) async -> Bool {
        let request = HTTPClientRequest(url: "http://\(address)\(path)")
        do {
            let response = try await HTTPClient.shared.execute(request, timeout: .nanoseconds(Int64(timeout.components.seconds) * 1_000_000_000 + timeout.components.attoseconds / 1_000_000_000))
            let body = response.body
            _ = try? await withTimeLimit(timeout) { try await body.collect(upTo: 1 << 20) }
            return !requireSuccess || response.status.code < 400
        } catch {
            return false
        }
    }
}
