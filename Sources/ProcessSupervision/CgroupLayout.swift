import CLinux
import ContainerRuntime
import Foundation
import PlaneCore

/// How the host mounts cgroups, and where a backend's cgroup files are in it.
///
/// - `unified`: cgroup v2 only (`/sys/fs/cgroup` is cgroup2).
/// - `legacy`: cgroup v1 controllers under `/sys/fs/cgroup/<controller>`.
/// - `hybrid`: v1 controllers plus an (often empty) cgroup2 mount at
///   `/sys/fs/cgroup/unified`. crun refuses such hosts ("cgroups in hybrid mode not
///   supported"); the runtime then runs crun in a private mount namespace without that mount.
public struct CgroupLayout: Sendable, Hashable {
    public enum Mode: String, Sendable, Hashable { case unified, legacy, hybrid }

    public let mode: Mode
    public let root: String

    static let cgroup2Magic: UInt = 0x6367_7270
    static let tmpfsMagic: UInt = 0x0102_1994

    public init(mode: Mode, root: String = "/sys/fs/cgroup") {
        self.mode = mode
        self.root = root
    }

    /// The host's layout.
    public static func detect(root: String = "/sys/fs/cgroup") -> CgroupLayout {
        if filesystemType(root) == cgroup2Magic { return CgroupLayout(mode: .unified, root: root) }
        if filesystemType("\(root)/unified") == cgroup2Magic { return CgroupLayout(mode: .hybrid, root: root) }
        return CgroupLayout(mode: .legacy, root: root)
    }

    static func filesystemType(_ path: String) -> UInt? {
        var info = statfs()
        guard statfs(path, &info) == 0 else { return nil }
        return UInt(bitPattern: Int(info.f_type))
    }

    /// `relative` (a cgroupsPath such as `/plane/<backend>`) in one v1 controller's
    /// hierarchy, or in the unified one.
    public func path(_ relative: String, controller: String?) -> String {
        switch (mode, controller) {
        case (.unified, _), (_, nil): return mode == .hybrid ? "\(root)/unified\(relative)" : "\(root)\(relative)"
        case (_, let controller?): return "\(root)/\(controller)\(relative)"
        }
    }

    /// The controllers a backend's own cgroup uses (v1 hierarchies; v2 enables them below
    /// the parent).
    static let controllers = ["memory", "pids", "cpu", "cpuacct"]

    /// Makes the cgroup `relative` with the given limits (memory in bytes, a pids limit, a
    /// CPU quota of `cpuQuota` µs per `cpuPeriod` µs), as far as the host allows; returns
    /// the directories made (empty: no cgroup could be made, e.g. without root).
    public func create(_ relative: String, memoryBytes: Int64?, pidsLimit: Int64?, cpuQuota: Int64?, cpuPeriod: Int64?) -> [String] {
        var made: [String] = []
        switch mode {
        case .unified:
            // Enable the controllers on the way down, then make the leaf.
            var parent = root
            for component in relative.split(separator: "/").dropLast() {
                try? "+memory +pids +cpu".write(toFile: "\(parent)/cgroup.subtree_control", atomically: false, encoding: .utf8)
                parent += "/\(component)"
                mkdir(parent, 0o755)
            }
            try? "+memory +pids +cpu".write(toFile: "\(parent)/cgroup.subtree_control", atomically: false, encoding: .utf8)
            let directory = path(relative, controller: nil)
            guard Self.makeDirectories(directory) else { return [] }
            made.append(directory)
            if let memoryBytes { try? "\(memoryBytes)".write(toFile: "\(directory)/memory.max", atomically: false, encoding: .utf8) }
            if let pidsLimit { try? "\(pidsLimit)".write(toFile: "\(directory)/pids.max", atomically: false, encoding: .utf8) }
            if let cpuQuota { try? "\(cpuQuota) \(cpuPeriod ?? 100_000)".write(toFile: "\(directory)/cpu.max", atomically: false, encoding: .utf8) }
        case .legacy, .hybrid:
            for controller in Self.controllers where Self.isDirectory("\(root)/\(controller)") {
                let directory = path(relative, controller: controller)
                guard Self.makeDirectories(directory) else { continue }
                made.append(directory)
                switch controller {
                case "memory": if let memoryBytes { try? "\(memoryBytes)".write(toFile: "\(directory)/memory.limit_in_bytes", atomically: false, encoding: .utf8) }
                case "pids": if let pidsLimit { try? "\(pidsLimit)".write(toFile: "\(directory)/pids.max", atomically: false, encoding: .utf8) }
                case "cpu":
                    if let cpuQuota {
                        try? "\(cpuPeriod ?? 100_000)".write(toFile: "\(directory)/cpu.cfs_period_us", atomically: false, encoding: .utf8)
                        try? "\(cpuQuota)".write(toFile: "\(directory)/cpu.cfs_quota_us", atomically: false, encoding: .utf8)
                    }
                default: break
                }
            }
        }
        return made
    }

    /// Moves the calling process into the cgroup directories `directories` (made by `create`).
    public static func join(_ directories: [String]) {
        let pid = String(getpid())
        for directory in directories { try? pid.write(toFile: "\(directory)/cgroup.procs", atomically: false, encoding: .utf8) }
    }

    static func makeDirectories(_ path: String) -> Bool {
        (try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)) != nil && isDirectory(path)
    }

    /// The files whose `oom_kill` line counts OOM kills in the cgroup.
    public func outOfMemoryCounterFiles(_ relative: String) -> [String] {
        mode == .unified ? ["\(path(relative, controller: nil))/memory.events"] : ["\(path(relative, controller: "memory"))/memory.oom_control"]
    }

    /// Memory use, the limit in effect, and the CPU time used, read from the cgroup.
    public struct Usage: Sendable, Hashable {
        public var memoryBytes: UInt64
        /// nil when unlimited.
        public var memoryLimitBytes: UInt64?
        public var cpuNanoseconds: UInt64
    }

    public func usage(_ relative: String) throws(RuntimeError) -> Usage {
        switch mode {
        case .unified:
            let directory = path(relative, controller: nil)
            let current = try Self.number(in: "\(directory)/memory.current")
            let limitText = try Self.read("\(directory)/memory.max").trimmingCharacters(in: .whitespacesAndNewlines)
            let inactiveFile = Self.field("inactive_file", in: (try? Self.read("\(directory)/memory.stat")) ?? "") ?? 0
            let cpuMicroseconds = Self.field("usage_usec", in: try Self.read("\(directory)/cpu.stat")) ?? 0
            return Usage(memoryBytes: current > inactiveFile ? current - inactiveFile : current,
                         memoryLimitBytes: limitText == "max" ? nil : UInt64(limitText),
                         cpuNanoseconds: cpuMicroseconds.multipliedReportingOverflow(by: 1_000).overflow ? .max : cpuMicroseconds * 1_000)
        case .legacy, .hybrid:
            let memory = path(relative, controller: "memory")
            let current = try Self.number(in: "\(memory)/memory.usage_in_bytes")
            let limit = try Self.number(in: "\(memory)/memory.limit_in_bytes")
            let inactiveFile = Self.field("total_inactive_file", in: (try? Self.read("\(memory)/memory.stat")) ?? "") ?? 0
            let cpu = try Self.number(in: "\(path(relative, controller: "cpuacct"))/cpuacct.usage")
            // v1 reports "unlimited" as a huge page-aligned number.
            return Usage(memoryBytes: current > inactiveFile ? current - inactiveFile : current,
                         memoryLimitBytes: limit >= UInt64(Int64.max) / 2 ? nil : limit, cpuNanoseconds: cpu)
        }
    }

    /// Removes the backend's cgroup directories the runtime binary left behind (`runc
    /// delete` keeps the empty parent); a cgroup that still has processes stays.
    public func removeDirectories(_ relative: String) {
        var candidates: [String] = []
        switch mode {
        case .unified:
            candidates = [path(relative, controller: nil)]
        case .legacy, .hybrid:
            let controllers = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
            candidates = controllers.filter { $0 != "unified" }.map { "\(root)/\($0)\(relative)" }
            if mode == .hybrid { candidates.append(path(relative, controller: nil)) }
        }
        for directory in candidates {
            // Child cgroups first (runc may nest), then the directory itself.
            if let children = try? FileManager.default.contentsOfDirectory(atPath: directory) {
                for child in children where Self.isDirectory("\(directory)/\(child)") { rmdir("\(directory)/\(child)") }
            }
            rmdir(directory)
        }
    }

    static func isDirectory(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
    }

    static func read(_ file: String) throws(RuntimeError) -> String {
        do {
            return String(decoding: try BoundedFile.readGenerated(file, limit: 1 << 20), as: UTF8.self)
        } catch {
            throw RuntimeError(.notFound, "Cannot read \(file); the backend's cgroup is gone.", underlying: error)
        }
    }

    static func number(in file: String) throws(RuntimeError) -> UInt64 {
        let text = try read(file).trimmingCharacters(in: .whitespacesAndNewlines)
        guard let value = UInt64(text) else { throw RuntimeError(.internal, "\(file) holds '\(text)', not a number.") }
        return value
    }

    /// The value of `name` in a `key value` per line file.
    static func field(_ name: String, in text: String) -> UInt64? {
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ")
            if parts.count == 2, parts[0] == name { return UInt64(parts[1]) }
        }
        return nil
    }
}
