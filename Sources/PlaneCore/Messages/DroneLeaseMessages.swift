/// A drone's lease renewal (extension; subject `cluster.{cluster_s}.drone.{drone_id}.lease`,
/// request, answered by one controller with a `DroneLeaseGrant`).
///
/// A drone runs backends that hold a lock only under a lease it keeps renewing through the
/// controllers; when it cannot renew, it stops them itself before any controller may hand
/// their locks to others (docs/architecture.md, "Locks across partitions").
public struct DroneLeaseRequest: Sendable, Hashable, Codable {
    public var cluster: ClusterName
    public var drone: DroneID
    /// The lease epoch the drone holds; nil before its first grant. A grant with another
    /// epoch tells the drone that its earlier lease was revoked.
    public var epoch: UInt64?
    /// The drone's `lease_hard`: it has stopped its lock-holding backends this long after
    /// sending its last renewal that was granted. Controllers wait longer than this (plus a
    /// margin) before they reassign a lock held on this drone.
    public var leaseHardMilliseconds: UInt64
    /// The drone's live backends, to learn which the cluster has ended meanwhile (sent after
    /// the drone starts or reconnects, and every few renewals). Omitted when nil.
    public var backends: [BackendID]?

    public init(cluster: ClusterName, drone: DroneID, epoch: UInt64?, leaseHardMilliseconds: UInt64, backends: [BackendID]? = nil) {
        self.cluster = cluster
        self.drone = drone
        self.epoch = epoch
        self.leaseHardMilliseconds = leaseHardMilliseconds
        self.backends = backends
    }

    enum CodingKeys: String, CodingKey {
        case cluster, drone, epoch
        case leaseHardMilliseconds = "lease_hard_ms"
        case backends
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        cluster = try c.decode(ClusterName.self, forKey: .cluster)
        drone = try c.decode(DroneID.self, forKey: .drone)
        epoch = try c.decodeIfPresent(UInt64.self, forKey: .epoch)
        leaseHardMilliseconds = try c.decode(UInt64.self, forKey: .leaseHardMilliseconds)
        backends = try c.decodeIfPresent([BackendID].self, forKey: .backends)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(cluster, forKey: .cluster)
        try c.encode(drone, forKey: .drone)
        try c.encodeIfPresent(epoch, forKey: .epoch)
        try c.encode(leaseHardMilliseconds, forKey: .leaseHardMilliseconds)
        try c.encodeIfPresent(backends, forKey: .backends)
    }
}

/// A controller's answer to a `DroneLeaseRequest`: the lease is renewed under `epoch`.
public struct DroneLeaseGrant: Sendable, Hashable, Codable {
    /// Unchanged while the lease is renewed in time; a new epoch after a controller revoked
    /// the lease (the drone was cut off for longer than its lease): every lock-holding
    /// backend the drone still runs from before must stop at once.
    public var epoch: UInt64
    /// Backends of the request's list that the cluster has ended (e.g. marked `Lost` while
    /// the drone was away), with the state it recorded. Omitted when empty.
    public var ended: [EndedBackend]

    public init(epoch: UInt64, ended: [EndedBackend] = []) {
        self.epoch = epoch
        self.ended = ended
    }

    enum CodingKeys: String, CodingKey { case epoch, ended }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        epoch = try c.decode(UInt64.self, forKey: .epoch)
        ended = try c.decode([EndedBackend].self, forKey: .ended, default: [])
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(epoch, forKey: .epoch)
        if !ended.isEmpty { try c.encode(ended, forKey: .ended) }
    }
}

/// One backend the cluster has ended, and its terminal state there.
public struct EndedBackend: Sendable, Hashable, Codable {
    public var backend: BackendID
    public var state: BackendState

    public init(backend: BackendID, state: BackendState) {
        self.backend = backend
        self.state = state
    }

    enum CodingKeys: String, CodingKey {
        case backend = "backend_id"
        case state
    }
}
