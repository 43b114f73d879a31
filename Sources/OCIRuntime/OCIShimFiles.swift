import Foundation
import PlaneCore
import ProcessSupervision

/// What the drone tells the shim of one backend (`shim.json` in the backend's directory).
public struct OCIShimConfiguration: Codable, Sendable, Hashable {
    /// The runtime binary's name for messages (`runc`, `crun`).
    public var runtimeName: String
    /// The runtime binary's `run --detach` (runc) or `create` (crun) command, complete
    /// (global flags, bundle, pid file, container id).
    public var runCommand: [String]
    /// crun: the `start` command run after `runCommand` succeeded; nil for runc.
    public var startCommand: [String]?
    /// Files with an `oom_kill N` line (cgroup v2 `memory.events`, v1 `memory.oom_control`)
    /// read when the backend ends, to tell an OOM kill from another SIGKILL.
    public var outOfMemoryCounterFiles: [String]
    /// When set, the commands run in a private mount namespace without this mount (crun
    /// on a host with hybrid cgroups); the shim returns to its own namespace after them.
    public var privateNamespaceDetach: String?
    /// The output log is rotated beyond this many bytes (nil: never, as shims before it).
    public var maxOutputBytes: Int64?

    enum CodingKeys: String, CodingKey {
        case runtimeName = "runtime_name"
        case runCommand = "run_command"
        case startCommand = "start_command"
        case outOfMemoryCounterFiles = "oom_counter_files"
        case privateNamespaceDetach = "private_namespace_detach"
        case maxOutputBytes = "max_output_bytes"
    }

    public init(runtimeName: String, runCommand: [String], startCommand: [String]? = nil, outOfMemoryCounterFiles: [String],
                privateNamespaceDetach: String? = nil) {
        self.runtimeName = runtimeName
        self.runCommand = runCommand
        self.startCommand = startCommand
        self.outOfMemoryCounterFiles = outOfMemoryCounterFiles
        self.privateNamespaceDetach = privateNamespaceDetach
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
    /// The backend's output, one timestamped line per record (`BackendOutputLog`).
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
    /// The binary that runs the container (`runc` or `crun`) and its path: a drone started
    /// later with another one still stops and deletes it with this one. Nil in records of
    /// earlier versions (the drone's binary then).
    public var runtimeFlavor: String?
    public var runtimeBinary: String?

    enum CodingKeys: String, CodingKey {
        case backendID = "backend_id"
        case containerID = "container_id"
        case image, address, port
        case overlayRoot = "overlay_root"
        case network
        case runtimeFlavor = "runtime"
        case runtimeBinary = "runtime_binary"
    }
}
