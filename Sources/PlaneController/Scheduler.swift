import Logging
import NATS
import PlaneCore
import PlaneMessaging
import Synchronization
import Tracing

/// Places backends on drones: answers `ScheduleRequest`s, keeps the drone registry from
/// heartbeats, and enforces "one live backend per lock key and per backend id" through
/// compare-and-set writes in JetStream KV, so several controllers can serve at once.
public final class Scheduler: Sendable {
    public let configuration: SchedulerConfiguration
    let messenger: PlaneMessenger
    let store: ControllerStore
    /// The drones' leases: whether a drone that may hold an unconfirmed lock's backend is
    /// still renewing.
    let leases: DroneLeases
    let registry: Mutex<DroneRegistry>
    let metrics: ControllerMetrics
    let logger: Logger
    /// `[limits]` on a request's environment and metadata, checked before anything is placed.
    let spawnLimits: SpawnLimits

    public init(configuration: SchedulerConfiguration, messenger: PlaneMessenger, store: ControllerStore, leases: DroneLeases,
                metrics: ControllerMetrics, logger: Logger, spawnLimits: SpawnLimits = SpawnLimits()) {
        self.configuration = configuration
        self.leases = leases
        self.spawnLimits = spawnLimits
        self.messenger = messenger
        self.store = store
        self.metrics = metrics
        self.logger = logger
        self.registry = Mutex(DroneRegistry(droneTimeout: configuration.droneTimeout, recentSpawnWindow: configuration.recentSpawnWindow,
                                            maxDrones: configuration.maxDrones, forgetAfter: max(.seconds(3600), configuration.droneLostGrace * 2)))
    }

    // MARK: Drones

    public func heartbeat(_ message: DroneStatusMessage) {
        let now = ContinuousClock.now
        guard !registry.withLock({ $0.heartbeat(message, at: now) }) else { return }
        if let hits = LimitCounters.shared.record(DroneRegistry.maxDronesKey) {
            logger.warning("limit.exceeded", metadata: ["plane.limit": "\(DroneRegistry.maxDronesKey)", "plane.limit_hits": "\(hits)", "plane.drone": "\(message.droneID)"])
        }
    }

    public var drones: [DroneRecord] { registry.withLock { $0.all } }

    public func liveDroneCount() -> Int {
        let now = ContinuousClock.now
        return registry.withLock { registry in registry.all.count { registry.isAlive($0.droneID, at: now, within: configuration.droneTimeout) } }
    }

    // MARK: Scheduling

    /// Answers one schedule request. Never throws: every failure is an answer.
    public func schedule(_ request: ScheduleRequest) async -> ScheduleResponse {
        let started = ContinuousClock.now
        do {
            try spawnLimits.check(request.executable, metadata: request.metadata)
        } catch {
            // Refused before anything is placed: the sender learns which limit or field.
            if let limit = error.limit {
                if let hits = LimitCounters.shared.record(limit) {
                    logger.warning("limit.exceeded", metadata: ["plane.limit": "\(limit)", "plane.limit_hits": "\(hits)", "plane.cluster": "\(request.cluster)",
                                                               "error": "\(error.message)"])
                }
            } else {
                logger.notice("scheduler.invalid_request", metadata: ["plane.cluster": "\(request.cluster)", "error": "\(error)"])
            }
            metrics.recordInvalidSchedule()
            return .error(ScheduleError(error))
        }
        let response: ScheduleResponse
        do {
            response = try await place(request)
        } catch {
            logger.error("scheduler.failed", metadata: ["plane.cluster": "\(request.cluster)", "error": "\(error)"])
            response = .error(ScheduleError(code: "unavailable", message: "The controller could not record the backend (\(error)); try again."))
        }
        metrics.recordSchedule(response, latency: ContinuousClock.now - started)
        return response
    }

    func place(_ request: ScheduleRequest) async throws -> ScheduleResponse {
        let token = request.requireBearerToken ? BearerToken.generate() : nil
        let backendID = request.backendID ?? BackendID.random()
        var tried: Set<DroneID> = []
        let requirements = PlacementRequirements(request)
        // The first drone is chosen before anything is written, so a request that no
        // drone can take costs no JetStream write, and one that can costs one.
        var drone: DroneID
        switch pick(in: request.cluster, requirements: requirements, excluding: tried) {
        case .chosen(let chosen):
            drone = chosen
        case .noDrone(let reason):
            // A live backend that holds the lock (or the id) is still the answer, even when
            // no drone could take a new one right now.
            if let existing = try await liveBackend(for: request) { return .scheduled(existing) }
            logger.notice("scheduler.no_drone_available", metadata: ["plane.cluster": "\(request.cluster)", "drones.tried": "0", "reason": "\(reason)"])
            return .noDroneAvailable(reason: request.usesFleetExtensions ? reason : nil)
        case .invalidOptions(let problems):
            if let existing = try await liveBackend(for: request) { return .scheduled(existing) }
            logger.notice("scheduler.invalid_runtime_options", metadata: ["plane.cluster": "\(request.cluster)", "error": "\(problems)"])
            return .error(ScheduleError(code: "invalid_runtime_options", message: problems))
        }
        var lockKey: String?
        var lockRevision: UInt64 = 0
        // The revision of the lock's creation: every later holder's is larger.
        var fencingToken: UInt64?
        if let lock = request.lock {
            let key = LockRecord.key(cluster: request.cluster, lock: lock)
            switch try await acquire(lockKey: key, lock: lock, backendID: backendID, drone: drone, token: token) {
            case .held(let existing): return .scheduled(existing)
            case .acquired(let revision):
                lockKey = key
                lockRevision = revision
                fencingToken = revision
            }
        }
        // The backend id is claimed with a create, so an id that is already live (or was
        // used before) is never spawned twice.
        let now = Timestamp.now()
        var record = BackendRecord(backendID: backendID, cluster: request.cluster, drone: drone, time: now, lock: request.lock, bearerToken: token, created: now)
        var recordRevision: UInt64
        do {
            recordRevision = try await store.backends.create(backendID.rawValue, value: try ControllerStore.encode(record))
        } catch let error as NATSError where error.isConflict {
            if let lockKey { try? await store.locks.delete(lockKey, revision: lockRevision) }
            guard let (existing, _) = try await store.backend(backendID) else { return try await place(request) }
            if existing.isLive, let holder = existing.drone {
                return .scheduled(ScheduledBackend(drone: holder, backendID: backendID, bearerToken: existing.bearerToken, spawned: false))
            }
            return .error(ScheduleError(code: "backend_id_in_use", message: "Backend id \(backendID) was already used (its last state is \(existing.state?.rawValue ?? "unknown")); choose a new id or omit backend_id."))
        }
        if let lockKey, let name = request.lock {
            // Still ours? A clustered JetStream stream can accept two concurrent creates of one
            // key (nats-server before 2.9.21 checks the expected revision only before the write
            // is replicated, nats-io/nats-server#4320; leader changes reopen that window), so
            // two requests could each believe they took the lock. A second, later write with
            // the revision the create returned fails for all but the last of them: the others
            // give up here, before anything runs.
            let pending = LockRecord(backendID: backendID, drone: drone, bearerToken: token, confirmed: false, created: .now(), fencingToken: fencingToken)
            do {
                lockRevision = try await store.locks.update(lockKey, value: try ControllerStore.encode(pending), revision: lockRevision)
            } catch let error as NATSError where error.isConflict {
                record.state = .errorLoading
                _ = try? await store.backends.update(backendID.rawValue, value: try ControllerStore.encode(record), revision: recordRevision)
                logger.warning("locks.taken_concurrently", metadata: ["plane.lock": "\(name.rawValue)", "plane.backend": "\(backendID)",
                                                                     "plane.fencing_token": "\(fencingToken.map(String.init) ?? "none")"])
                return .error(ScheduleError(code: "unavailable", message: "Another request took the lock \(name.rawValue) at the same moment; ask again to get its backend."))
            }
        }

        // The last drone that did not answer in time: it may run the backend all the same.
        var unanswered: DroneID?
        while true {
            tried.insert(drone)
            registry.withLock { $0.assign(drone, memoryBytes: requirements.memoryBytes ?? 0, warmPool: request.warmPool, backend: backendID, at: .now) }
            var spawn = SpawnRequest(cluster: request.cluster, droneID: drone, maxIdleSeconds: request.maxIdleSeconds, backendID: backendID,
                                     metadata: request.metadata, executable: request.executable, bearerToken: token,
                                     lock: request.lock, fencingToken: fencingToken, runtimeClass: request.runtimeClass, pool: request.pool,
                                     runtimeOptions: request.runtimeOptions, readiness: request.readiness, maxLifetimeSeconds: request.maxLifetimeSeconds)
            spawn.warmPool = request.warmPool
            let answer = await sendSpawn(spawn)
            let accepted = answer == .accepted
            registry.withLock { [drone] in $0.answered(drone, backend: backendID, accepted: accepted, at: .now) }
            if answer == .unanswered { unanswered = drone }
            if accepted {
                if let lockKey, let name = request.lock {
                    let lock = LockRecord(backendID: backendID, drone: drone, bearerToken: token, confirmed: true, created: .now(), fencingToken: fencingToken)
                    _ = try await store.locks.update(lockKey, value: try ControllerStore.encode(lock), revision: lockRevision)
                    logger.info("locks.confirmed", metadata: ["plane.lock": "\(name.rawValue)", "plane.backend": "\(backendID)", "plane.drone": "\(drone)",
                                                              "plane.fencing_token": "\(fencingToken.map(String.init) ?? "none")"])
                }
                logger.info("scheduler.scheduled", metadata: ["plane.backend": "\(backendID)", "plane.drone": "\(drone)", "plane.cluster": "\(request.cluster)"])
                return .scheduled(ScheduledBackend(drone: drone, backendID: backendID, bearerToken: token, spawned: true, fencingToken: fencingToken))
            }
            guard tried.count < max(1, configuration.maxSpawnAttempts),
                  case .chosen(let next) = pick(in: request.cluster, requirements: requirements, excluding: tried) else { break }
            drone = next
            record.drone = drone
            recordRevision = try await store.backends.update(backendID.rawValue, value: try ControllerStore.encode(record), revision: recordRevision)
            if let lockKey {
                let lock = LockRecord(backendID: backendID, drone: drone, bearerToken: token, confirmed: false, created: .now(), fencingToken: fencingToken)
                lockRevision = try await store.locks.update(lockKey, value: try ControllerStore.encode(lock), revision: lockRevision)
            }
        }
        if let lockKey, let name = request.lock, let unanswered {
            // A drone that did not answer may have accepted all the same (its answer lost with
            // a NATS node, or late): freeing the lock now could run the lock twice. The lock
            // stays unconfirmed, naming that drone, and is resolved like any unconfirmed lock
            // (`resolveUnconfirmed`): the drone's report of the backend confirms it; a lease
            // renewal after the spawn window without one ends the record and frees the lock.
            record.drone = unanswered
            if let revision = try? await store.backends.update(backendID.rawValue, value: try ControllerStore.encode(record), revision: recordRevision) {
                recordRevision = revision
                let lock = LockRecord(backendID: backendID, drone: unanswered, bearerToken: token, confirmed: false, created: .now(), fencingToken: fencingToken)
                if (try? await store.locks.update(lockKey, value: try ControllerStore.encode(lock), revision: lockRevision)) != nil {
                    logger.notice("locks.kept_for_unanswered_spawn", metadata: ["plane.lock": "\(name.rawValue)", "plane.backend": "\(backendID)",
                                                                               "plane.drone": "\(unanswered)"])
                    let reason = "\(tried.count) matching drone\(tried.count == 1 ? "" : "s") refused the spawn or did not answer in time (see their logs)"
                    return .noDroneAvailable(reason: request.usesFleetExtensions ? reason : nil)
                }
            }
            // The record or the lock could not be written (it changed meanwhile, or the store
            // is unreachable): the lock is left as it is, never freed here.
            logger.warning("locks.unanswered_spawn_unresolved", metadata: ["plane.lock": "\(name.rawValue)", "plane.backend": "\(backendID)"])
            return .error(ScheduleError(code: "unavailable", message: "The drone did not answer the spawn in time and the controller could not record that; try again."))
        }
        // Nobody took it: the id is spent (its record says so) and the lock is free again.
        await endUnplaced(record, revision: recordRevision)
        if let lockKey { try? await store.locks.delete(lockKey, revision: lockRevision) }
        logger.notice("scheduler.no_drone_available", metadata: ["plane.cluster": "\(request.cluster)", "plane.backend": "\(backendID)", "drones.tried": "\(tried.count)"])
        let reason = "\(tried.count) matching drone\(tried.count == 1 ? "" : "s") refused the spawn or did not answer in time (see their logs)"
        return .noDroneAvailable(reason: request.usesFleetExtensions ? reason : nil)
    }

    /// Marks a backend no drone took `ErrorLoading`. A drone whose answer did not come in
    /// time may have reported the backend meanwhile (its report moved the record first):
    /// that drone was told to terminate it when the answer timed out (`sendSpawnInSpan`),
    /// and the client is told there is none, so the record is ended all the same — else it
    /// stayed live, naming a backend nobody knows the id of.
    func endUnplaced(_ record: BackendRecord, revision: UInt64) async {
        var record = record
        var revision = revision
        for _ in 0..<5 {
            record.state = .errorLoading
            guard let value = try? ControllerStore.encode(record) else { return }
            do {
                _ = try await store.backends.update(record.backendID.rawValue, value: value, revision: revision)
                return
            } catch let error as NATSError where error.isConflict {
                guard let (current, currentRevision) = try? await store.backend(record.backendID), current.isLive else { return }
                logger.notice("scheduler.unanswered_spawn_reported", metadata: ["plane.backend": "\(record.backendID)",
                                                                               "plane.drone": "\(current.drone.map(\.rawValue) ?? "none")"])
                record = current
                revision = currentRevision
            } catch {
                return
            }
        }
    }

    /// The live backend holding the request's lock or its explicit backend id, if any.
    func liveBackend(for request: ScheduleRequest) async throws -> ScheduledBackend? {
        if let lock = request.lock, let (holder, _) = try await store.lock(LockRecord.key(cluster: request.cluster, lock: lock)),
           holder.confirmed, let drone = holder.drone, try await store.backend(holder.backendID)?.record.isLive ?? true {
            return ScheduledBackend(drone: drone, backendID: holder.backendID, bearerToken: holder.bearerToken, spawned: false, fencingToken: holder.fencingToken)
        }
        if let id = request.backendID, let (record, _) = try await store.backend(id), record.isLive, let drone = record.drone {
            return ScheduledBackend(drone: drone, backendID: id, bearerToken: record.bearerToken, spawned: false)
        }
        return nil
    }

    /// Chooses a drone that meets the requirements (the spawn counts towards its load only
    /// once it is sent).
    func pick(in cluster: ClusterName, requirements: PlacementRequirements, excluding tried: Set<DroneID>) -> DroneChoice {
        let now = ContinuousClock.now
        return registry.withLock { registry in
            var generator = SystemRandomNumberGenerator()
            return registry.choose(in: cluster, requirements: requirements, excluding: tried, at: now, using: &generator)
        }
    }

    /// How a drone answered a spawn request.
    enum SpawnAnswer: Sendable, Equatable {
        case accepted
        case refused
        /// No answer in time (or the request could not be sent): the drone may have
        /// accepted all the same.
        case unanswered
    }

    /// Sends the spawn request; `.accepted` only for a `true` reply in time. On a timeout
    /// the drone may still have started it, so it is asked to terminate that backend.
    func sendSpawn(_ spawn: SpawnRequest) async -> SpawnAnswer {
        // The drone continues the trace from this span (its context goes in the headers).
        await withSpan("plane.spawn_request", ofKind: .client) { span in
            span.attributes["plane.backend"] = spawn.backendID.rawValue
            span.attributes["plane.drone"] = spawn.droneID.rawValue
            let answer = await sendSpawnInSpan(spawn)
            span.attributes["plane.accepted"] = answer == .accepted
            switch answer {
            case .accepted: break
            case .refused: span.setStatus(SpanStatus(code: .error, message: "refused"))
            case .unanswered: span.setStatus(SpanStatus(code: .error, message: "not answered in time"))
            }
            return answer
        }
    }

    private func sendSpawnInSpan(_ spawn: SpawnRequest) async -> SpawnAnswer {
        do {
            let accepted = try await messenger.request(PlaneSubjects.spawn(spawn.droneID), spawn, timeout: configuration.spawnTimeout)
            if !accepted {
                logger.notice("scheduler.spawn_refused", metadata: ["plane.drone": "\(spawn.droneID)", "plane.backend": "\(spawn.backendID)"])
            }
            return accepted ? .accepted : .refused
        } catch {
            logger.warning("scheduler.spawn_failed", metadata: ["plane.drone": "\(spawn.droneID)", "plane.backend": "\(spawn.backendID)", "error": "\(error)"])
            if let error = error as? NATSError, error.code == .timeout, let cluster = spawn.cluster {
                let termination = TerminationRequest(cluster: cluster, backendID: spawn.backendID)
                try? await messenger.client.publish(PlaneSubjects.terminate(cluster, spawn.backendID).subject, payload: WireEncoder().encode(termination))
            }
            // Nobody listening: the drone never had it. Anything else (a timeout, a lost
            // connection, an answer that does not decode) may hide an acceptance.
            if let error = error as? NATSError, error.code == .noResponders { return .refused }
            return .unanswered
        }
    }

    /// A schedule answer as span attributes.
    static func describe(_ response: ScheduleResponse, on span: any Span) {
        switch response {
        case .scheduled(let backend):
            span.attributes["plane.backend"] = backend.backendID.rawValue
            span.attributes["plane.drone"] = backend.drone.rawValue
            span.attributes["plane.spawned"] = backend.spawned
        case .noDroneAvailable(let reason):
            span.attributes["plane.result"] = "no_drone_available"
            if let reason { span.setStatus(SpanStatus(code: .error, message: reason)) }
        case .error(let error):
            span.attributes["plane.result"] = "error"
            span.setStatus(SpanStatus(code: .error, message: error.message))
        }
    }

    /// A lock whose placing controller never confirmed it. Its backend may run: a drone that
    /// reported it has it (the lock is confirmed for it and it answers); a drone that renewed
    /// its lease after the spawn was answered would have reported it, so one that has not
    /// does not have it (its record ends, the drone is told to terminate it in case, and
    /// the lock is freed); a drone that has not renewed since is left to the lost-backend sweep, which
    /// frees the lock once that lease is revoked. Nil: look again.
    func resolveUnconfirmed(_ lock: LockRecord, named name: LockName, lockKey: String, revision: UInt64, holder: BackendRecord?,
                            waitWhenUndecided: Bool = true) async throws -> ScheduledBackend? {
        guard let holder, let drone = holder.drone else {
            // No backend was claimed (the id is claimed before any spawn is sent).
            try? await store.locks.delete(lockKey, revision: revision)
            return nil
        }
        if holder.state != nil {
            var confirmed = lock
            confirmed.confirmed = true
            confirmed.drone = drone
            _ = try? await store.locks.update(lockKey, value: try ControllerStore.encode(confirmed), revision: revision)
            logger.notice("locks.confirmed_by_report", metadata: ["plane.lock": "\(name.rawValue)", "plane.backend": "\(lock.backendID)", "plane.drone": "\(drone)",
                                                                  "plane.backend_state": "\(holder.state?.rawValue ?? "none")"])
            return ScheduledBackend(drone: drone, backendID: lock.backendID, bearerToken: lock.bearerToken, spawned: false, fencingToken: lock.fencingToken)
        }
        let now = ContinuousClock.now
        let age = Timestamp.now().duration(since: lock.created)
        let verdict = leases.verdict(for: drone, at: now, reassignAfter: configuration.lockReassignAfter, margin: configuration.leaseMargin)
        // Renewed after the spawn was answered (or timed out): the drone was connected then,
        // and its outbox would have reported a backend it had accepted.
        let renewedSince = leases.observation(of: drone).map { now - $0.seen < age - configuration.spawnTimeout } ?? false
        switch verdict {
        case .valid where renewedSince, .none:
            guard let (current, recordRevision) = try await store.backend(lock.backendID), current.isLive, current.state == nil else { return nil }
            var ended = current
            ended.state = .errorLoading
            ended.time = .now()
            _ = try? await store.backends.update(lock.backendID.rawValue, value: try ControllerStore.encode(ended), revision: recordRevision)
            let termination = TerminationRequest(cluster: current.cluster, backendID: lock.backendID)
            try? await messenger.client.publish(PlaneSubjects.terminate(current.cluster, lock.backendID).subject, payload: WireEncoder().encode(termination))
            try? await store.locks.delete(lockKey, revision: revision)
            logger.notice("scheduler.unconfirmed_lock_freed", metadata: ["plane.lock": "\(name.rawValue)", "plane.backend": "\(lock.backendID)", "plane.drone": "\(drone)"])
        case .valid, .stale, .revoked:
            if waitWhenUndecided { try await Task.sleep(for: .milliseconds(200)) }
        }
        return nil
    }

    /// How long a lock may stay unconfirmed before it is resolved (`resolveUnconfirmed`):
    /// longer than every spawn attempt of its placing controller.
    var pendingLockLimit: Duration { configuration.spawnTimeout * (configuration.maxSpawnAttempts + 1) }

    /// The sweeper's part: a backend still pending (no state) that holds its lock unconfirmed
    /// past `pendingLockLimit` — typically one whose spawn went unanswered and that nobody
    /// asked for again — is resolved as `acquire` would.
    func resolvePendingLock(of record: BackendRecord) async {
        guard record.state == nil, let name = record.lock else { return }
        let lockKey = LockRecord.key(cluster: record.cluster, lock: name)
        guard let (lock, revision) = try? await store.lock(lockKey), !lock.confirmed, lock.backendID == record.backendID,
              Timestamp.now().duration(since: lock.created) > pendingLockLimit else { return }
        _ = try? await resolveUnconfirmed(lock, named: name, lockKey: lockKey, revision: revision, holder: record, waitWhenUndecided: false)
    }

    enum LockOutcome {
        case acquired(revision: UInt64)
        case held(ScheduledBackend)
    }

    /// Takes the lock for `backendID`, or finds the live backend holding it. A holder that
    /// has not confirmed yet is waited for; a holder whose backend ended, or that never
    /// confirmed within the spawn attempts' time, is replaced.
    func acquire(lockKey: String, lock name: LockName, backendID: BackendID, drone: DroneID, token: String?) async throws -> LockOutcome {
        let pendingLimit = pendingLockLimit
        let deadline = ContinuousClock.now + pendingLimit + .seconds(5)
        while ContinuousClock.now < deadline {
            if let (lock, revision) = try await store.lock(lockKey) {
                let holder = try await store.backend(lock.backendID)?.record
                if let holder, !holder.isLive {
                    try? await store.locks.delete(lockKey, revision: revision)
                    logger.info("locks.freed_from_ended_holder", metadata: ["plane.lock": "\(name.rawValue)", "plane.backend": "\(lock.backendID)",
                                                                            "plane.backend_state": "\(holder.state?.rawValue ?? "none")"])
                    continue
                }
                if lock.confirmed, let drone = lock.drone {
                    return .held(ScheduledBackend(drone: drone, backendID: lock.backendID, bearerToken: lock.bearerToken, spawned: false,
                                                  fencingToken: lock.fencingToken))
                }
                let age = Timestamp.now().duration(since: lock.created)
                if age > pendingLimit {
                    // The controller placing it is gone (or very slow).
                    switch try await resolveUnconfirmed(lock, named: name, lockKey: lockKey, revision: revision, holder: holder) {
                    case .some(let held): return .held(held)
                    case .none: continue
                    }
                }
                try await Task.sleep(for: .milliseconds(20))
                continue
            }
            let pending = LockRecord(backendID: backendID, drone: drone, bearerToken: token, confirmed: false, created: .now())
            do {
                let revision = try await store.locks.create(lockKey, value: try ControllerStore.encode(pending))
                logger.info("locks.acquired", metadata: ["plane.lock": "\(name.rawValue)", "plane.backend": "\(backendID)", "plane.drone": "\(drone)",
                                                         "plane.fencing_token": "\(revision)"])
                return .acquired(revision: revision)
            } catch let error as NATSError where error.isConflict {
                continue
            }
        }
        throw ControllerError(.unavailable, "The lock \(lockKey) stayed pending for too long.")
    }
}
