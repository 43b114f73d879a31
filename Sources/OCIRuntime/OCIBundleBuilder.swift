import ContainerRuntime
import Foundation

/// Makes a backend's `config.json` from its image configuration and spec, with defaults as
/// safe as Docker's: Docker's default capability set (nothing ambient, nothing inheritable),
/// the seccomp profile, `noNewPrivileges`, Docker's masked and read-only paths, a device
/// allowlist, cgroup limits (memory without extra swap, CPU quota and period, a pids limit
/// even when the spawn gives none) and rlimits. Pure: the caller resolves the user.
public struct OCIBundleBuilder: Sendable {
    /// Docker's default capabilities.
    /// Docker's default set without `CAP_NET_RAW` (raw sockets would let a backend sniff
    /// or spoof traffic on the network it shares: the host's in host mode).
    public static let defaultCapabilities = [
        "CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_MKNOD",
        "CAP_NET_BIND_SERVICE", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID", "CAP_SYS_CHROOT",
    ]

    /// What Docker hides from /proc and /sys.
    public static let maskedPaths = [
        "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
        "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
    ]

    /// What Docker makes read-only.
    public static let readonlyPaths = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]

    public static let defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

    public var seccomp: OCIRuntimeSpec.Seccomp?
    /// `seccomp` compiled, for runtimes that load a compiled filter (crun); written as the
    /// `run.oci.seccomp_bpf_data` annotation beside `linux.seccomp`.
    public var compiledSeccomp: SeccompFilter?
    /// Applied when the spawn sets no pids limit.
    public var defaultPidsLimit: Int64
    /// Applied when the spawn sets no memory limit (nil: none).
    public var defaultMemoryBytes: Int64?
    public var readOnlyRoot: Bool
    /// Whether read-only bind mounts are made read-only recursively (`rro`, mount_setattr,
    /// Linux 5.12): without it a mount below a read-only bind's source stays writable.
    public var recursiveReadOnly = false
    /// The backend's `oom_score_adj` (nil: the runtime binary's default, 0).
    public var oomScoreAdjust: Int?
    /// `size=` of tmpfs mounts (nil: the kernel's default, half of the memory).
    public var tmpfsSizeBytes: Int64?
    /// Open files per process (RLIMIT_NOFILE, soft and hard).
    public var openFilesLimit: UInt64 = 1_048_576

    public init(seccomp: OCIRuntimeSpec.Seccomp?, defaultPidsLimit: Int64, readOnlyRoot: Bool) {
        self.seccomp = seccomp
        self.defaultPidsLimit = defaultPidsLimit
        self.readOnlyRoot = readOnlyRoot
    }

    /// The cgroup of a backend (below the hierarchy's root, the same in v1 and v2).
    public static func cgroupPath(of backend: String) -> String { "/plane/\(backend)" }

    /// Where a backend is networked.
    public enum Network: Sendable, Hashable {
        /// The host's network, with the host's `/etc/hosts` and `/etc/resolv.conf`.
        case host
        /// The namespace at `path`, with the backend's own `hosts` and `resolv.conf`.
        case namespace(path: String, hostsFile: String, resolvConfFile: String)
    }

    /// The spec for `spec` running `image`, as `user`, with the root file system at
    /// `rootPath` (relative to the bundle, or absolute), on `network`.
    public func build(spec: BackendSpec, image: OCIImageConfiguration, user: OCIRuntimeSpec.User, rootPath: String,
                      network: Network) throws(RuntimeError) -> OCIRuntimeSpec {
        let arguments = image.arguments
        guard !arguments.isEmpty else {
            throw RuntimeError(.invalidSpec, "Image \(spec.image) has neither an entrypoint nor a command; it cannot be run as a backend.")
        }
        // The image's environment, then the spawn's, then PORT.
        var environment: [(String, String)] = []
        func set(_ name: String, _ value: String) {
            if let index = environment.firstIndex(where: { $0.0 == name }) { environment[index].1 = value } else { environment.append((name, value)) }
        }
        for entry in image.config?.env ?? [] {
            let parts = entry.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            set(String(parts[0]), parts.count > 1 ? String(parts[1]) : "")
        }
        if !environment.contains(where: { $0.0 == "PATH" }) { set("PATH", Self.defaultPath) }
        for (name, value) in spec.effectiveEnvironment.sorted(by: { $0.key < $1.key }) { set(name, value) }
        if !environment.contains(where: { $0.0 == "HOSTNAME" }) { set("HOSTNAME", spec.containerName) }

        var cwd = image.config?.workingDir ?? "/"
        if cwd.isEmpty { cwd = "/" }
        guard cwd.hasPrefix("/") else { throw RuntimeError(.invalidSpec, "Image \(spec.image) has a relative working directory '\(cwd)'.") }

        var rlimits = [OCIRuntimeSpec.Rlimit(type: "RLIMIT_NOFILE", hard: openFilesLimit, soft: openFilesLimit)]
        if let seconds = spec.limits.cpuTimeLimitSeconds {
            rlimits.append(.init(type: "RLIMIT_CPU", hard: seconds, soft: seconds))
        }

        let tmpfsSize = tmpfsSizeBytes.map { ["size=\($0)"] } ?? []
        var mounts: [OCIRuntimeSpec.Mount] = [
            .init(destination: "/proc", type: "proc", source: "proc", options: ["nosuid", "noexec", "nodev"]),
            .init(destination: "/dev", type: "tmpfs", source: "tmpfs", options: ["nosuid", "strictatime", "mode=755", "size=65536k"]),
            .init(destination: "/dev/pts", type: "devpts", source: "devpts", options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]),
            .init(destination: "/dev/shm", type: "tmpfs", source: "shm", options: ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]),
            .init(destination: "/dev/mqueue", type: "mqueue", source: "mqueue", options: ["nosuid", "noexec", "nodev"]),
            .init(destination: "/sys", type: "sysfs", source: "sysfs", options: ["nosuid", "noexec", "nodev", "ro"]),
            .init(destination: "/sys/fs/cgroup", type: "cgroup", source: "cgroup", options: ["nosuid", "noexec", "nodev", "relatime", "ro"]),
        ]
        // Name resolution as the host's (host network) or the drone's files for the backend.
        let nameFiles: [(source: String, destination: String)]
        switch network {
        case .host:
            nameFiles = ["/etc/resolv.conf", "/etc/hosts"].filter { FileManager.default.fileExists(atPath: $0) }.map { ($0, $0) }
        case .namespace(_, let hostsFile, let resolvConfFile):
            nameFiles = [(resolvConfFile, "/etc/resolv.conf"), (hostsFile, "/etc/hosts")]
        }
        for file in nameFiles {
            mounts.append(.init(destination: file.destination, type: "bind", source: file.source, options: ["rbind", "ro", "nosuid", "nodev", "noexec"]))
        }
        if readOnlyRoot {
            mounts.append(.init(destination: "/tmp", type: "tmpfs", source: "tmpfs", options: ["nosuid", "nodev", "mode=1777"] + tmpfsSize))
        }
        for mount in spec.mounts {
            switch mount.kind {
            case .tmpfs:
                mounts.append(.init(destination: mount.target, type: "tmpfs", source: "tmpfs", options: ["nosuid", "nodev"] + tmpfsSize + (mount.readOnly ? ["ro"] : [])))
            case .bind, .volume:
                let access = mount.readOnly ? (recursiveReadOnly ? ["ro", "rro", "rprivate"] : ["ro"]) : ["rw"]
                mounts.append(.init(destination: mount.target, type: "bind", source: mount.source, options: ["rbind", "nosuid", "nodev"] + access))
            }
        }

        var namespaces: [OCIRuntimeSpec.Namespace] = [.init(type: "pid"), .init(type: "ipc"), .init(type: "uts"), .init(type: "mount")]
        if case .namespace(let path, _, _) = network { namespaces.append(.init(type: "network", path: path)) }

        let limits = spec.limits
        let resources = OCIRuntimeSpec.Resources(
            devices: Self.deviceRules,
            memory: (limits.memoryBytes ?? defaultMemoryBytes).map { .init(limit: $0, swap: $0) },
            cpu: limits.cpuQuotaMicroseconds.map { .init(quota: $0, period: UInt64(limits.cpuPeriodMicroseconds ?? ResourceLimitsSpec.defaultCPUPeriodMicroseconds)) },
            pids: .init(limit: (try? BuiltInRuntimeOptions.pidsLimit(of: spec, runtime: "OCI")) ?? limits.pidsLimit ?? defaultPidsLimit))

        let capabilities = OCIRuntimeSpec.Capabilities(bounding: Self.defaultCapabilities, effective: Self.defaultCapabilities, permitted: Self.defaultCapabilities)
        return OCIRuntimeSpec(
            process: .init(user: user, args: arguments, env: environment.map { "\($0.0)=\($0.1)" }, cwd: cwd, capabilities: capabilities,
                           rlimits: rlimits, noNewPrivileges: true, oomScoreAdj: oomScoreAdjust),
            root: .init(path: rootPath, readonly: readOnlyRoot),
            hostname: spec.containerName,
            mounts: mounts,
            linux: .init(namespaces: namespaces, resources: resources, cgroupsPath: Self.cgroupPath(of: spec.backendID.rawValue), seccomp: seccomp,
                         maskedPaths: Self.maskedPaths, readonlyPaths: Self.readonlyPaths),
            annotations: seccomp == nil ? nil : compiledSeccomp.map { [SeccompFilter.crunAnnotation: $0.base64] })
    }

    /// Deny every device but the ones a process needs (null, zero, full, tty, random,
    /// urandom, ptys), as Docker does; creating nodes needs CAP_MKNOD and is allowed.
    static let deviceRules: [OCIRuntimeSpec.DeviceRule] = [
        .init(allow: false, access: "rwm"),
        .init(allow: true, type: "c", access: "m"),
        .init(allow: true, type: "b", access: "m"),
        .init(allow: true, type: "c", major: 1, minor: 3, access: "rwm"),
        .init(allow: true, type: "c", major: 1, minor: 5, access: "rwm"),
        .init(allow: true, type: "c", major: 1, minor: 7, access: "rwm"),
        .init(allow: true, type: "c", major: 1, minor: 8, access: "rwm"),
        .init(allow: true, type: "c", major: 1, minor: 9, access: "rwm"),
        .init(allow: true, type: "c", major: 5, minor: 0, access: "rwm"),
        .init(allow: true, type: "c", major: 5, minor: 2, access: "rwm"),
        .init(allow: true, type: "c", major: 136, access: "rwm"),
    ]

    /// The user an image's `User` names (`uid`, `uid:gid`, `name`, `name:group`), looked up
    /// in the image's own `/etc/passwd` and `/etc/group` (given as their contents). The
    /// default is root, as in Docker.
    public static func resolveUser(_ text: String?, passwd: String?, group: String?, image: String) throws(RuntimeError) -> OCIRuntimeSpec.User {
        let text = text ?? ""
        guard !text.isEmpty else { return .init(uid: 0, gid: 0, additionalGids: nil) }
        let parts = text.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        let passwdEntries = (passwd ?? "").split(separator: "\n").map { $0.split(separator: ":", omittingEmptySubsequences: false).map(String.init) }.filter { $0.count >= 4 }
        let groupEntries = (group ?? "").split(separator: "\n").map { $0.split(separator: ":", omittingEmptySubsequences: false).map(String.init) }.filter { $0.count >= 3 }
        // An id is 0...4294967294: 4294967295 is uid_t's -1, which the kernel reads as "no change".
        func id(_ text: String) -> UInt32? { UInt32(text).flatMap { $0 == UInt32.max ? nil : $0 } }
        var uid: UInt32
        var gid: UInt32 = 0
        if let number = id(parts[0]) {
            uid = number
            if let entry = passwdEntries.first(where: { id($0[2]) == number }), let primary = id(entry[3]) { gid = primary }
        } else {
            guard let entry = passwdEntries.first(where: { $0[0] == parts[0] }), let number = id(entry[2]), let primary = id(entry[3]) else {
                throw RuntimeError(.invalidSpec, "Image \(image) runs as user '\(parts[0].prefix(64))', which its /etc/passwd does not have (or not with valid ids).")
            }
            uid = number
            gid = primary
        }
        if parts.count > 1 {
            if let number = id(parts[1]) {
                gid = number
            } else {
                guard let entry = groupEntries.first(where: { $0[0] == parts[1] }), let number = id(entry[2]) else {
                    throw RuntimeError(.invalidSpec, "Image \(image) runs as group '\(parts[1].prefix(64))', which its /etc/group does not have.")
                }
                gid = number
            }
        }
        // Supplementary groups: those listing the user by name; at most 64 (more than any real
        // image has, and a bound on what a hostile /etc/group puts into config.json).
        let name = passwdEntries.first { id($0[2]) == uid }?[0]
        let additional = Array((name.map { name in
            groupEntries.filter { $0.count >= 4 && $0[3].split(separator: ",").contains(Substring(name)) }.compactMap { id($0[2]) }.filter { $0 != gid }
        } ?? []).prefix(64))
        return .init(uid: uid, gid: gid, additionalGids: additional.isEmpty ? nil : additional)
    }
}
