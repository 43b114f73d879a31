/// Addition (issue 15): a service's warm pool, as controllers publish it in the KV bucket
/// `plane_warm_pools` (key `{cluster_s}.{name}`). Every drone that can run it (its runtime
/// class and pool, `[agent] warm_pools` on) keeps `size` backends of it started and `Ready`
/// that no key owns; a spawn naming the pool (`warm_pool`) whose executable, runtime class,
/// pool, runtime options and readiness equal these takes one instead of starting a process
/// (`matches`), and the drone starts another in the background.
public struct WarmPoolDefinition: Sendable, Hashable, Codable {
    public static let bucket = "plane_warm_pools"
    /// Most pre-started backends of one pool on one drone.
    public static let maximumSize = 64
    public static let nameRule = "a warm pool's name is 1 to 64 letters, digits, '-' and '_'"

    public var cluster: ClusterName
    /// The service's name.
    public var name: String
    /// Pre-started backends per drone (0: none; drones stop the ones they have).
    public var size: Int
    public var executable: DockerExecutableConfig
    public var runtimeClass: FleetLabel?
    public var pool: FleetLabel?
    public var runtimeOptions: JSONObject
    public var readiness: ReadinessCheck?

    public init(cluster: ClusterName, name: String, size: Int, executable: DockerExecutableConfig, runtimeClass: FleetLabel? = nil,
                pool: FleetLabel? = nil, runtimeOptions: JSONObject = JSONObject(), readiness: ReadinessCheck? = nil) {
        self.cluster = cluster
        self.name = name
        self.size = size
        self.executable = executable
        self.runtimeClass = runtimeClass
        self.pool = pool
        self.runtimeOptions = runtimeOptions
        self.readiness = readiness
    }

    public static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 64 && name.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x7A) || $0 == 0x2D || $0 == 0x5F }
    }

    public static func key(cluster: ClusterName, name: String) -> String { "\(cluster.subjectForm).\(name)" }
    public var key: String { Self.key(cluster: cluster, name: name) }

    /// Whether `spawn` can take a backend of this pool: it names the pool and asks for
    /// exactly what the pool's backends were started with.
    public func matches(_ spawn: SpawnRequest) -> Bool {
        spawn.warmPool == name && (spawn.cluster ?? cluster) == cluster && spawn.executable == executable && spawn.runtimeClass == runtimeClass
            && spawn.pool == pool && spawn.runtimeOptions == runtimeOptions && spawn.readiness == readiness
    }

    enum CodingKeys: String, CodingKey {
        case cluster, name, size, executable
        case runtimeClass = "runtime_class"
        case pool
        case runtimeOptions = "runtime_options"
        case readiness
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        cluster = try c.decode(ClusterName.self, forKey: .cluster)
        name = try c.decode(String.self, forKey: .name)
        guard Self.isValidName(name) else { throw DecodingError.dataCorruptedError(forKey: .name, in: c, debugDescription: Self.nameRule) }
        size = try c.decode(Int.self, forKey: .size)
        guard (0...Self.maximumSize).contains(size) else {
            throw DecodingError.dataCorruptedError(forKey: .size, in: c, debugDescription: "size must be 0 to \(Self.maximumSize)")
        }
        executable = try c.decode(DockerExecutableConfig.self, forKey: .executable)
        runtimeClass = try c.decodeIfPresent(FleetLabel.self, forKey: .runtimeClass)
        pool = try c.decodeIfPresent(FleetLabel.self, forKey: .pool)
        runtimeOptions = try c.decodeObject(forKey: .runtimeOptions)
        readiness = try c.decodeIfPresent(ReadinessCheck.self, forKey: .readiness)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(cluster, forKey: .cluster)
        try c.encode(name, forKey: .name)
        try c.encode(size, forKey: .size)
        try c.encode(executable, forKey: .executable)
        try c.encodeIfPresent(runtimeClass, forKey: .runtimeClass)
        try c.encodeIfPresent(pool, forKey: .pool)
        try c.encodeUnlessEmpty(runtimeOptions, forKey: .runtimeOptions)
        try c.encodeIfPresent(readiness, forKey: .readiness)
    }
}
