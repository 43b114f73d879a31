import Logging
import NATS
import PlaneCore
import PlaneMessaging

/// Reports backends whose drone has been gone longer than the grace period as `Lost`
/// (in the stream, like any state change) and releases their locks; forgets backends that
/// ended longer ago than the status history is kept.
struct LostBackendSweeper: Sendable {
    let scheduler: Scheduler
    let directory: BackendDirectory
    let relay: StateRelay
    let store: ControllerStore
    let logger: Logger
    /// When this controller started: nobody is declared lost before a full grace period of
    /// listening to heartbeats has passed.
    let started: ContinuousClock.Instant

    func sweep(now: ContinuousClock.Instant = .now) async {
        let grace = scheduler.configuration.droneLostGrace
        guard now - started >= grace, directory.isCaughtUp else { return }
        let wallNow = Timestamp.now()
        for record in directory.all {
            let age = wallNow.duration(since: record.time)
            if !record.isLive {
                if age > scheduler.configuration.statusHistoryMaxAge {
                    try? await store.backends.purge(record.backendID.rawValue)
                }
                continue
            }
            let droneAlive = record.drone.map { drone in scheduler.registry.withLock { $0.isAlive(drone, at: now, within: grace) } } ?? false
            guard !droneAlive, age > grace else { continue }
            let update = UpdateBackendStateMessage(cluster: record.cluster, state: .lost, backend: record.backendID, time: wallNow,
                                                   drone: record.drone ?? DroneID.random())
            do {
                // Only the controller whose compare-and-set wins reports it.
                guard let (current, revision) = try await store.backend(record.backendID), current.isLive else { continue }
                var lost = current
                lost.state = .lost
                lost.time = wallNow
                _ = try await store.backends.update(record.backendID.rawValue, value: try ControllerStore.encode(lost), revision: revision)
                _ = try await relay.messenger.jetStream.publish(PlaneSubjects.backendStatus(record.backendID).subject,
                                                                payload: try WireEncoder().encode(update.relayed))
                if let lock = current.lock {
                    await releaseLock(lock, cluster: current.cluster, backend: current.backendID, store: store, logger: logger)
                }
                logger.notice("sweeper.backend_lost", metadata: ["plane.backend": "\(record.backendID)", "plane.drone": "\(record.drone.map(\.rawValue) ?? "none")"])
            } catch let error as NATSError where error.isConflict {
                continue
            } catch {
                logger.warning("sweeper.failed", metadata: ["plane.backend": "\(record.backendID)", "error": "\(error)"])
            }
        }
    }
}
