import Foundation
import PlaneCore

/// What the drone tells the shim of one backend (`shim.json` in the backend's directory).
public struct OCIShimConfiguration: Codable, Sendable, Hashable {
    /// The runtime binary's name for messages (`runc`, `crun`).
    public var runtimeName: String
    /// The runtime binary's `run --detach` (runc) or `create` (crun) command, complete
    /// (wrapper, global flags, bundle, pid file, container id).
    public var runCommand: [String]
    /// crun: the `start` command run after `runCommand` succeeded; nil for runc.
    public var startCommand: [String]?
    /// Files with an `oom_kill N` line (cgroup v2 `memory.events`, v1 `memory.oom_control`)
    /// read when the backend ends, to tell an OOM kill from another SIGKILL.
    public var outOfMemoryCounterFiles: [String]

    enum CodingKeys: String, CodingKey {
        case runtimeName = "runtime_name"
        case runCommand = "run_command"
        case startCommand = "start_command"
        case outOfMemoryCounterFiles = "oom_counter_files"
    }

    public init(runtimeName: String, runCommand: [String], startCommand: [String]? = nil, outOfMemoryCounterFiles: [String]) {
        self.runtimeName = runtimeName
        self.runCommand = runCommand
        self.startCommand = startCommand
        self.outOfMemoryCounterFiles = outOfMemoryCounterFiles
    }
}

/// The shim's one message to the drone on its status pipe: the backend runs (with the pid
/// of its init process) or it could not be started (and why).
public struct OCIShimReport: Codable, Sendable, Hashable {
    public var pid: Int32?
    public var error: String?

    public init(pid: Int32? = nil, error: String? = nil) {
        self.pid = pid
        self.error = error
    }
}

/// How a backend ended (`exit.json`), written by its shim, so the exit is known even when
/// the drone was down at the time.
public struct OCIExitRecord: Codable, Sendable, Hashable {
    /// The exit code, or 128 + the signal when a signal ended it (as a shell reports it).
    public var code: Int32
    /// The signal that ended it, if one did.
    public var signal: Int32?
    /// Whether the kernel's OOM killer ended it (the memory cgroup counted an OOM kill).
    public var outOfMemory: Bool
    /// When the shim saw it end.
    public var time: Timestamp

    enum CodingKeys: String, CodingKey {
        case code, signal
        case outOfMemory = "oom_killed"
        case timeNanoseconds = "time_ns"
    }

    public init(code: Int32, signal: Int32?, outOfMemory: Bool, time: Timestamp) {
        self.code = code
        self.signal = signal
        self.outOfMemory = outOfMemory
        self.time = time
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        code = try container.decode(Int32.self, forKey: .code)
        signal = try container.decodeIfPresent(Int32.self, forKey: .signal)
        outOfMemory = try container.decodeIfPresent(Bool.self, forKey: .outOfMemory) ?? false
        time = Timestamp(nanosecondsSinceEpoch: try container.decode(Int64.self, forKey: .timeNanoseconds))
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(code, forKey: .code)
        try container.encodeIfPresent(signal, forKey: .signal)
        try container.encode(outOfMemory, forKey: .outOfMemory)
        try container.encode(time.nanosecondsSinceEpoch, forKey: .timeNanoseconds)
    }
}

/// The files of one backend below the runtime's state directory
/// (`<state>/oci/backends/<backend>/`).
public struct OCIBackendDirectory: Sendable, Hashable {
    public let path: String

    public init(path: String) { self.path = path }

    /// The OCI bundle is the directory itself: `config.json` and `rootfs/`.
    public var bundle: String { path }
    public var configFile: String { "\(path)/config.json" }
    public var rootfs: String { "\(path)/rootfs" }
    /// Upper and work directories of the overlay root (same filesystem, as overlayfs needs).
    public var overlayUpper: String { "\(path)/overlay/upper" }
    public var overlayWork: String { "\(path)/overlay/work" }
    public var shimConfigurationFile: String { "\(path)/shim.json" }
    public var shimPIDFile: String { "\(path)/shim.pid" }
    /// The shim's own diagnostics.
    public var shimLog: String { "\(path)/shim.log" }
    /// The pid of the container's init, written by the runtime binary.
    public var initPIDFile: String { "\(path)/init.pid" }
    /// The runtime binary's JSON log.
    public var runtimeLog: String { "\(path)/runtime.log" }
    /// The backend's output, one timestamped line per record (`OCIOutputLog`).
    public var outputLog: String { "\(path)/output.log" }
    public var exitFile: String { "\(path)/exit.json" }
    /// `/etc/hosts` and `/etc/resolv.conf` of a backend with its own network namespace.
    public var hostsFile: String { "\(path)/hosts" }
    public var resolvConfFile: String { "\(path)/resolv.conf" }
    /// What `list` returns after a drone restart (`OCIBackendRecord`).
    public var recordFile: String { "\(path)/backend.json" }
}

/// What the runtime remembers of a backend it started (`backend.json`).
public struct OCIBackendRecord: Codable, Sendable, Hashable {
    public var backendID: BackendID
    public var containerID: String
    public var image: String
    public var address: String
    public var port: UInt16
    /// Whether the root is an overlay mount (unmounted on remove) or a private copy.
    public var overlayRoot: Bool
    /// The backend's own network namespace (`network = "namespace"`); nil on the host's network.
    public var network: OCIBackendNetwork?

    enum CodingKeys: String, CodingKey {
        case backendID = "backend_id"
        case containerID = "container_id"
        case image, address, port
        case overlayRoot = "overlay_root"
        case network
    }
}
