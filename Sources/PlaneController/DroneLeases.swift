import Logging
import NATS
import PlaneCore
import Synchronization

/// The drones' leases in `plane_leases`: renews them for drones (`cluster.*.drone.*.lease`),
/// follows the bucket into a `DroneLeaseTable`, and revokes a stale lease with a
/// compare-and-set on the revision this controller judged stale, so a renewal written
/// meanwhile makes the revocation fail instead of being overruled.
public final class DroneLeases: Sendable {
    /// A drone's `lease_hard` above this is refused: its locks could never be reassigned.
    public static let maximumLeaseHard: Duration = .seconds(3600)

    let bucket: KeyValueBucket
    let table = Mutex(DroneLeaseTable())
    let logger: Logger

    init(bucket: KeyValueBucket, logger: Logger) {
        self.bucket = bucket
        self.logger = logger
    }

    public func verdict(for drone: DroneID, at now: ContinuousClock.Instant, reassignAfter: Duration, margin: Duration) -> DroneLeaseTable.Verdict {
        table.withLock { $0.verdict(for: drone, at: now, reassignAfter: reassignAfter, margin: margin) }
    }

    public func observation(of drone: DroneID) -> DroneLeaseTable.Observation? { table.withLock { $0.observation(of: drone) } }

    /// Renews (or first grants, or grants again after a revocation) `request.drone`'s lease.
    public func renew(_ request: DroneLeaseRequest) async throws -> UInt64 {
        let hard = Duration.milliseconds(Int64(clamping: request.leaseHardMilliseconds))
        guard hard <= Self.maximumLeaseHard, request.leaseHardMilliseconds > 0 else {
            throw ControllerError(.invalidRequest, "lease_hard_ms \(request.leaseHardMilliseconds) is out of range (1 to \(Self.maximumLeaseHard.components.seconds * 1000)); fix [agent] lease_hard_secs on drone \(request.drone).")
        }
        let key = request.drone.rawValue
        for _ in 0..<10 {
            do {
                if let entry = try await bucket.get(key) {
                    var record = try WireDecoder().decode(DroneLeaseRecord.self, from: entry.value)
                    if record.revoked {
                        // Granted again under a new epoch: the drone stops what ran under the old one.
                        let (next, overflow) = record.epoch.addingReportingOverflow(1)
                        record.epoch = overflow ? 1 : next
                        record.revoked = false
                        logger.notice("leases.granted_again", metadata: ["plane.drone": "\(request.drone)", "plane.lease_epoch": "\(record.epoch)"])
                    }
                    record.cluster = request.cluster
                    record.leaseHardMilliseconds = request.leaseHardMilliseconds
                    record.renewed = .now()
                    _ = try await bucket.update(key, value: try ControllerStore.encode(record), revision: entry.revision)
                    return record.epoch
                }
                let record = DroneLeaseRecord(drone: request.drone, cluster: request.cluster, epoch: 1,
                                              leaseHardMilliseconds: request.leaseHardMilliseconds, renewed: .now())
                _ = try await bucket.create(key, value: try ControllerStore.encode(record))
                return record.epoch
            } catch let error as NATSError where error.isConflict {
                continue
            }
        }
        throw ControllerError(.unavailable, "The lease of drone \(request.drone) was contended ten times in a row; the drone retries.")
    }

    /// Revokes the lease if it is still at `revision`; false when it changed meanwhile (a
    /// renewal won) or another controller revoked it first.
    public func revoke(_ drone: DroneID, revision: UInt64) async throws -> Bool {
        guard let observation = observation(of: drone), observation.revision == revision else { return false }
        var record = observation.record
        record.revoked = true
        do {
            let written = try await bucket.update(drone.rawValue, value: try ControllerStore.encode(record), revision: revision)
            table.withLock { $0.observe(record, revision: written, at: .now) }
            return true
        } catch let error as NATSError where error.isConflict {
            return false
        }
    }

    /// Follows the bucket until cancelled; re-watches after an error.
    func follow() async {
        while !Task.isCancelled {
            table.withLock { $0.watchRestarted() }
            do {
                for try await event in try await bucket.watch() {
                    switch event {
                    case .entry(let entry):
                        guard let drone = try? DroneID(entry.key) else { continue }
                        guard entry.operation == .put, let record = try? WireDecoder().decode(DroneLeaseRecord.self, from: entry.value) else {
                            table.withLock { $0.remove(drone) }
                            continue
                        }
                        table.withLock { $0.observe(record, revision: entry.revision, at: .now) }
                    case .caughtUp:
                        table.withLock { $0.watchCaughtUp() }
                    }
                }
            } catch is CancellationError {
                return
            } catch {
                logger.warning("leases.watch_failed", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: .seconds(1))
        }
    }
}
