/// What to run (spec §3.3). Nested in `ScheduleRequest` and `SpawnRequest`.
public struct DockerExecutableConfig: Sendable, Hashable, Codable {
    /// Image reference, e.g. `ghcr.io/org/app:1.2`; an untagged reference means `:latest`.
    public var image: String
    public var env: [String: String]
    public var credentials: DockerCredentials?
    public var resourceLimits: ResourceLimits
    public var pullPolicy: DockerPullPolicy
    /// The port the backend listens on; `nil` means 8080.
    public var port: UInt16?
    /// Docker Engine API `Mount` objects, kept as sent. Omitted from JSON when empty.
    public var volumeMounts: [VolumeMount]

    public static let defaultPort: UInt16 = 8080

    public init(
        image: String, env: [String: String] = [:], credentials: DockerCredentials? = nil,
        resourceLimits: ResourceLimits = ResourceLimits(), pullPolicy: DockerPullPolicy = .ifNotPresent,
        port: UInt16? = nil, volumeMounts: [VolumeMount] = []
    ) {
        self.image = image
        self.env = env
        self.credentials = credentials
        self.resourceLimits = resourceLimits
        self.pullPolicy = pullPolicy
        self.port = port
        self.volumeMounts = volumeMounts
    }

    /// The port to proxy to: `port`, or 8080 when unset.
    public var effectivePort: UInt16 { port ?? Self.defaultPort }

    enum CodingKeys: String, CodingKey {
        case image, env, credentials
        case resourceLimits = "resource_limits"
        case pullPolicy = "pull_policy"
        case port
        case volumeMounts = "volume_mounts"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        image = try c.decode(String.self, forKey: .image)
        env = try c.decode([String: String].self, forKey: .env)
        credentials = try c.decodeIfPresent(DockerCredentials.self, forKey: .credentials)
        resourceLimits = try c.decode(ResourceLimits.self, forKey: .resourceLimits, default: ResourceLimits())
        pullPolicy = try c.decode(DockerPullPolicy.self, forKey: .pullPolicy, default: .ifNotPresent)
        port = try c.decodeIfPresent(UInt16.self, forKey: .port)
        volumeMounts = try c.decode([VolumeMount].self, forKey: .volumeMounts, default: [])
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(image, forKey: .image)
        try c.encodeSortedMap(env, forKey: .env)
        try c.encode(credentials, forKey: .credentials)
        try c.encode(resourceLimits, forKey: .resourceLimits)
        try c.encode(pullPolicy, forKey: .pullPolicy)
        try c.encode(port, forKey: .port)
        if !volumeMounts.isEmpty { try c.encode(volumeMounts, forKey: .volumeMounts) }
    }
}

/// Registry credentials for the pull: `{"UsernamePassword":{"username":"u","password":"p"}}`.
public enum DockerCredentials: Sendable, Hashable, Codable {
    case usernamePassword(username: String, password: String)

    enum Tag: String, CodingKey { case usernamePassword = "UsernamePassword" }
    enum Fields: String, CodingKey { case username, password }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: Tag.self)
        guard c.contains(.usernamePassword) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "expected {\"UsernamePassword\":{\"username\":...,\"password\":...}}"))
        }
        let fields = try c.nestedContainer(keyedBy: Fields.self, forKey: .usernamePassword)
        self = .usernamePassword(username: try fields.decode(String.self, forKey: .username), password: try fields.decode(String.self, forKey: .password))
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: Tag.self)
        switch self {
        case .usernamePassword(let username, let password):
            var fields = c.nestedContainer(keyedBy: Fields.self, forKey: .usernamePassword)
            try fields.encode(username, forKey: .username)
            try fields.encode(password, forKey: .password)
        }
    }
}

/// Resource limits; every field is written as `null` when unset (spec §3.3).
public struct ResourceLimits: Sendable, Hashable, Codable {
    /// CPU period in **seconds** on the wire (v0.3.10's unit).
    public var cpuPeriod: DurationSeconds?
    /// Share of the period the backend may use, 0–255 percent.
    public var cpuPeriodPercent: UInt8?
    /// Total CPU time allowed, in seconds.
    public var cpuTimeLimit: DurationSeconds?
    public var memoryLimitBytes: Int64?

    public init(cpuPeriod: DurationSeconds? = nil, cpuPeriodPercent: UInt8? = nil, cpuTimeLimit: DurationSeconds? = nil, memoryLimitBytes: Int64? = nil) {
        self.cpuPeriod = cpuPeriod
        self.cpuPeriodPercent = cpuPeriodPercent
        self.cpuTimeLimit = cpuTimeLimit
        self.memoryLimitBytes = memoryLimitBytes
    }

    enum CodingKeys: String, CodingKey {
        case cpuPeriod = "cpu_period"
        case cpuPeriodPercent = "cpu_period_percent"
        case cpuTimeLimit = "cpu_time_limit"
        case memoryLimitBytes = "memory_limit_bytes"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        cpuPeriod = try c.decodeIfPresent(DurationSeconds.self, forKey: .cpuPeriod)
        cpuPeriodPercent = try c.decodeIfPresent(UInt8.self, forKey: .cpuPeriodPercent)
        cpuTimeLimit = try c.decodeIfPresent(DurationSeconds.self, forKey: .cpuTimeLimit)
        memoryLimitBytes = try c.decodeIfPresent(Int64.self, forKey: .memoryLimitBytes)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(cpuPeriod, forKey: .cpuPeriod)
        try c.encode(cpuPeriodPercent, forKey: .cpuPeriodPercent)
        try c.encode(cpuTimeLimit, forKey: .cpuTimeLimit)
        try c.encode(memoryLimitBytes, forKey: .memoryLimitBytes)
    }
}

public enum DockerPullPolicy: String, Sendable, Hashable, Codable, CaseIterable {
    case ifNotPresent = "IfNotPresent"
    case always = "Always"
    case never = "Never"
}

/// One Docker Engine API `Mount` object (`Type`, `Source`, `Target`, `ReadOnly`, ...), kept
/// exactly as received so relays do not lose fields.
public struct VolumeMount: Sendable, Hashable, Codable {
    public var json: JSONObject

    public init(json: JSONObject) { self.json = json }

    public init(type: String, source: String, target: String, readOnly: Bool = false) {
        json = JSONObject([("Type", .string(type)), ("Source", .string(source)), ("Target", .string(target)), ("ReadOnly", .bool(readOnly))])
    }

    public var type: String? { json["Type"]?.stringValue }
    public var source: String? { json["Source"]?.stringValue }
    public var target: String? { json["Target"]?.stringValue }
    public var readOnly: Bool { json["ReadOnly"]?.boolValue ?? false }

    public init(from decoder: any Decoder) throws {
        let value = try JSONValue(from: decoder)
        guard case .object(let object) = value else {
            throw DecodingError.typeMismatch(VolumeMount.self, .init(codingPath: decoder.codingPath, debugDescription: "a volume mount must be a Docker Mount object such as {\"Type\":\"bind\",\"Source\":\"/data\",\"Target\":\"/data\"}"))
        }
        json = object
    }

    public func encode(to encoder: any Encoder) throws { try JSONValue.object(json).encode(to: encoder) }
}
