import Logging
import NATS
import PlaneCore
import PlaneMessaging

/// Relays drones' state updates into the `backend_status` stream (time preserved
/// exactly), keeps `plane_backends` current, and releases a backend's lock when it ends.
/// The drone is answered `null` only after the stream acknowledged the write, so a drone
/// that retries never loses a state (v0.3.10 answered even when the write failed); a retry
/// of an already stored update is deduplicated by its message id.
public struct StateRelay: Sendable {
    let messenger: PlaneMessenger
    let store: ControllerStore
    let metrics: ControllerMetrics
    let logger: Logger

    public init(messenger: PlaneMessenger, store: ControllerStore, metrics: ControllerMetrics, logger: Logger) {
        self.messenger = messenger
        self.store = store
        self.metrics = metrics
        self.logger = logger
    }

    /// Stores one update; throws when the stream did not take it (the drone will retry).
    /// An update for a backend this controller group knows in another cluster is dropped:
    /// a drone of one cluster cannot change the state of another cluster's backends.
    public func relay(_ update: UpdateBackendStateMessage) async throws {
        if let (current, _) = try await store.backend(update.backend) {
            if current.cluster != update.cluster {
                logger.warning("relay.foreign_cluster", metadata: ["plane.backend": "\(update.backend)", "plane.cluster": "\(update.cluster)",
                                                                   "plane.backend_cluster": "\(current.cluster)"])
                metrics.recordRejectedUpdate()
                return
            }
            // The scheduler placed the backend on `current.drone`. Another drone that runs it
            // too (a spawn it answered too late, after the scheduler had tried the next drone)
            // does not get to speak for it: its states would move the record to it, and the
            // copy the cluster placed could then outlive its lock. That drone is told to stop
            // its copy when it reconciles (`BackendDirectory.ended`).
            if let owner = current.drone, owner != update.drone, current.isLive {
                logger.warning("relay.foreign_drone", metadata: ["plane.backend": "\(update.backend)", "plane.drone": "\(update.drone)",
                                                                 "plane.backend_drone": "\(owner)"])
                metrics.recordRejectedUpdate()
                return
            }
        }
        let message = update.relayed
        let messageID = "\(update.backend).\(update.state.rawValue).\(update.time.nanosecondsSinceEpoch)"
        _ = try await messenger.jetStream.publish(PlaneSubjects.backendStatus(update.backend).subject,
                                                  payload: try WireEncoder().encode(message), messageID: messageID)
        metrics.recordRelayed()
        try await record(update)
    }

    /// Applies the update to `plane_backends`: a newer state replaces an older one; a
    /// terminal state is never left. Then frees the lock of a backend that ended.
    func record(_ update: UpdateBackendStateMessage) async throws {
        for _ in 0..<10 {
            var lock: LockName?
            do {
                if let (current, revision) = try await store.backend(update.backend) {
                    if current.state?.isTerminal == true { return }
                    if current.state != nil && current.time > update.time { return }
                    var next = current
                    next.state = update.state
                    next.time = update.time
                    next.drone = update.drone
                    _ = try await store.backends.update(update.backend.rawValue, value: try ControllerStore.encode(next), revision: revision)
                    lock = current.lock
                } else {
                    // A backend this controller group did not schedule (e.g. a v0.3.10
                    // controller did, or its record expired): start tracking it.
                    let next = BackendRecord(backendID: update.backend, cluster: update.cluster, drone: update.drone, state: update.state, time: update.time,
                                             created: update.time)
                    _ = try await store.backends.create(update.backend.rawValue, value: try ControllerStore.encode(next))
                }
            } catch let error as NATSError where error.isConflict {
                continue
            }
            if update.state.isTerminal, let lock {
                await releaseLock(lock, cluster: update.cluster, backend: update.backend, store: store, logger: logger)
            }
            return
        }
        logger.warning("relay.record_contended", metadata: ["plane.backend": "\(update.backend)"])
    }
}

/// Deletes the lock if `backend` still holds it (compare-and-set: a newer holder stays).
func releaseLock(_ lock: LockName, cluster: ClusterName, backend: BackendID, store: ControllerStore, logger: Logger) async {
    let key = LockRecord.key(cluster: cluster, lock: lock)
    do {
        guard let (holder, revision) = try await store.lock(key), holder.backendID == backend else { return }
        try await store.locks.delete(key, revision: revision)
        logger.info("locks.released", metadata: ["plane.backend": "\(backend)", "plane.lock": "\(lock.rawValue)"])
    } catch {
        logger.warning("locks.release_failed", metadata: ["plane.backend": "\(backend)", "error": "\(error)"])
    }
}
