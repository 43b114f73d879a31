import Logging
import NATS
import PlaneCore
import PlaneMessaging

/// Decides which backends the cluster has lost, reports them `Lost` (in the stream, like any
/// state change) and releases their locks; forgets backends that ended longer ago than the
/// status history is kept.
///
/// - A backend that holds a lock is lost only after its drone's lease went stale and this
///   controller revoked it (a compare-and-set, so a renewal written meanwhile wins): by then
///   the drone has stopped it itself (docs/architecture.md, "Locks across partitions").
/// - A backend without a lock, or on a drone that never took a lease (v0.3.10), or on a
///   drone whose lease another controller revoked, is lost once its drone has not been heard
///   from for `drone_lost_grace`.
struct LostBackendSweeper: Sendable {
    let scheduler: Scheduler
    let directory: BackendDirectory
    let relay: StateRelay
    let store: ControllerStore
    let leases: DroneLeases
    let logger: Logger
    /// When this controller started: nobody is declared lost by heartbeats before a full
    /// grace period of listening to them has passed.
    let started: ContinuousClock.Instant

    func sweep(now: ContinuousClock.Instant = .now) async {
        let configuration = scheduler.configuration
        let grace = configuration.droneLostGrace
        guard directory.isCaughtUp else { return }
        let heardLongEnough = now - started >= grace
        let wallNow = Timestamp.now()
        var verdicts: [DroneID: DroneLeaseTable.Verdict] = [:]
        var revokedHere: Set<DroneID> = []
        for record in directory.all {
            let age = wallNow.duration(since: record.time)
            if !record.isLive {
                if age > configuration.statusHistoryMaxAge {
                    try? await store.backends.purge(record.backendID.rawValue)
                }
                continue
            }
            if record.state == nil, record.lock != nil, age > scheduler.pendingLockLimit {
                await scheduler.resolvePendingLock(of: record)
            }
            if record.lock != nil, let drone = record.drone {
                if revokedHere.contains(drone) {
                    // Everything in this sweep's snapshot existed before the revocation.
                    await markLost(record, at: wallNow)
                    continue
                }
                var verdict = verdicts[drone]
                    ?? leases.verdict(for: drone, at: now, reassignAfter: configuration.lockReassignAfter, margin: configuration.leaseMargin)
                if case .stale(let revision) = verdict {
                    let revoked = (try? await leases.revoke(drone, revision: revision)) ?? false
                    if revoked {
                        logger.notice("leases.revoked", metadata: ["plane.drone": "\(drone)"])
                        revokedHere.insert(drone)
                        await markLost(record, at: wallNow)
                        continue
                    }
                    verdict = .valid
                }
                verdicts[drone] = verdict
                // Valid: nothing to do. Revoked earlier (by another controller, or before this
                // one restarted) or never leased: judged by heartbeats below; a revoked drone
                // that returns stops those backends itself when granted a new epoch.
                if verdict == .valid { continue }
            }
            guard heardLongEnough else { continue }
            let droneAlive = record.drone.map { drone in scheduler.registry.withLock { $0.isAlive(drone, at: now, within: grace) } } ?? false
            guard !droneAlive, age > grace else { continue }
            await markLost(record, at: wallNow)
        }
    }

    /// Reports `record`'s backend `Lost` if it is still live (only the controller whose
    /// compare-and-set wins reports it) and frees its lock.
    func markLost(_ record: BackendRecord, at wallNow: Timestamp) async {
        let update = UpdateBackendStateMessage(cluster: record.cluster, state: .lost, backend: record.backendID, time: wallNow,
                                               drone: record.drone ?? DroneID.random())
        do {
            guard let (current, revision) = try await store.backend(record.backendID), current.isLive else { return }
            var lost = current
            lost.state = .lost
            lost.time = wallNow
            _ = try await store.backends.update(record.backendID.rawValue, value: try ControllerStore.encode(lost), revision: revision)
            _ = try await relay.messenger.jetStream.publish(PlaneSubjects.backendStatus(record.backendID).subject,
                                                            payload: try WireEncoder().encode(update.relayed))
            if let lock = current.lock {
                await releaseLock(lock, cluster: current.cluster, backend: current.backendID, store: store, logger: logger)
            }
            logger.notice("sweeper.backend_lost", metadata: ["plane.backend": "\(record.backendID)", "plane.drone": "\(record.drone.map(\.rawValue) ?? "none")",
                                                             "plane.lock_held": "\(current.lock != nil)"])
        } catch let error as NATSError where error.isConflict {
            return
        } catch {
            logger.warning("sweeper.failed", metadata: ["plane.backend": "\(record.backendID)", "error": "\(error)"])
        }
    }
}
