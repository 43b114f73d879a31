import PlaneCore

/// A drone's lease, in the JetStream KV bucket `plane_leases` (key: the drone id). Every
/// renewal and the revocation are compare-and-set writes on this one key, so a renewal
/// and a revocation racing each other cannot both succeed.
public struct DroneLeaseRecord: Sendable, Hashable, Codable {
    public var drone: DroneID
    public var cluster: ClusterName
    /// Changes only when a revoked lease is granted again.
    public var epoch: UInt64
    /// Set by the controller that found the lease expired, before it marks the drone's
    /// lock-holding backends `Lost` and frees their locks.
    public var revoked: Bool
    /// The drone's `lease_hard` (milliseconds) as it last said.
    public var leaseHardMilliseconds: UInt64
    /// When the lease was last renewed (the renewing controller's clock; informational:
    /// expiry is judged by when each controller saw the revision change).
    public var renewed: Timestamp

    public init(drone: DroneID, cluster: ClusterName, epoch: UInt64, revoked: Bool = false, leaseHardMilliseconds: UInt64, renewed: Timestamp) {
        self.drone = drone
        self.cluster = cluster
        self.epoch = epoch
        self.revoked = revoked
        self.leaseHardMilliseconds = leaseHardMilliseconds
        self.renewed = renewed
    }

    enum CodingKeys: String, CodingKey {
        case drone, cluster, epoch, revoked
        case leaseHardMilliseconds = "lease_hard_ms"
        case renewed
    }

    public var leaseHard: Duration { .milliseconds(Int64(clamping: leaseHardMilliseconds)) }
}
