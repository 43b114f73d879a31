/// The parts of the OCI runtime spec (`config.json`, runtime-spec 1.0.2) the OCI runtime
/// writes for a backend's bundle. Field names are the spec's.
public struct OCIRuntimeSpec: Sendable, Hashable, Codable {
    public var ociVersion = "1.0.2"
    public var process: Process
    public var root: Root
    public var hostname: String?
    public var mounts: [Mount]
    public var linux: Linux
    /// Runtime-specific settings; crun reads the compiled seccomp filter from here.
    public var annotations: [String: String]?

    public struct Process: Sendable, Hashable, Codable {
        public var terminal = false
        public var user: User
        public var args: [String]
        public var env: [String]
        public var cwd: String
        public var capabilities: Capabilities
        public var rlimits: [Rlimit]
        public var noNewPrivileges: Bool
        public var oomScoreAdj: Int?
    }

    public struct User: Sendable, Hashable, Codable {
        public var uid: UInt32
        public var gid: UInt32
        public var additionalGids: [UInt32]?
    }

    public struct Capabilities: Sendable, Hashable, Codable {
        public var bounding: [String]
        public var effective: [String]
        public var permitted: [String]
    }

    public struct Rlimit: Sendable, Hashable, Codable {
        public var type: String
        public var hard: UInt64
        public var soft: UInt64
    }

    public struct Root: Sendable, Hashable, Codable {
        public var path: String
        public var readonly: Bool
    }

    public struct Mount: Sendable, Hashable, Codable {
        public var destination: String
        public var type: String?
        public var source: String?
        public var options: [String]?
    }

    public struct Linux: Sendable, Hashable, Codable {
        public var namespaces: [Namespace]
        public var resources: Resources
        public var cgroupsPath: String
        public var seccomp: Seccomp?
        public var maskedPaths: [String]
        public var readonlyPaths: [String]
    }

    public struct Namespace: Sendable, Hashable, Codable {
        public var type: String
        public var path: String?
    }

    public struct Resources: Sendable, Hashable, Codable {
        public var devices: [DeviceRule]
        public var memory: Memory?
        public var cpu: CPU?
        public var pids: Pids?
    }

    public struct DeviceRule: Sendable, Hashable, Codable {
        public var allow: Bool
        public var type: String?
        public var major: Int64?
        public var minor: Int64?
        public var access: String?
    }

    public struct Memory: Sendable, Hashable, Codable {
        public var limit: Int64?
        public var swap: Int64?
    }

    public struct CPU: Sendable, Hashable, Codable {
        public var quota: Int64?
        public var period: UInt64?
    }

    public struct Pids: Sendable, Hashable, Codable {
        public var limit: Int64
    }

    public struct Seccomp: Sendable, Hashable, Codable {
        public var defaultAction: String
        public var defaultErrnoRet: UInt32?
        public var architectures: [String]?
        public var syscalls: [Syscall]
    }

    public struct Syscall: Sendable, Hashable, Codable {
        public var names: [String]
        public var action: String
        public var errnoRet: UInt32?
        public var args: [Argument]?
    }

    public struct Argument: Sendable, Hashable, Codable {
        public var index: UInt32
        public var value: UInt64
        public var valueTwo: UInt64?
        public var op: String
    }
}
