/// A drone's heartbeat (subject `drone.{drone_id}.status`, every 4 s, spec §3.5).
public struct DroneStatusMessage: Sendable, Hashable, Codable {
    public var droneID: DroneID
    public var cluster: ClusterName
    public var droneVersion: String
    /// `true` iff the drone accepts new backends. Defaults to `true` when missing.
    public var ready: Bool
    /// Defaults to `Ready` when missing.
    public var state: DroneState
    /// Backends in `Loading`, `Starting` or `Ready`. Omitted when nil.
    public var runningBackends: UInt32?
    /// Extension (issue 14): the runtime's name (`docker`, `oci`, a plugin's). Omitted when nil.
    public var runtime: String?
    /// Extension: the runtime classes the operator gave the drone. Omitted when empty.
    public var runtimeClasses: [FleetLabel]
    /// Extension: the drone's pool (nil: the default pool). Omitted when nil.
    public var pool: FleetLabel?
    /// Extension: what the runtime can do (`stats`, `network_namespace`, ...). Omitted when empty.
    public var capabilities: [String]
    /// Extension: the JSON Schema of the runtime's per-spawn options (nil: it takes none).
    public var optionsSchema: JSONValue?
    /// Extension: the drone's room for more backends. Omitted when nil.
    public var capacity: DroneCapacity?
    /// Addition (issue 15): pre-started backends ready per warm pool. Omitted when empty.
    public var warmPools: [String: UInt32] = [:]

    /// At most this many runtime classes and capabilities are sent and accepted.
    public static let maximumListCount = 32

    public init(droneID: DroneID, cluster: ClusterName, droneVersion: String, ready: Bool = true, state: DroneState = .ready, runningBackends: UInt32? = nil,
                runtime: String? = nil, runtimeClasses: [FleetLabel] = [], pool: FleetLabel? = nil, capabilities: [String] = [],
                optionsSchema: JSONValue? = nil, capacity: DroneCapacity? = nil) {
        self.runtime = runtime
        self.runtimeClasses = runtimeClasses
        self.pool = pool
        self.capabilities = capabilities
        self.optionsSchema = optionsSchema
        self.capacity = capacity
        self.droneID = droneID
        self.cluster = cluster
        self.droneVersion = droneVersion
        self.ready = ready
        self.state = state
        self.runningBackends = runningBackends
    }

    enum CodingKeys: String, CodingKey {
        case droneID = "drone_id"
        case cluster
        case droneVersion = "drone_version"
        case ready, state
        case runningBackends = "running_backends"
        case runtime
        case runtimeClasses = "runtime_classes"
        case pool, capabilities
        case optionsSchema = "options_schema"
        case capacity
        case warmPools = "warm_pools"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        droneID = try c.decode(DroneID.self, forKey: .droneID)
        cluster = try c.decode(ClusterName.self, forKey: .cluster)
        droneVersion = try c.decode(String.self, forKey: .droneVersion)
        ready = try c.decode(Bool.self, forKey: .ready, default: true)
        state = try c.decode(DroneState.self, forKey: .state, default: .ready)
        runningBackends = try c.decodeIfPresent(UInt32.self, forKey: .runningBackends)
        runtime = try c.decodeIfPresent(String.self, forKey: .runtime)
        runtimeClasses = try c.decodeList(FleetLabel.self, forKey: .runtimeClasses, maximum: Self.maximumListCount)
        pool = try c.decodeIfPresent(FleetLabel.self, forKey: .pool)
        capabilities = try c.decodeList(String.self, forKey: .capabilities, maximum: Self.maximumListCount)
        optionsSchema = try c.decodeIfPresent(JSONValue.self, forKey: .optionsSchema).flatMap { $0.isNull ? nil : $0 }
        capacity = try c.decodeIfPresent(DroneCapacity.self, forKey: .capacity)
        let pools = try c.decodeIfPresent([String: UInt32].self, forKey: .warmPools) ?? [:]
        guard pools.count <= Self.maximumListCount, pools.keys.allSatisfy(WarmPoolDefinition.isValidName) else {
            throw DecodingError.dataCorruptedError(forKey: .warmPools, in: c, debugDescription: "at most \(Self.maximumListCount) pools; " + WarmPoolDefinition.nameRule)
        }
        warmPools = pools
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(droneID, forKey: .droneID)
        try c.encode(cluster, forKey: .cluster)
        try c.encode(droneVersion, forKey: .droneVersion)
        try c.encode(ready, forKey: .ready)
        try c.encode(state, forKey: .state)
        try c.encodeIfPresent(runningBackends, forKey: .runningBackends)
        try c.encodeIfPresent(runtime, forKey: .runtime)
        try c.encodeUnlessEmpty(runtimeClasses, forKey: .runtimeClasses)
        try c.encodeIfPresent(pool, forKey: .pool)
        try c.encodeUnlessEmpty(capabilities, forKey: .capabilities)
        try c.encodeIfPresent(optionsSchema, forKey: .optionsSchema)
        try c.encodeIfPresent(capacity, forKey: .capacity)
        if !warmPools.isEmpty {
            var nested = c.nestedContainer(keyedBy: AnyCodingKey.self, forKey: .warmPools)
            for (name, count) in warmPools.sorted(by: { $0.key < $1.key }) { try nested.encode(count, forKey: AnyCodingKey(stringValue: name)) }
        }
    }
}

public enum DroneState: String, Sendable, Hashable, Codable, CaseIterable {
    case starting = "Starting"
    case ready = "Ready"
    case draining = "Draining"
    case drained = "Drained"
    case stopped = "Stopped"
    case lost = "Lost"
}

/// Sent once when a drone's agent starts (subject `drone.register`, spec §3.6).
public struct DroneConnectRequest: Sendable, Hashable, Codable {
    public var droneID: DroneID
    public var cluster: ClusterName
    /// The drone's public IP address, IPv4 or IPv6 text form.
    public var ip: String

    public init(droneID: DroneID, cluster: ClusterName, ip: String) {
        self.droneID = droneID
        self.cluster = cluster
        self.ip = ip
    }

    enum CodingKeys: String, CodingKey {
        case droneID = "drone_id"
        case cluster, ip
    }
}

/// Start or stop draining a drone (subject `cluster.{cluster_s}.drone.{drone_id}.drain`,
/// reply `null`, spec §3.7).
public struct DrainDrone: Sendable, Hashable, Codable {
    public var drone: DroneID
    public var cluster: ClusterName
    /// `true` starts draining, `false` cancels it.
    public var drain: Bool

    public init(drone: DroneID, cluster: ClusterName, drain: Bool) {
        self.drone = drone
        self.cluster = cluster
        self.drain = drain
    }
}

/// Ask the cluster's drones to stop a backend (subject
/// `cluster.{cluster_s}.backend.{backend_id}.terminate`, reply `null`, spec §3.8).
public struct TerminationRequest: Sendable, Hashable, Codable {
    /// Note: `cluster_id` on the wire, not `cluster`.
    public var cluster: ClusterName
    public var backendID: BackendID
    /// Extension: stop without a grace period (SIGKILL at once). Omitted when false.
    public var hard: Bool

    public init(cluster: ClusterName, backendID: BackendID, hard: Bool = false) {
        self.cluster = cluster
        self.backendID = backendID
        self.hard = hard
    }

    enum CodingKeys: String, CodingKey {
        case cluster = "cluster_id"
        case backendID = "backend_id"
        case hard
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        cluster = try c.decode(ClusterName.self, forKey: .cluster)
        backendID = try c.decode(BackendID.self, forKey: .backendID)
        hard = try c.decode(Bool.self, forKey: .hard, default: false)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(cluster, forKey: .cluster)
        try c.encode(backendID, forKey: .backendID)
        if hard { try c.encode(true, forKey: .hard) }
    }
}
