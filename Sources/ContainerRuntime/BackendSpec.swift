import PlaneCore

/// Everything a runtime needs to run one backend. The drone builds it from the wire
/// `SpawnRequest` plus its own decisions (network plan, policy).
public struct BackendSpec: Sendable, Hashable {
    public var backendID: BackendID
    public var droneID: DroneID
    /// Image reference; a reference without tag or digest means `:latest`.
    public var image: String
    /// Environment for the process; runtimes add `PORT` (see `port`).
    public var env: [String: String]
    /// The port the backend listens on inside its network (given to it as `PORT`).
    public var port: UInt16
    public var network: NetworkPlan
    public var limits: ResourceLimitsSpec
    public var pullPolicy: DockerPullPolicy
    public var credentials: RegistryCredentials?
    /// Mounts the drone allowed (it checks them against its policy first).
    public var mounts: [MountSpec]
    /// Runtime-specific options, validated by the runtime before anything starts.
    public var options: JSONObject

    public init(
        backendID: BackendID, droneID: DroneID, image: String, env: [String: String] = [:], port: UInt16 = 8080,
        network: NetworkPlan, limits: ResourceLimitsSpec = ResourceLimitsSpec(), pullPolicy: DockerPullPolicy = .ifNotPresent,
        credentials: RegistryCredentials? = nil, mounts: [MountSpec] = [], options: JSONObject = JSONObject()
    ) {
        self.backendID = backendID
        self.droneID = droneID
        self.image = image
        self.env = env
        self.port = port
        self.network = network
        self.limits = limits
        self.pullPolicy = pullPolicy
        self.credentials = credentials
        self.mounts = mounts
        self.options = options
    }

    /// The environment the process gets: `env` plus `PORT` (which always wins, so the
    /// backend listens where the drone will connect).
    public var effectiveEnvironment: [String: String] {
        var environment = env
        environment["PORT"] = String(port)
        return environment
    }

    /// The name runtimes give the backend's container: `plane-{backend_id}`.
    public var containerName: String { Self.containerName(for: backendID) }

    public static func containerName(for backend: BackendID) -> String { "plane-\(backend.rawValue)" }

    /// The backend id of a container name made by `containerName(for:)`, if it is one.
    public static func backendID(fromContainerName name: String) -> BackendID? {
        let trimmed = name.hasPrefix("/") ? String(name.dropFirst()) : name
        guard trimmed.hasPrefix("plane-") else { return nil }
        return try? BackendID(String(trimmed.dropFirst("plane-".count)))
    }
}

/// How the backend is reachable; chosen by the drone.
public enum NetworkPlan: Sendable, Hashable, Codable {
    /// The backend shares the host's network and listens on `port` (the drone picked a free
    /// one and passes it as `PORT`); the drone connects to `address:port`.
    case host(address: String)
    /// The backend gets its own address on a runtime network (`nil`: the runtime's default)
    /// and listens on the spec's port there.
    case bridge(network: String?)
    /// Like `bridge`, with the port published on `hostAddress` at a port the runtime picks.
    case publish(hostAddress: String)

    public var kind: NetworkModeKind {
        switch self {
        case .host: .host
        case .bridge: .bridge
        case .publish: .publish
        }
    }
}

public enum NetworkModeKind: String, Sendable, Hashable, Codable, CaseIterable {
    case host, bridge, publish
}

/// Resource limits in the units runtimes use (the wire's units are converted once, in
/// `init(wire:)`).
public struct ResourceLimitsSpec: Sendable, Hashable, Codable {
    public var memoryBytes: Int64?
    /// CPU bandwidth: `cpuQuota` of every `cpuPeriod` (both in microseconds).
    public var cpuPeriodMicroseconds: Int64?
    public var cpuQuotaMicroseconds: Int64?
    /// Total CPU time, in seconds (RLIMIT_CPU).
    public var cpuTimeLimitSeconds: UInt64?
    /// Maximum number of processes/threads.
    public var pidsLimit: Int64?

    public init(memoryBytes: Int64? = nil, cpuPeriodMicroseconds: Int64? = nil, cpuQuotaMicroseconds: Int64? = nil, cpuTimeLimitSeconds: UInt64? = nil, pidsLimit: Int64? = nil) {
        self.memoryBytes = memoryBytes
        self.cpuPeriodMicroseconds = cpuPeriodMicroseconds
        self.cpuQuotaMicroseconds = cpuQuotaMicroseconds
        self.cpuTimeLimitSeconds = cpuTimeLimitSeconds
        self.pidsLimit = pidsLimit
    }

    /// The default CPU period when only a percentage is given: 100 ms, as v0.3.10.
    public static let defaultCPUPeriodMicroseconds: Int64 = 100_000

    /// Converts the wire's `ResourceLimits`: `cpu_period` is in seconds (v0.3.10's unit),
    /// `cpu_period_percent` a share of the period, `cpu_time_limit` seconds (v0.3.10 wrongly
    /// applied minutes), `memory_limit_bytes` bytes. Every value a client can send either
    /// converts or is an `invalidSpec` error (no arithmetic here can overflow); `validate()`
    /// then checks what the kernel takes.
    public init(wire: ResourceLimits, pidsLimit: Int64? = nil) throws(RuntimeError) {
        memoryBytes = wire.memoryLimitBytes
        var period: Int64?
        if let seconds = wire.cpuPeriod?.seconds {
            guard let whole = Int64(exactly: seconds), case (let microseconds, false) = whole.multipliedReportingOverflow(by: 1_000_000) else {
                throw RuntimeError(.invalidSpec, "cpu_period must be 1 second or less (it is in seconds on the wire; the kernel takes 1 ms to 1 s), got \(seconds) s.")
            }
            period = microseconds
        }
        cpuPeriodMicroseconds = period
        if let percent = wire.cpuPeriodPercent {
            let base = period ?? Self.defaultCPUPeriodMicroseconds
            cpuPeriodMicroseconds = base
            // A period beyond 1 s is refused above; base ≤ 1e6 and percent ≤ 255 cannot overflow.
            guard case (let scaled, false) = base.multipliedReportingOverflow(by: Int64(percent)) else {
                throw RuntimeError(.invalidSpec, "cpu_period_percent \(percent) of a \(base) µs period is out of range.")
            }
            cpuQuotaMicroseconds = scaled / 100
        }
        if let seconds = wire.cpuTimeLimit?.seconds {
            guard seconds <= UInt64(Int64.max) else {
                throw RuntimeError(.invalidSpec, "cpu_time_limit \(seconds) s is out of range; use at most \(Int64.max) s, or leave it out for no limit.")
            }
            cpuTimeLimitSeconds = seconds
        }
        self.pidsLimit = pidsLimit
    }

    /// The smallest memory limit a container can start with (Docker's and runc's floor).
    public static let minimumMemoryBytes: Int64 = ResourceLimits.minimumMemoryBytes

    /// The built-in runtimes' memory limit for a backend whose spawn sets none (4 GiB; the
    /// runtimes' `memory_limit_bytes` key): one backend cannot take the whole host.
    public static let defaultMemoryBytes: Int64 = 4 << 30
    /// The largest `memory_limit_bytes` setting (1 PiB).
    public static let maximumMemoryBytes: Int64 = 1 << 50
    /// What a runtime's `memory_limit_bytes` key takes, for its error message.
    public static let memoryLimitSettingRange = "0 (no limit) or an integer from \(minimumMemoryBytes) (6 MiB) to \(maximumMemoryBytes)"

    /// A runtime's `memory_limit_bytes` setting: 0 (no limit) or a limit a container can
    /// start with; nil when `value` is neither.
    public static func memoryLimitSetting(_ value: Int64?) -> Int64? {
        guard let value, value == 0 || (minimumMemoryBytes...maximumMemoryBytes).contains(value) else { return nil }
        return value
    }

    /// Checks the limits the kernel would refuse (the CFS period is 1 ms to 1 s, a quota at
    /// least 1 ms) or that could never run a process, so a spawn is refused up front instead
    /// of failing while loading.
    public func validate() throws(RuntimeError) {
        if let memory = memoryBytes, memory < Self.minimumMemoryBytes {
            throw RuntimeError(.invalidSpec, "memory_limit_bytes is \(memory); a backend needs at least \(Self.minimumMemoryBytes) bytes (6 MiB).")
        }
        if let period = cpuPeriodMicroseconds, !(1_000...1_000_000).contains(period) {
            throw RuntimeError(.invalidSpec, "cpu_period must be 1 second or less (it is in seconds on the wire; the kernel takes 1 ms to 1 s), got \(period / 1_000_000) s.")
        }
        if let quota = cpuQuotaMicroseconds, quota < 1_000 {
            throw RuntimeError(.invalidSpec, "cpu_period_percent leaves a CPU quota of \(quota) µs; the kernel needs at least 1 ms. Use a larger percentage (or cpu_period).")
        }
        if cpuTimeLimitSeconds == 0 {
            throw RuntimeError(.invalidSpec, "cpu_time_limit 0 would stop the backend before it runs; leave it out for no limit.")
        }
        if let pids = pidsLimit, pids < 1 {
            throw RuntimeError(.invalidSpec, "The pids limit must be at least 1, got \(pids).")
        }
    }
}

/// Registry credentials for pulling the image.
public struct RegistryCredentials: Sendable, Hashable, Codable {
    public var username: String
    public var password: String

    public init(username: String, password: String) {
        self.username = username
        self.password = password
    }

    public init(wire: DockerCredentials) {
        switch wire {
        case .usernamePassword(let username, let password): self.init(username: username, password: password)
        }
    }
}

/// A mount into the backend's filesystem.
public struct MountSpec: Sendable, Hashable, Codable {
    public enum Kind: String, Sendable, Hashable, Codable { case bind, volume, tmpfs }
    public var kind: Kind
    /// Host path (bind), volume name (volume), unused for tmpfs.
    public var source: String
    /// Path inside the backend.
    public var target: String
    public var readOnly: Bool

    public init(kind: Kind, source: String, target: String, readOnly: Bool = false) {
        self.kind = kind
        self.source = source
        self.target = target
        self.readOnly = readOnly
    }

    /// Reads a wire Docker `Mount` object; fails with `invalidSpec` naming what is wrong.
    public init(wire: VolumeMount) throws(RuntimeError) {
        guard let typeText = wire.type, let kind = Kind(rawValue: typeText.lowercased()) else {
            throw RuntimeError(.invalidSpec, "Volume mount \(JSONWriter.string(.object(wire.json))) has no supported Type; use \"bind\", \"volume\" or \"tmpfs\".")
        }
        guard let target = wire.target, target.hasPrefix("/") else {
            throw RuntimeError(.invalidSpec, "Volume mount \(JSONWriter.string(.object(wire.json))) needs an absolute Target path.")
        }
        let source = wire.source ?? ""
        if kind != .tmpfs, source.isEmpty {
            throw RuntimeError(.invalidSpec, "Volume mount \(JSONWriter.string(.object(wire.json))) needs a Source.")
        }
        self.init(kind: kind, source: source, target: target, readOnly: wire.readOnly)
    }
}
