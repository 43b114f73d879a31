import ContainerRuntime
import Foundation
import ProcessSupervision

/// The OCI runtime binary (`runc` or `crun`) and how this drone calls it: always with its
/// own `--root`, so it only ever sees its own containers, and — for crun on a host with
/// hybrid cgroups — inside a private mount namespace without the cgroup2 mount crun
/// refuses (the host's mounts are not changed).
public struct OCIRuntimeBinary: Sendable, Hashable {
    public enum Flavor: String, Sendable, Hashable { case runc, crun }

    public let path: String
    public let flavor: Flavor
    public let version: String
    /// The runtime's state directory (`--root`).
    public let root: String
    /// Prepended to every command the drone runs (the private mount namespace for crun on
    /// hybrid hosts).
    public let wrapper: [String]
    /// The mount a private mount namespace goes without (the cgroup2 mount of a hybrid
    /// host), when commands need one: the shim enters such a namespace itself for a start
    /// instead of running the wrapper's programs twice on the start's path.
    public let privateNamespaceDetach: String?

    public init(path: String, flavor: Flavor, version: String, root: String, wrapper: [String] = [], privateNamespaceDetach: String? = nil) {
        self.path = path
        self.flavor = flavor
        self.version = version
        self.root = root
        self.wrapper = wrapper
        self.privateNamespaceDetach = privateNamespaceDetach
    }

    /// Finds `name` (a path, a name looked up in PATH, or `auto`: crun when installed, else
    /// runc), asks it for its version, and decides how to call it on this host.
    public static func locate(_ name: String, root: String, cgroups: CgroupLayout) async throws(RuntimeError) -> OCIRuntimeBinary {
        let path: String
        if name == "auto" {
            // crun starts a backend in about two thirds of runc's time (docs/benchmarks.md).
            guard let found = (try? executablePath("crun", what: "crun", package: "crun")) ?? (try? executablePath("runc", what: "runc", package: "runc")) else {
                throw RuntimeError(.unavailable, "Neither crun nor runc is installed for the OCI runtime: apt-get install -y crun (or runc), or set [agent.oci] runtime to the path of one.")
            }
            path = found
        } else {
            path = try executablePath(name, what: "OCI runtime '\(name)'", package: name.hasSuffix("crun") ? "crun" : "runc")
        }
        let completion = try await ProcessSpawner.run(path, ["--version"])
        guard completion.succeeded else {
            throw RuntimeError(.unavailable, "\(path) --version failed (\(completion.statusDescription)): \(completion.standardError.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        let firstLine = completion.standardOutput.split(separator: "\n").first.map(String.init) ?? ""
        let flavor: Flavor
        if firstLine.hasPrefix("crun") {
            flavor = .crun
        } else if firstLine.hasPrefix("runc") {
            flavor = .runc
        } else {
            throw RuntimeError(.unavailable, "\(path) is neither runc nor crun (it says '\(firstLine)'); set [agent.oci] runtime to a runc or crun binary.")
        }
        let version = firstLine.split(separator: " ").last.map(String.init) ?? "unknown"
        var wrapper: [String] = []
        var detach: String?
        if flavor == .crun, cgroups.mode == .hybrid {
            let unshare = try executablePath("unshare", what: "unshare (needed to run crun on this host with hybrid cgroups)", package: "util-linux")
            // A private mount namespace in which the cgroup2 mount crun trips over is gone.
            wrapper = [unshare, "--mount", "--propagation", "private", "--", "/bin/sh", "-c",
                       "umount \(cgroups.root)/unified 2>/dev/null || umount -l \(cgroups.root)/unified; exec \"$@\"", "plane-crun"]
            detach = "\(cgroups.root)/unified"
        }
        return OCIRuntimeBinary(path: path, flavor: flavor, version: version, root: root, wrapper: wrapper, privateNamespaceDetach: detach)
    }

    static func executablePath(_ name: String, what: String, package: String) throws(RuntimeError) -> String {
        if name.contains("/") {
            guard FileManager.default.isExecutableFile(atPath: name) else {
                throw RuntimeError(.unavailable, "\(what) is not an executable file at \(name); install it (apt-get install -y \(package)) or fix the path in drone.toml.")
            }
            return name
        }
        let searchPath = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        for directory in searchPath.split(separator: ":") + ["/usr/sbin", "/usr/bin", "/sbin", "/bin"] {
            let candidate = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        throw RuntimeError(.unavailable, "\(what) is not installed: apt-get install -y \(package), or set its path in drone.toml.")
    }

    /// The command line for `arguments` (global flags, then the subcommand's).
    public func command(_ arguments: [String], log: String? = nil, wrapped: Bool = true) -> [String] {
        var global = ["--root", root]
        if let log {
            switch flavor {
            case .runc: global += ["--log", log, "--log-format", "json"]
            case .crun: global += ["--log=file:\(log)", "--log-format=json"]
            }
        }
        return (wrapped ? wrapper : []) + [path] + global + arguments
    }

    /// The commands the shim runs to start a container, with its pid in `pidFile`.
    ///
    /// runc: `run --detach`, create and start in one invocation (one process start fewer);
    /// it returns once the container's process runs, and a process that already ended is
    /// left as a zombie that passes to the shim (the subreaper) with its exit status.
    ///
    /// crun: `create`, then `start`. `crun run --detach` reaps a container process that
    /// ends while it is still running (a backend exiting at once), so the shim found no
    /// child and no exit status (it recorded 255 for a backend that exited with 3, about one
    /// start in ten under load). After `create` the process waits for `start` while already
    /// the shim's child, so its exit status always reaches the shim.
    ///
    /// The commands go without the wrapper: the shim runs them in the private mount
    /// namespace itself (`OCIShimConfiguration.privateNamespaceDetach`).
    public func startCommands(id: String, bundle: String, pidFile: String, log: String) -> (run: [String], start: [String]?) {
        switch flavor {
        case .runc:
            (command(["run", "--detach", "--bundle", bundle, "--pid-file", pidFile, id], log: log, wrapped: false), nil)
        case .crun:
            (command(["create", "--bundle", bundle, "--pid-file", pidFile, id], log: log, wrapped: false), command(["start", id], log: log, wrapped: false))
        }
    }

    /// Whether the runtime holds state for `id` (runc and crun keep a directory per
    /// container below their root).
    public func exists(_ id: String) -> Bool {
        FileManager.default.fileExists(atPath: "\(root)/\(id)")
    }

    /// The container's state as the runtime reports it (`created`, `running`, `stopped`,
    /// `paused`), or nil when it holds none.
    public struct ContainerState: Sendable, Hashable {
        public var id: String
        public var status: String
        public var pid: Int32
    }

    public func state(_ id: String) async throws(RuntimeError) -> ContainerState? {
        guard exists(id) else { return nil }
        let completion = try await run(["state", id])
        guard completion.succeeded else {
            if !exists(id) { return nil }
            throw failure("state", id, completion)
        }
        return Self.states(from: completion.standardOutput).first
    }

    /// Every container below this drone's root.
    public func list() async throws(RuntimeError) -> [ContainerState] {
        let completion = try await run(["list", "--format", "json"])
        guard completion.succeeded else { throw failure("list", nil, completion) }
        return Self.states(from: completion.standardOutput)
    }

    /// Sends `signal` (a name such as `TERM`, or a number) to the container's init; a
    /// container that no longer runs is not an error.
    public func kill(_ id: String, signal: String) async throws(RuntimeError) {
        guard exists(id) else { return }
        let completion = try await run(["kill", id, signal])
        if completion.succeeded { return }
        if let state = try await state(id), state.status == "running" || state.status == "created" {
            throw failure("kill", id, completion)
        }
    }

    /// Deletes the container (killing it first when `force`); an unknown one is not an error.
    public func delete(_ id: String, force: Bool) async throws(RuntimeError) {
        guard exists(id) else { return }
        let completion = try await run(["delete"] + (force ? ["--force"] : []) + [id])
        if completion.succeeded || !exists(id) { return }
        throw failure("delete", id, completion)
    }

    func run(_ arguments: [String]) async throws(RuntimeError) -> ProcessSpawner.Completion {
        let line = command(arguments)
        return try await ProcessSpawner.run(line[0], Array(line.dropFirst()))
    }

    func failure(_ verb: String, _ id: String?, _ completion: ProcessSpawner.Completion) -> RuntimeError {
        let message = completion.standardError.trimmingCharacters(in: .whitespacesAndNewlines)
        let subject = id.map { " \($0)" } ?? ""
        return RuntimeError(.unavailable, "\(flavor.rawValue) \(verb)\(subject) failed (\(completion.statusDescription)): \(message.isEmpty ? completion.standardOutput : message)")
    }

    /// Reads `state`'s object or `list`'s array (runc prints `null` for an empty list).
    static func states(from output: String) -> [ContainerState] {
        guard let json = try? JSONSerialization.jsonObject(with: Data(output.utf8), options: [.fragmentsAllowed]) else { return [] }
        let objects: [[String: Any]] = (json as? [[String: Any]]) ?? ((json as? [String: Any]).map { [$0] } ?? [])
        return objects.compactMap { object in
            guard let id = object["id"] as? String else { return nil }
            return ContainerState(id: id, status: object["status"] as? String ?? "unknown", pid: Int32(truncatingIfNeeded: (object["pid"] as? Int) ?? 0))
        }
    }
}
