import PlaneCore

/// Where a running backend can be reached.
public struct BackendAddress: Sendable, Hashable, Codable, CustomStringConvertible {
    public var host: String
    public var port: UInt16

    public init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// What `start` returns and `list` reports: enough to find the backend again after a drone
/// restart. The drone stores it.
public struct RuntimeHandle: Sendable, Hashable, Codable {
    public var backendID: BackendID
    /// The runtime that holds it (`docker`, `oci`, a plugin's name).
    public var runtime: String
    /// The runtime's own id (container id, ...).
    public var runtimeID: String
    /// Where the backend listens, once known.
    public var address: BackendAddress?

    public init(backendID: BackendID, runtime: String, runtimeID: String, address: BackendAddress?) {
        self.backendID = backendID
        self.runtime = runtime
        self.runtimeID = runtimeID
        self.address = address
    }
}

/// The state of a backend as the runtime sees it.
public enum RuntimeStatus: Sendable, Hashable, Codable {
    /// The runtime holds nothing for this backend.
    case unknown
    /// Created but not (yet) running.
    case created
    case running(address: BackendAddress?)
    /// The process ended by itself with this exit code.
    case exited(code: Int32)
    /// The process was killed by a signal (by `stop`, or the kernel's OOM killer).
    case killed(signal: Int32?, outOfMemory: Bool)

    public var isRunning: Bool { if case .running = self { return true } else { return false } }
}

/// Something that happened to a backend without anyone asking.
public struct RuntimeEvent: Sendable, Hashable, Codable {
    public enum Kind: Sendable, Hashable, Codable {
        case exited(code: Int32)
        case outOfMemory
    }

    public var backendID: BackendID
    public var kind: Kind
    public var time: Timestamp

    public init(backendID: BackendID, kind: Kind, time: Timestamp = .now()) {
        self.backendID = backendID
        self.kind = kind
        self.time = time
    }
}

/// One line of a backend's output.
public struct LogLine: Sendable, Hashable, Codable {
    public enum Stream: String, Sendable, Hashable, Codable { case stdout, stderr }

    /// Runtimes split longer output lines into lines of at most this many bytes (as Docker
    /// does), so a backend printing without newlines cannot make anyone hold its output.
    public static let maximumLength = 16_384

    public var stream: Stream
    /// The line without its trailing newline.
    public var text: String
    /// When the runtime recorded it, if it knows.
    public var time: Timestamp?

    public init(stream: Stream, text: String, time: Timestamp? = nil) {
        self.stream = stream
        self.text = text
        self.time = time
    }
}

/// A resource usage sample.
public struct ResourceSample: Sendable, Hashable, Codable {
    /// CPU use over the sampling interval as a share of the whole host's CPU time, 0–100
    /// (not multiplied by the number of CPUs), as Plane v0.3.10's stats report it.
    public var cpuPercent: Double
    public var memoryBytes: UInt64
    /// The memory limit in effect (the host's memory when unlimited).
    public var memoryLimitBytes: UInt64
    public var time: Timestamp

    public init(cpuPercent: Double, memoryBytes: UInt64, memoryLimitBytes: UInt64, time: Timestamp = .now()) {
        self.cpuPercent = cpuPercent
        self.memoryBytes = memoryBytes
        self.memoryLimitBytes = memoryLimitBytes
        self.time = time
    }

    /// Memory use in percent of the limit (0–100).
    public var memoryPercent: Double {
        memoryLimitBytes == 0 ? 0 : Double(memoryBytes) / Double(memoryLimitBytes) * 100
    }
}

/// Who a runtime is and what it can do.
public struct RuntimeDescriptor: Sendable, Hashable, Codable {
    public var name: String
    public var version: String
    public var capabilities: RuntimeCapabilities

    public init(name: String, version: String, capabilities: RuntimeCapabilities) {
        self.name = name
        self.version = version
        self.capabilities = capabilities
    }
}

public struct RuntimeCapabilities: Sendable, Hashable, Codable {
    public var networkModes: Set<NetworkModeKind>
    public var mounts: Bool
    public var stats: Bool
    public var outOfMemoryEvents: Bool
    /// JSON Schema of the runtime's per-spawn `options` (nil: no options accepted).
    public var optionsSchema: JSONValue?
    /// A regular expression every image reference must match (nil: the runtime checks
    /// references itself), so a spawn with an image the runtime cannot take is refused
    /// before anything starts.
    public var imagePattern: String?
    /// `wait(for:)` is native (the runtime learns of the exit as it happens) rather than the
    /// default that polls `status`; the drone then needs no event stream for exits.
    public var waits: Bool

    public init(networkModes: Set<NetworkModeKind>, mounts: Bool, stats: Bool, outOfMemoryEvents: Bool, optionsSchema: JSONValue? = nil, imagePattern: String? = nil,
                waits: Bool = false) {
        self.waits = waits
        self.networkModes = networkModes
        self.mounts = mounts
        self.stats = stats
        self.outOfMemoryEvents = outOfMemoryEvents
        self.optionsSchema = optionsSchema
        self.imagePattern = imagePattern
    }
}
