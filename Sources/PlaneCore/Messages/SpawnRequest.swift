/// The scheduler's order to a drone (subject `drone.{drone_id}.spawn`, spec §3.4); the reply
/// is `true` (accepted) or `false` (refused).
public struct SpawnRequest: Sendable, Hashable, Codable {
    /// Set by the controller; `null` from older senders.
    public var cluster: ClusterName?
    public var droneID: DroneID
    public var maxIdleSeconds: DurationSeconds
    public var backendID: BackendID
    public var metadata: [String: String]
    public var executable: DockerExecutableConfig
    /// If set, the proxy requires it.
    public var bearerToken: String?
    /// Extension: the lock the backend holds. The drone runs it only under a valid lease and
    /// stops it when it cannot renew that lease. Omitted when nil.
    public var lock: LockName?
    /// Extension: the lock's fencing token (the `plane_locks` revision at which the lock was
    /// taken; a later holder of the same lock always has a larger one). The backend gets it
    /// as `PLANE_FENCING_TOKEN`. Omitted when nil.
    public var fencingToken: UInt64?
    /// Extension (issue 14), as in `ScheduleRequest`; the drone refuses a spawn for a class
    /// or pool it does not have. Each omitted when nil or empty.
    public var runtimeClass: FleetLabel?
    public var pool: FleetLabel?
    public var runtimeOptions: JSONObject
    public var readiness: ReadinessCheck?
    public var maxLifetimeSeconds: DurationSeconds?
    /// Extension (issue 15): the warm pool (a service's name) whose pre-started backends
    /// may serve this spawn (`WarmPoolDefinition.matches`). Omitted when nil.
    public var warmPool: String?

    public init(
        cluster: ClusterName?, droneID: DroneID, maxIdleSeconds: DurationSeconds, backendID: BackendID,
        metadata: [String: String] = [:], executable: DockerExecutableConfig, bearerToken: String? = nil,
        lock: LockName? = nil, fencingToken: UInt64? = nil, runtimeClass: FleetLabel? = nil, pool: FleetLabel? = nil,
        runtimeOptions: JSONObject = JSONObject(), readiness: ReadinessCheck? = nil, maxLifetimeSeconds: DurationSeconds? = nil
    ) {
        self.runtimeClass = runtimeClass
        self.pool = pool
        self.runtimeOptions = runtimeOptions
        self.readiness = readiness
        self.maxLifetimeSeconds = maxLifetimeSeconds
        self.lock = lock
        self.fencingToken = fencingToken
        self.cluster = cluster
        self.droneID = droneID
        self.maxIdleSeconds = maxIdleSeconds
        self.backendID = backendID
        self.metadata = metadata
        self.executable = executable
        self.bearerToken = bearerToken
    }

    enum CodingKeys: String, CodingKey {
        case cluster
        case droneID = "drone_id"
        case maxIdleSeconds = "max_idle_secs"
        case backendID = "backend_id"
        case metadata, executable
        case bearerToken = "bearer_token"
        case lock
        case fencingToken = "fencing_token"
        case runtimeClass = "runtime_class"
        case pool
        case runtimeOptions = "runtime_options"
        case readiness
        case maxLifetimeSeconds = "max_lifetime_secs"
        case warmPool = "warm_pool"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        cluster = try c.decodeIfPresent(ClusterName.self, forKey: .cluster)
        droneID = try c.decode(DroneID.self, forKey: .droneID)
        maxIdleSeconds = try c.decode(DurationSeconds.self, forKey: .maxIdleSeconds)
        backendID = try c.decode(BackendID.self, forKey: .backendID)
        metadata = try c.decode([String: String].self, forKey: .metadata)
        executable = try c.decode(DockerExecutableConfig.self, forKey: .executable)
        bearerToken = try c.decodeIfPresent(String.self, forKey: .bearerToken)
        lock = try c.decodeIfPresent(LockName.self, forKey: .lock)
        fencingToken = try c.decodeIfPresent(UInt64.self, forKey: .fencingToken)
        runtimeClass = try c.decodeIfPresent(FleetLabel.self, forKey: .runtimeClass)
        pool = try c.decodeIfPresent(FleetLabel.self, forKey: .pool)
        runtimeOptions = try c.decodeObject(forKey: .runtimeOptions)
        readiness = try c.decodeIfPresent(ReadinessCheck.self, forKey: .readiness)
        maxLifetimeSeconds = try c.decodeIfPresent(DurationSeconds.self, forKey: .maxLifetimeSeconds)
        warmPool = try c.decodeIfPresent(String.self, forKey: .warmPool)
        if let warmPool, !WarmPoolDefinition.isValidName(warmPool) {
            throw DecodingError.dataCorruptedError(forKey: .warmPool, in: c, debugDescription: WarmPoolDefinition.nameRule)
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(cluster, forKey: .cluster)
        try c.encode(droneID, forKey: .droneID)
        try c.encode(maxIdleSeconds, forKey: .maxIdleSeconds)
        try c.encode(backendID, forKey: .backendID)
        try c.encodeSortedMap(metadata, forKey: .metadata)
        try c.encode(executable, forKey: .executable)
        try c.encode(bearerToken, forKey: .bearerToken)
        try c.encodeIfPresent(lock, forKey: .lock)
        try c.encodeIfPresent(fencingToken, forKey: .fencingToken)
        try c.encodeIfPresent(runtimeClass, forKey: .runtimeClass)
        try c.encodeIfPresent(pool, forKey: .pool)
        try c.encodeUnlessEmpty(runtimeOptions, forKey: .runtimeOptions)
        try c.encodeIfPresent(readiness, forKey: .readiness)
        try c.encodeIfPresent(maxLifetimeSeconds, forKey: .maxLifetimeSeconds)
        try c.encodeIfPresent(warmPool, forKey: .warmPool)
    }
}
