import Logging
import NATS
import PlaneCore
import PlaneMetrics
import PlaneDNS
import PlaneMessaging
import ServiceLifecycle
import Synchronization
import Tracing

/// The controller process: scheduler, state relay, lock table, DNS server and HTTP API,
/// each switched on by its configuration section. `start()` sets up streams, buckets,
/// subscriptions and listeners (so a caller can rely on them once it returns); `run()`
/// serves until graceful shutdown or cancellation.
public final class Controller: Service, Sendable {
    /// The queue group every controller joins, so each request is answered once.
    public static let queueGroup = "plane-controller"

    public let configuration: ControllerConfiguration
    public let messenger: PlaneMessenger
    public let metrics: ControllerMetrics
    public let directory = BackendDirectory()
    let logger: Logger

    struct Parts: Sendable {
        var scheduler: Scheduler?
        var relay: StateRelay?
        var store: ControllerStore?
        var leases: DroneLeases?
        var dnsStore: DNSRecordStore?
        var dnsServer: DNSServer?
        var dnsFeed: DNSRecordFeed?
        var httpServer: HTTPAPIServer?
        var subscriptions: Subscriptions?
        var started: ContinuousClock.Instant = .now
    }

    struct Subscriptions: Sendable {
        var heartbeats: PlaneSubscription<DroneStatusMessage, NullReply>?
        var registrations: PlaneSubscription<DroneConnectRequest, NullReply>?
        var schedules: PlaneSubscription<ScheduleRequest, ScheduleResponse>?
        var updates: PlaneSubscription<UpdateBackendStateMessage, NullReply>?
        var leases: PlaneSubscription<DroneLeaseRequest, DroneLeaseGrant>?
        var dnsRecords: PlaneSubscription<SetDnsRecord, NullReply>?
        var acme: PlaneSubscription<SetAcmeDnsRecord, Bool>?
    }

    private let parts = Mutex(Parts())

    /// `registry`: the process's metrics (`PlaneMetrics`); a new one by default.
    public init(configuration: ControllerConfiguration, client: NATSClient, registry: PlaneMetrics = PlaneMetrics(), logger: Logger) {
        metrics = ControllerMetrics(registry: registry)
        self.configuration = configuration
        self.messenger = PlaneMessenger(client: client, logger: logger, limits: configuration.limits.json)
        self.logger = logger
    }

    public var scheduler: Scheduler? { parts.withLock { $0.scheduler } }
    public var dnsServer: DNSServer? { parts.withLock { $0.dnsServer } }
    public var dnsStore: DNSRecordStore? { parts.withLock { $0.dnsStore } }
    public var httpServer: HTTPAPIServer? { parts.withLock { $0.httpServer } }

    /// Creates streams and buckets, subscribes, binds listeners. Throws a
    /// `ControllerError` naming what could not be set up.
    public func start() async throws {
        if parts.withLock({ $0.subscriptions != nil }) { return }
        var subscriptions = Subscriptions()
        var next = Parts()
        do {
            try await setUp(&next, &subscriptions)
        } catch {
            // Nothing half-started stays behind: subscriptions end, listeners close.
            Self.unsubscribe(subscriptions)
            await next.dnsServer?.stop()
            await next.httpServer?.stop()
            throw error
        }
        next.subscriptions = subscriptions
        next.started = .now
        parts.withLock { $0 = next }
        logger.info("controller.started", metadata: [
            "controller.scheduler": "\(configuration.scheduler != nil)", "controller.dns": "\(configuration.dns != nil)",
            "controller.http": "\(configuration.http != nil)",
        ])
    }

    /// The status stream (created, or its limits brought up to date) and the KV buckets.
    private func openStore(_ schedulerConfiguration: SchedulerConfiguration) async throws -> ControllerStore {
        let config = BackendStatusStream.configuration(historyPerBackend: schedulerConfiguration.statusHistoryMessages,
                                                       maxAge: schedulerConfiguration.statusHistoryMaxAge,
                                                       replicas: schedulerConfiguration.replicas)
        let info = try await messenger.jetStream.ensureStream(config)
        if info.config.maxMessagesPerSubject != config.maxMessagesPerSubject || info.config.maxAge != config.maxAge {
            var updated = info.config
            updated.maxMessagesPerSubject = config.maxMessagesPerSubject
            updated.maxAge = config.maxAge
            _ = try await messenger.jetStream.updateStream(updated)
            logger.notice("controller.status_stream_limits_updated", metadata: ["stream.max_per_backend": "\(config.maxMessagesPerSubject ?? 0)"])
        }
        return try await ControllerStore.open(messenger.jetStream, replicas: schedulerConfiguration.replicas)
    }

    /// `openStore`, asked again while JetStream is unavailable in a way waiting can fix (no
    /// answer, no leader yet, too few servers yet for the replicas: a NATS cluster starting
    /// with its controllers) until `jetstream_wait_secs` have passed, the pause growing from
    /// 1 s to 5 s. Anything else (no JetStream at all, a refused configuration) fails at once.
    private func openStoreRetrying(_ schedulerConfiguration: SchedulerConfiguration) async throws -> ControllerStore {
        let clock = ContinuousClock()
        let started = clock.now
        var attempt = 1
        var pause = Duration.seconds(1)
        while true {
            do {
                return try await openStore(schedulerConfiguration)
            } catch {
                guard let reason = JetStreamUnavailability(error) else {
                    throw ControllerError(.unavailable, JetStreamUnavailability.permanentAdvice(error), cause: error)
                }
                let waited = clock.now - started
                guard waited + pause <= schedulerConfiguration.jetStreamWait else {
                    throw ControllerError(.unavailable, reason.advice(replicas: schedulerConfiguration.replicas, waited: waited), cause: error)
                }
                logger.warning("controller.jetstream_unavailable", metadata: [
                    "attempt": "\(attempt)", "jetstream.reason": "\(reason)", "error": "\(error)",
                ])
                attempt += 1
                try await Task.sleep(for: pause)
                pause = min(pause * 2, .seconds(5))
            }
        }
    }

    private func setUp(_ next: inout Parts, _ subscriptions: inout Subscriptions) async throws {
        if let schedulerConfiguration = configuration.scheduler {
            let store = try await openStoreRetrying(schedulerConfiguration)
            let leases = DroneLeases(bucket: store.leases, logger: logger.withSource("leases"))
            let scheduler = Scheduler(configuration: schedulerConfiguration, messenger: messenger, store: store, leases: leases, metrics: metrics,
                                      logger: logger.withSource("scheduler"), spawnLimits: configuration.limits.spawn)
            next.scheduler = scheduler
            next.store = store
            next.relay = StateRelay(messenger: messenger, store: store, metrics: metrics, logger: logger.withSource("relay"))
            next.leases = leases
            subscriptions.heartbeats = try await messenger.subscribe(PlaneSubjects.droneStatusAll)
            subscriptions.registrations = try await messenger.subscribe(PlaneSubjects.droneRegisterPattern)
            subscriptions.schedules = try await messenger.subscribe(PlaneSubjects.scheduleAll, queue: Self.queueGroup)
            subscriptions.updates = try await messenger.subscribe(PlaneSubjects.updateBackendStateAll, queue: Self.queueGroup)
            subscriptions.leases = try await messenger.subscribe(PlaneSubjects.leaseAll, queue: Self.queueGroup)
        }
        if let dns = configuration.dns {
            let store = DNSRecordStore(zones: dns.zones + (configuration.http.flatMap { try? DNSName($0.cluster.rawValue) }.map { [$0] } ?? []),
                                       limits: dns.limits)
            var authority = DNSAuthority(nameServer: dns.nameServer, mailbox: dns.mailbox)
            authority.serial = UInt32(truncatingIfNeeded: Timestamp.now().secondsSinceEpoch)
            let feed = DNSRecordFeed(messenger: messenger, store: store, logger: logger.withSource("dns"))
            subscriptions.dnsRecords = try await messenger.subscribe(PlaneSubjects.dnsAll)
            subscriptions.acme = try await messenger.subscribe(PlaneSubjects.acmeSetDnsRecordPattern, queue: Self.queueGroup)
            await feed.replay()
            let dnsLogger = logger.withSource("dns")
            let server = DNSServer(configuration: dns.server, responder: DNSResponder(store: store, authority: authority), logger: dnsLogger) { key, client in
                // A flood of refused or slow clients is counted, and logged at most once per interval.
                guard let hits = LimitCounters.shared.record(key) else { return }
                dnsLogger.notice("limit.exceeded", metadata: ["plane.limit": "\(key)", "plane.limit_hits": "\(hits)", "dns.client": "\(client?.ipAddress ?? "?")"])
            }
            do {
                try await server.start()
            } catch {
                throw ControllerError(.startupFailed, error.message, cause: error.cause)
            }
            next.dnsStore = store
            next.dnsFeed = feed
            next.dnsServer = server
        }
        if let http = configuration.http {
            let server = HTTPAPIServer(configuration: http, controller: self, logger: logger.withSource("http"))
            try await server.start()
            next.httpServer = server
            await publishWarmPools(http)
        }
    }

    /// Puts the definition of every service's warm pool into `plane_warm_pools` (a service
    /// with `warm_pool = 0` gets size 0 there when it had a pool, so drones stop theirs).
    /// Failures are logged: connects work without pools.
    func publishWarmPools(_ http: HTTPAPIConfiguration) async {
        let named = http.services.filter { $0.value.warmPool > 0 }
        do {
            var configuration = KeyValueConfiguration(bucket: WarmPoolDefinition.bucket)
            configuration.description = "Plane: warm pools (pre-started backends) per service"
            configuration.replicas = self.configuration.scheduler?.replicas ?? 1
            let bucket = try await messenger.jetStream.keyValue(configuration)
            for (name, service) in http.services.sorted(by: { $0.key < $1.key }) {
                let key = WarmPoolDefinition.key(cluster: http.cluster, name: name)
                if service.warmPool == 0 {
                    if WarmPoolDefinition.isValidName(name), let existing = try? await bucket.get(key),
                       var old = try? WireDecoder().decode(WarmPoolDefinition.self, from: existing.value), old.size > 0 {
                        old.size = 0
                        _ = try await bucket.put(key, value: try WireEncoder().encode(old))
                    }
                    continue
                }
                guard let definition = HTTPConnectRequest.warmPoolDefinition(cluster: http.cluster, service: name, service) else { continue }
                _ = try await bucket.put(key, value: try WireEncoder().encode(definition))
            }
            if !named.isEmpty {
                logger.info("controller.warm_pools_published", metadata: ["plane.pools": "\(named.keys.sorted().joined(separator: ", "))"])
            }
        } catch {
            logger.warning("controller.warm_pools_unpublished", metadata: ["error": "\(error)"])
        }
    }

    static func unsubscribe(_ s: Subscriptions) {
        try? s.heartbeats?.unsubscribe()
        try? s.registrations?.unsubscribe()
        try? s.schedules?.unsubscribe()
        try? s.updates?.unsubscribe()
        try? s.leases?.unsubscribe()
        try? s.dnsRecords?.unsubscribe()
        try? s.acme?.unsubscribe()
    }

    public func run() async throws {
        try await start()
        let parts = parts.withLock { $0 }
        guard let subscriptions = parts.subscriptions else { return }
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                if let scheduler = parts.scheduler, let relay = parts.relay, let store = parts.store, let leases = parts.leases {
                    self.serveScheduler(scheduler, relay: relay, store: store, leases: leases, subscriptions: subscriptions, started: parts.started, in: &group)
                }
                if let feed = parts.dnsFeed, let server = parts.dnsServer, let dnsStore = parts.dnsStore {
                    self.serveDNS(feed, server: server, store: dnsStore, subscriptions: subscriptions, in: &group)
                }
                if let http = parts.httpServer {
                    group.addTask { await http.serve() }
                }
            }
        }
        await stop()
    }

    /// Unsubscribes and closes the listeners.
    public func stop() async {
        let parts = parts.withLock { $0 }
        if let s = parts.subscriptions { Self.unsubscribe(s) }
        await parts.dnsServer?.stop()
        await parts.httpServer?.stop()
    }

    func serveScheduler(_ scheduler: Scheduler, relay: StateRelay, store: ControllerStore, leases: DroneLeases, subscriptions: Subscriptions,
                        started: ContinuousClock.Instant, in group: inout DiscardingTaskGroup) {
        let logger = logger
        let metrics = metrics
        let directory = directory
        if let heartbeats = subscriptions.heartbeats {
            group.addTask {
                for await delivery in heartbeats {
                    switch delivery.message {
                    case .success(let message):
                        if let problem = SubjectConsistency.problem(heartbeat: message, subject: delivery.subject) {
                            logger.warning("scheduler.bad_heartbeat", metadata: ["nats.subject": "\(delivery.subject)", "error": "\(problem)"])
                            continue
                        }
                        scheduler.heartbeat(message)
                    case .failure(let error): logger.warning("scheduler.bad_heartbeat", metadata: ["nats.subject": "\(delivery.subject)", "error": "\(error)"])
                    }
                }
            }
        }
        if let registrations = subscriptions.registrations {
            group.addTask {
                for await delivery in registrations {
                    if case .success(let message) = delivery.message {
                        logger.info("scheduler.drone_registered", metadata: ["plane.drone": "\(message.droneID)", "plane.cluster": "\(message.cluster)"])
                    }
                }
            }
        }
        if let schedules = subscriptions.schedules {
            group.addTask {
                await BoundedConcurrency.forEach(schedules, limit: BoundedConcurrency.handlersPerSubscription) { delivery in
                    switch delivery.message {
                    case .failure(let error):
                        metrics.recordInvalidSchedule()
                        logger.notice("scheduler.invalid_request", metadata: ["nats.subject": "\(delivery.subject)", "error": "\(error)"])
                        _ = try? await delivery.respond(.error(ScheduleError(error)))
                    case .success(let request):
                        if let problem = SubjectConsistency.problem(schedule: request, subject: delivery.subject) {
                            metrics.recordInvalidSchedule()
                            logger.notice("scheduler.invalid_request", metadata: ["nats.subject": "\(delivery.subject)", "error": "\(problem)"])
                            _ = try? await delivery.respond(.error(ScheduleError(code: "cluster_mismatch",
                                message: "The request's cluster \(request.cluster) does not match its subject \(delivery.subject); send it to cluster.\(request.cluster.subjectForm).schedule.")))
                            return
                        }
                        guard delivery.replyTo != nil else {
                            // Nobody could learn where the backend went: spawn nothing.
                            logger.warning("scheduler.request_without_reply_subject", metadata: ["plane.cluster": "\(request.cluster)"])
                            return
                        }
                        // A trace the request carries goes on here (and on to the drone).
                        let response = await withSpan("plane.schedule", context: delivery.traceContext, ofKind: .server) { span in
                            span.attributes["plane.cluster"] = request.cluster.rawValue
                            let response = await scheduler.schedule(request)
                            Scheduler.describe(response, on: span)
                            return response
                        }
                        _ = try? await delivery.respond(response)
                    }
                }
            }
        }
        if let updates = subscriptions.updates {
            group.addTask {
                await BoundedConcurrency.forEach(updates, limit: BoundedConcurrency.handlersPerSubscription) { delivery in
                    switch delivery.message {
                    case .failure(let error):
                        // Nothing to store; answering stops the sender from retrying forever.
                        logger.error("relay.invalid_update", metadata: ["nats.subject": "\(delivery.subject)", "error": "\(error)"])
                        _ = try? await delivery.respond(NullReply())
                    case .success(let update):
                        if let problem = SubjectConsistency.problem(update: update, subject: delivery.subject) {
                            // Not stored; answered so that the sender stops retrying.
                            logger.warning("relay.invalid_update", metadata: ["nats.subject": "\(delivery.subject)", "error": "\(problem)"])
                            metrics.recordRejectedUpdate()
                            _ = try? await delivery.respond(NullReply())
                            return
                        }
                        do {
                            try await relay.relay(update)
                            _ = try? await delivery.respond(NullReply())
                        } catch {
                            // No answer: the drone keeps the update and sends it again.
                            logger.error("relay.store_failed", metadata: ["plane.backend": "\(update.backend)", "error": "\(error)"])
                        }
                    }
                }
            }
        }
        if let renewals = subscriptions.leases {
            group.addTask {
                await BoundedConcurrency.forEach(renewals, limit: BoundedConcurrency.handlersPerSubscription) { delivery in
                    switch delivery.message {
                    case .failure(let error):
                        logger.warning("leases.invalid_request", metadata: ["nats.subject": "\(delivery.subject)", "error": "\(error)"])
                    case .success(let request):
                        if let problem = SubjectConsistency.problem(lease: request, subject: delivery.subject) {
                            logger.warning("leases.invalid_request", metadata: ["nats.subject": "\(delivery.subject)", "error": "\(problem)"])
                            return
                        }
                        do {
                            let epoch = try await leases.renew(request)
                            var ended = directory.ended(among: request.backends ?? [], for: request.drone)
                            let superseded = await SupersededLockHolders.find(among: request.backends ?? [], excluding: ended, directory: directory, store: store)
                            if !superseded.isEmpty {
                                logger.warning("leases.superseded_lock_holders", metadata: ["plane.drone": "\(request.drone)",
                                                                                         "plane.backends": "\(superseded.map(\.backend.rawValue))"])
                                ended += superseded
                            }
                            _ = try? await delivery.respond(DroneLeaseGrant(epoch: epoch, ended: ended))
                        } catch {
                            // No answer: the drone's lease runs on from its last grant.
                            logger.warning("leases.renew_failed", metadata: ["plane.drone": "\(request.drone)", "error": "\(error)"])
                        }
                    }
                }
            }
        }
        group.addTask { await directory.follow(store, logger: logger) }
        group.addTask { await leases.follow() }
        let sweeper = LostBackendSweeper(scheduler: scheduler, directory: directory, relay: relay, store: store, leases: leases, logger: logger, started: started)
        group.addTask {
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(2))
                if Task.isCancelled { return }
                await sweeper.sweep()
            }
        }
    }

    func serveDNS(_ feed: DNSRecordFeed, server: DNSServer, store: DNSRecordStore, subscriptions: Subscriptions, in group: inout DiscardingTaskGroup) {
        let logger = logger
        if let records = subscriptions.dnsRecords {
            group.addTask {
                for await delivery in records {
                    switch delivery.message {
                    case .success(let record):
                        if let problem = SubjectConsistency.problem(record: record, subject: delivery.subject) {
                            logger.warning("dns.bad_record", metadata: ["nats.subject": "\(delivery.subject)", "error": "\(problem)"])
                            continue
                        }
                        feed.apply(record)
                    case .failure(let error): logger.warning("dns.bad_record", metadata: ["nats.subject": "\(delivery.subject)", "error": "\(error)"])
                    }
                }
            }
        }
        if let acme = subscriptions.acme {
            group.addTask {
                for await delivery in acme {
                    switch delivery.message {
                    case .success(let request): _ = try? await delivery.respond(await feed.setAcmeRecord(request))
                    case .failure(let error):
                        logger.warning("dns.bad_acme_request", metadata: ["error": "\(error)"])
                        _ = try? await delivery.respond(false)
                    }
                }
            }
        }
        group.addTask {
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(10))
                store.purgeExpired()
            }
        }
    }
}

extension Logger {
    func withSource(_ source: String) -> Logger {
        var copy = self
        copy[metadataKey: "plane.component"] = "\(source)"
        return copy
    }
}
