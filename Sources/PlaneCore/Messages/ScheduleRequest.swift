/// A client's request for a backend (subject `cluster.{cluster_s}.schedule`, spec §3.1).
public struct ScheduleRequest: Sendable, Hashable, Codable {
    /// The cluster to run in; the scheduler uses this field, not the subject.
    public var cluster: ClusterName
    /// The backend's id; `nil` lets the controller generate one.
    public var backendID: BackendID?
    /// Idle time after which the backend is stopped.
    public var maxIdleSeconds: DurationSeconds
    public var metadata: [String: String]
    public var executable: DockerExecutableConfig
    public var requireBearerToken: Bool
    /// Extension (later Plane 0.3.x): at most one live backend holds a lock. Omitted when nil.
    public var lock: LockName?
    /// Extension (issue 14): only drones that have this runtime class. Omitted when nil.
    public var runtimeClass: FleetLabel?
    /// Extension: only drones of this pool (nil: the default pool). Omitted when nil.
    public var pool: FleetLabel?
    /// Extension: per-spawn options of the drone's runtime, checked against its schema
    /// before any drone is asked. Omitted when empty.
    public var runtimeOptions: JSONObject
    /// Extension: when the backend counts as ready. Omitted when nil.
    public var readiness: ReadinessCheck?
    /// Extension: the backend ends (`Terminated`) this long after its spawn, busy or not.
    /// Omitted when nil.
    public var maxLifetimeSeconds: DurationSeconds?
    /// Extension (issue 15): as `SpawnRequest.warmPool`; the scheduler prefers drones that
    /// report a pre-started backend of it. Omitted when nil.
    public var warmPool: String?

    public init(
        cluster: ClusterName, backendID: BackendID? = nil, maxIdleSeconds: DurationSeconds,
        metadata: [String: String] = [:], executable: DockerExecutableConfig,
        requireBearerToken: Bool = false, lock: LockName? = nil, runtimeClass: FleetLabel? = nil, pool: FleetLabel? = nil,
        runtimeOptions: JSONObject = JSONObject(), readiness: ReadinessCheck? = nil, maxLifetimeSeconds: DurationSeconds? = nil
    ) {
        self.runtimeClass = runtimeClass
        self.pool = pool
        self.runtimeOptions = runtimeOptions
        self.readiness = readiness
        self.maxLifetimeSeconds = maxLifetimeSeconds
        self.cluster = cluster
        self.backendID = backendID
        self.maxIdleSeconds = maxIdleSeconds
        self.metadata = metadata
        self.executable = executable
        self.requireBearerToken = requireBearerToken
        self.lock = lock
    }

    enum CodingKeys: String, CodingKey {
        case cluster
        case backendID = "backend_id"
        case maxIdleSeconds = "max_idle_secs"
        case metadata, executable
        case requireBearerToken = "require_bearer_token"
        case lock
        case runtimeClass = "runtime_class"
        case pool
        case runtimeOptions = "runtime_options"
        case readiness
        case maxLifetimeSeconds = "max_lifetime_secs"
        case warmPool = "warm_pool"
    }

    /// Whether the request uses a field v0.3.10 does not know (issue 14's), so its sender
    /// decodes the extended replies (`NoDroneAvailable` with a reason).
    public var usesFleetExtensions: Bool {
        runtimeClass != nil || pool != nil || runtimeOptions.count > 0 || readiness != nil || maxLifetimeSeconds != nil || warmPool != nil
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        cluster = try c.decode(ClusterName.self, forKey: .cluster)
        backendID = try c.decodeIfPresent(BackendID.self, forKey: .backendID)
        maxIdleSeconds = try c.decode(DurationSeconds.self, forKey: .maxIdleSeconds)
        metadata = try c.decode([String: String].self, forKey: .metadata)
        executable = try c.decode(DockerExecutableConfig.self, forKey: .executable)
        requireBearerToken = try c.decode(Bool.self, forKey: .requireBearerToken, default: false)
        lock = try c.decodeIfPresent(LockName.self, forKey: .lock)
        runtimeClass = try c.decodeIfPresent(FleetLabel.self, forKey: .runtimeClass)
        pool = try c.decodeIfPresent(FleetLabel.self, forKey: .pool)
        runtimeOptions = try c.decodeObject(forKey: .runtimeOptions)
        readiness = try c.decodeIfPresent(ReadinessCheck.self, forKey: .readiness)
        maxLifetimeSeconds = try c.decodeIfPresent(DurationSeconds.self, forKey: .maxLifetimeSeconds)
        if maxLifetimeSeconds?.seconds == 0 {
            throw DecodingError.dataCorruptedError(forKey: .maxLifetimeSeconds, in: c, debugDescription: "max_lifetime_secs must be at least 1 (omit it for no limit)")
        }
        warmPool = try c.decodeIfPresent(String.self, forKey: .warmPool)
        if let warmPool, !WarmPoolDefinition.isValidName(warmPool) {
            throw DecodingError.dataCorruptedError(forKey: .warmPool, in: c, debugDescription: WarmPoolDefinition.nameRule)
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(cluster, forKey: .cluster)
        try c.encode(backendID, forKey: .backendID)
        try c.encode(maxIdleSeconds, forKey: .maxIdleSeconds)
        try c.encodeSortedMap(metadata, forKey: .metadata)
        try c.encode(executable, forKey: .executable)
        try c.encode(requireBearerToken, forKey: .requireBearerToken)
        try c.encodeIfPresent(lock, forKey: .lock)
        try c.encodeIfPresent(runtimeClass, forKey: .runtimeClass)
        try c.encodeIfPresent(pool, forKey: .pool)
        try c.encodeUnlessEmpty(runtimeOptions, forKey: .runtimeOptions)
        try c.encodeIfPresent(readiness, forKey: .readiness)
        try c.encodeIfPresent(maxLifetimeSeconds, forKey: .maxLifetimeSeconds)
        try c.encodeIfPresent(warmPool, forKey: .warmPool)
    }
}
