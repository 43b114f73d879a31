import PlaneCore

/// What one controller knows of the drones' leases: each lease's last revision and when
/// this controller saw it change, kept current by a watch of `plane_leases`. A pure state
/// machine: time is passed in, so tests run it under a manual clock.
///
/// A lease is *stale* once its revision has not changed for `reassignAfter` (at least the
/// drone's own `lease_hard` plus `margin`) as this controller saw it. Seeing a revision
/// change can only come after the write, and the drone counts its lease from before it
/// sent the renewal, so a drone whose lease is stale here has already stopped its
/// lock-holding backends (docs/architecture.md, "Locks across partitions").
public struct DroneLeaseTable: Sendable {
    public struct Observation: Sendable, Hashable {
        public var record: DroneLeaseRecord
        public var revision: UInt64
        /// When this controller saw `revision` first.
        public var seen: ContinuousClock.Instant
    }

    public enum Verdict: Sendable, Hashable {
        /// The drone never took a lease (a drone without lock-holding backends, or a
        /// v0.3.10 drone): its liveness is judged by heartbeats.
        case none
        /// Renewed recently, or this controller cannot tell yet: nothing is reassigned.
        case valid
        /// Not renewed for long enough: the lease may be revoked at this revision.
        case stale(revision: UInt64)
        /// Revoked: the drone's lock-holding backends of that epoch are lost.
        case revoked
    }

    private(set) var leases: [DroneID: Observation] = [:]
    /// The watch delivered every current entry since it (re)started.
    private(set) var caughtUp = false

    public init() {}

    public mutating func observe(_ record: DroneLeaseRecord, revision: UInt64, at now: ContinuousClock.Instant) {
        if let known = leases[record.drone], known.revision == revision { return }
        leases[record.drone] = Observation(record: record, revision: revision, seen: now)
    }

    public mutating func remove(_ drone: DroneID) { leases[drone] = nil }

    /// The watch (re)started: until it catches up, entries may be missing or old.
    public mutating func watchRestarted() { caughtUp = false }

    public mutating func watchCaughtUp() { caughtUp = true }

    public func observation(of drone: DroneID) -> Observation? { leases[drone] }

    public func verdict(for drone: DroneID, at now: ContinuousClock.Instant, reassignAfter: Duration, margin: Duration) -> Verdict {
        // A watch that has not caught up may not have shown a renewal yet: no judgement.
        guard caughtUp else { return .valid }
        guard let observation = leases[drone] else { return .none }
        if observation.record.revoked { return .revoked }
        let wait = max(reassignAfter, observation.record.leaseHard + margin)
        return now - observation.seen >= wait ? .stale(revision: observation.revision) : .valid
    }
}
