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

    public init(
        cluster: ClusterName, backendID: BackendID? = nil, maxIdleSeconds: DurationSeconds,
        metadata: [String: String] = [:], executable: DockerExecutableConfig,
        requireBearerToken: Bool = false, lock: LockName? = nil
    ) {
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
    }
}
