import PlaneCore

/// The controller's current view of one backend, kept in the JetStream KV bucket
/// `plane_backends` (key: backend id) so every controller sees the same state.
public struct BackendRecord: Sendable, Hashable, Codable {
    public var backendID: BackendID
    public var cluster: ClusterName
    /// Nil while the spawn is being placed.
    public var drone: DroneID?
    /// Nil until the drone reports the first state: the backend is being scheduled.
    public var state: BackendState?
    /// Time of the last state (the drone's clock), or when scheduling began.
    public var time: Timestamp
    public var lock: LockName?
    public var bearerToken: String?
    /// When the backend was scheduled (or first heard of); nil in records written before
    /// this field existed. Shown as its age on the dashboard.
    public var created: Timestamp?

    public init(backendID: BackendID, cluster: ClusterName, drone: DroneID? = nil, state: BackendState? = nil,
                time: Timestamp, lock: LockName? = nil, bearerToken: String? = nil, created: Timestamp? = nil) {
        self.created = created
        self.backendID = backendID
        self.cluster = cluster
        self.drone = drone
        self.state = state
        self.time = time
        self.lock = lock
        self.bearerToken = bearerToken
    }

    /// Scheduled, loading, starting or ready: holds its id and its lock.
    public var isLive: Bool { !(state?.isTerminal ?? false) }

    enum CodingKeys: String, CodingKey {
        case backendID = "backend_id"
        case cluster, drone, state, time, lock, created
        case bearerToken = "bearer_token"
    }
}

/// A held lock, in the KV bucket `plane_locks` (key: `{cluster_s}.{lock as base64url}`).
/// `confirmed` turns true once a drone accepted the backend; until then other requests for
/// the lock wait rather than answer with a backend that may never start.
public struct LockRecord: Sendable, Hashable, Codable {
    public var backendID: BackendID
    public var drone: DroneID?
    public var bearerToken: String?
    public var confirmed: Bool
    /// When the lock was taken (controller clock), to recognise a holder that crashed
    /// before confirming.
    public var created: Timestamp
    /// The bucket revision at which the lock was taken: the holder's fencing token.
    public var fencingToken: UInt64?

    public init(backendID: BackendID, drone: DroneID? = nil, bearerToken: String? = nil, confirmed: Bool = false, created: Timestamp,
                fencingToken: UInt64? = nil) {
        self.fencingToken = fencingToken
        self.backendID = backendID
        self.drone = drone
        self.bearerToken = bearerToken
        self.confirmed = confirmed
        self.created = created
    }

    enum CodingKeys: String, CodingKey {
        case backendID = "backend_id"
        case drone
        case bearerToken = "bearer_token"
        case confirmed, created
        case fencingToken = "fencing_token"
    }

    public static func key(cluster: ClusterName, lock: LockName) -> String {
        "\(cluster.subjectForm).\(lock.encodedToken)"
    }
}
