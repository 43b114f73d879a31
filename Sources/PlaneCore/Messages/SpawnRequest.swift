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

    public init(
        cluster: ClusterName?, droneID: DroneID, maxIdleSeconds: DurationSeconds, backendID: BackendID,
        metadata: [String: String] = [:], executable: DockerExecutableConfig, bearerToken: String? = nil
    ) {
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
    }
}
