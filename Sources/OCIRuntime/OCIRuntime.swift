import AsyncHTTPClient
import CLinux
import ContainerRuntime
import Foundation
import Logging
import PlaneCore
import ProcessSupervision
import Synchronization

/// The built-in `oci` runtime: images from registries or local OCI layouts in its own
/// content store, each backend an OCI bundle (overlay root on the shared layers, a
/// Docker-equivalent `config.json`) run by `runc` or `crun` through a shim that outlives
/// drone restarts and records the exit (see docs/runtimes.md).
///
/// Files, below `[agent.oci] state_dir` (default `<state_dir>/oci`):
/// `content/` (the `OCIContentStore`), `backends/<backend>/` (one `OCIBackendDirectory`
/// each), `runtime-root/` (the binary's `--root`) and `volumes/<name>/`.
public final class OCIRuntime: ContainerRuntime {
    public static let name = "oci"

    public let descriptor: RuntimeDescriptor
    let configuration: OCIRuntimeConfiguration
    let droneID: DroneID
    let binary: OCIRuntimeBinary
    let cgroups: CgroupLayout
    let store: OCIContentStore
    let builder: OCIBundleBuilder
    let shim: String
    let logger: Logger
    let state: OCIRuntimeState
    let backendsDirectory: String
    let volumesDirectory: String
    /// The backends' network namespaces (`network = "namespace"`); nil on host networking.
    let networks: OCINetworkNamespaces?
    private let tasks: [Task<Void, Never>]
    /// The next start's shim, already loaded (`standby_shim`); nil while a start uses it or
    /// when disabled.
    private let standbyShim = Mutex<OCIShimLauncher.Standby?>(nil)

    /// Checks the host (the binary, cgroups, the seccomp profile, the shim) and picks up
    /// the backends an earlier run of the drone left running.
    public static func make(configuration: OCIRuntimeConfiguration, droneID: DroneID, logger: Logger) async throws(RuntimeError) -> OCIRuntime {
        let root = configuration.stateDirectory
        // Owner-only: backends' roots, outputs and volumes, and the binary's state.
        for directory in [root, "\(root)/backends", "\(root)/runtime-root", "\(root)/volumes"] {
            do {
                try PrivateFiles.directory(directory)
            } catch {
                throw RuntimeError(.unavailable, "Cannot create \(directory) for the OCI runtime; check [agent.oci] state_dir.", underlying: error)
            }
        }
        let cgroups = CgroupLayout.detect()
        let binary = try await OCIRuntimeBinary.locate(configuration.runtime, root: "\(root)/runtime-root", cgroups: cgroups)
        let seccomp: OCIRuntimeSpec.Seccomp?
        switch configuration.seccompProfile {
        case "default": seccomp = try SeccompProfile.standard().seccomp
        case "unconfined": seccomp = nil
        default: seccomp = try SeccompProfile.file(configuration.seccompProfile).seccomp
        }
        let shim: String
        if let configured = configuration.shimExecutable { shim = configured } else { shim = try Self.currentExecutable() }
        guard FileManager.default.isExecutableFile(atPath: shim) else {
            throw RuntimeError(.unavailable, "The OCI shim executable \(shim) does not exist; set [agent.oci] shim to the plane executable.")
        }
        let networks = configuration.network == .namespace
            ? try await OCINetworkNamespaces.make(subnet: configuration.subnet, ownedDirectory: "\(root)/networks", egress: configuration.egress, logger: logger) : nil
        let registry = RegistryClient(insecureRegistries: Set(configuration.insecureRegistries), client: Self.registryHTTPClient, logger: logger,
                                      pace: configuration.imageLimits.pullPace)
        let store = try OCIContentStore(root: "\(root)/content", registry: registry, logger: logger, limits: configuration.imageLimits)
        if let limit = configuration.writableLayerBytes {
            guard configuration.useOverlay else {
                throw RuntimeError(.invalidSpec, "[agent.oci] writable_layer_bytes limits an overlay's writable layer; it cannot be used with overlay = false.")
            }
            if let problem = RootFilesystem.writableLayerLimitProblem(in: root) {
                throw RuntimeError(.unavailable, "[agent.oci] writable_layer_bytes (\(limit)) needs state_dir on btrfs with quotas enabled, and \(root) cannot: \(problem). Put state_dir on such a filesystem, or remove the key.")
            }
        }
        var builder = OCIBundleBuilder(seccomp: seccomp, defaultPidsLimit: configuration.defaultPidsLimit, readOnlyRoot: configuration.readOnlyRoot)
        builder.recursiveReadOnly = plane_has_mount_setattr() != 0
        builder.oomScoreAdjust = configuration.oomScoreAdjust
        builder.defaultMemoryBytes = configuration.defaultMemoryBytes
        builder.tmpfsSizeBytes = configuration.tmpfsSizeBytes
        // crun would compile the profile in every start; it is compiled once, here.
        if binary.flavor == .crun, let seccomp { builder.compiledSeccomp = try SeccompFilter(compiling: seccomp) }
        // Docker's open-files limit, but never above what the drone itself may raise to.
        var openFiles = rlimit()
        if getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &openFiles) == 0, openFiles.rlim_max < builder.openFilesLimit {
            builder.openFilesLimit = UInt64(openFiles.rlim_max)
        }
        let runtime = OCIRuntime(configuration: configuration, droneID: droneID, binary: binary, cgroups: cgroups, store: store,
                                 builder: builder, shim: shim, networks: networks, logger: logger)
        await runtime.adoptExistingBackends()
        runtime.refillStandbyShim()
        logger.info("oci.ready", metadata: [
            "plane.oci_runtime": "\(binary.flavor.rawValue) \(binary.version)", "plane.cgroups": "\(cgroups.mode.rawValue)",
            "plane.private_mount_namespace": "\(!binary.wrapper.isEmpty)", "plane.state_dir": "\(root)",
            "plane.seccomp": "\(seccomp == nil ? "unconfined" : builder.compiledSeccomp.map { "compiled once (\($0.instructionCount) instructions)" } ?? "compiled by \(binary.flavor.rawValue) per start")",
            "plane.network": "\(networks.map { "namespace \($0.subnet)" } ?? "host")",
        ])
        return runtime
    }

    init(configuration: OCIRuntimeConfiguration, droneID: DroneID, binary: OCIRuntimeBinary, cgroups: CgroupLayout, store: OCIContentStore,
         builder: OCIBundleBuilder, shim: String, networks: OCINetworkNamespaces? = nil, logger: Logger) {
        self.configuration = configuration
        self.droneID = droneID
        self.binary = binary
        self.cgroups = cgroups
        self.store = store
        self.builder = builder
        self.shim = shim
        self.networks = networks
        self.logger = logger
        backendsDirectory = "\(configuration.stateDirectory)/backends"
        volumesDirectory = "\(configuration.stateDirectory)/volumes"
        let state = OCIRuntimeState()
        self.state = state
        descriptor = RuntimeDescriptor(
            name: Self.name, version: "\(binary.flavor.rawValue) \(binary.version)",
            capabilities: RuntimeCapabilities(networkModes: networks == nil ? [.host] : [.bridge], mounts: configuration.allowMounts, stats: true, outOfMemoryEvents: true,
                                              optionsSchema: Self.optionsSchema, waits: true))
        let backends = backendsDirectory
        let collector = store
        let retention = configuration.imageRetention
        let interval = configuration.garbageCollectionInterval
        tasks = [
            // Exits: the shims write exit.json; this turns them into events.
            Task {
                while !Task.isCancelled {
                    await state.poll { backend in OCIBackendDirectory(path: "\(backends)/\(backend.rawValue)") }
                    try? await Task.sleep(for: .milliseconds(100))
                }
            },
            Task {
                while !Task.isCancelled {
                    try? await Task.sleep(for: interval)
                    if Task.isCancelled { return }
                    let inUse = Set(Self.records(in: backends).map(\.image))
                    let cutoff = Timestamp(nanosecondsSinceEpoch: Timestamp.now().nanosecondsSinceEpoch - Int64(retention.components.seconds) * 1_000_000_000)
                    await collector.collectGarbage(unusedSince: cutoff, inUse: inUse)
                }
            },
        ]
    }

    deinit {
        for task in tasks { task.cancel() }
        standbyShim.withLock { $0?.dismiss() }
    }

    /// The standby shim's pid, if one waits.
    var standbyShimPID: pid_t? { standbyShim.withLock { $0?.pid } }

    /// Starts a standby shim unless one waits already (or `standby_shim` is off). A shim
    /// that cannot be started now is started cold by the next `start`, which then says why.
    func refillStandbyShim() {
        guard configuration.standbyShim else { return }
        standbyShim.withLock { standby in
            guard standby == nil else { return }
            standby = try? OCIShimLauncher.standby(shim: shim)
        }
    }

    /// The HTTP client of every registry pull in this process (never shut down, like
    /// `HTTPClient.shared`). Connection attempts are retried for 5 s, not AsyncHTTPClient's
    /// default of the whole request time, so an unreachable registry fails the pull quickly.
    /// AsyncHTTPClient also bounds a request's wait for a pooled connection by that time, so
    /// a registry gets up to 64 connections (not 8): twenty backends pulling their layers at
    /// once waited longer than 5 s for one of eight on a busy machine and failed.
    static let registryHTTPClient: HTTPClient = {
        var configuration = HTTPClient.Configuration()
        configuration.timeout.connect = .seconds(5)
        configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 64)
        configuration.timeout.read = .seconds(60)
        configuration.redirectConfiguration = .follow(max: 5, allowCycles: false)
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }()

    static func currentExecutable() throws(RuntimeError) -> String {
        do {
            return try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        } catch {
            throw RuntimeError(.unavailable, "Cannot find the plane executable for the OCI shim; set [agent.oci] shim.", underlying: error)
        }
    }

    func directory(_ backend: BackendID) -> OCIBackendDirectory { OCIBackendDirectory(path: "\(backendsDirectory)/\(backend.rawValue)") }

    func containerID(_ backend: BackendID) -> String { BackendSpec.containerName(for: backend) }

    func cgroupPath(_ backend: BackendID) -> String { OCIBundleBuilder.cgroupPath(of: backend.rawValue) }

    // MARK: Validation and images

    /// Per-spawn options: `pids_limit` overrides `pids_limit` of `[agent.oci]`.
    static let optionsSchema: JSONValue = .object(JSONObject([
        ("type", .string("object")), ("properties", .object(JSONObject([BuiltInRuntimeOptions.pidsLimitSchema]))), ("additionalProperties", .bool(false)),
    ]))

    public func validate(_ spec: BackendSpec) throws(RuntimeError) {
        try validateCommon(spec)
        for key in spec.options.keys where key != BuiltInRuntimeOptions.pidsLimitKey {
            throw RuntimeError(.invalidSpec, "Unknown OCI option '\(key)'; the OCI runtime accepts: pids_limit.")
        }
        _ = try BuiltInRuntimeOptions.pidsLimit(of: spec, runtime: "OCI")
        guard spec.droneID == droneID else {
            throw RuntimeError(.invalidSpec, "Backend \(spec.backendID) is for drone \(spec.droneID), not this one (\(droneID)).")
        }
        _ = try imageReference(spec.image)
        if case .bridge(let network?) = spec.network {
            throw RuntimeError(.invalidSpec, "The OCI runtime has no network named '\(network)'; each backend gets a namespace of its own (leave the network unnamed).")
        }
        for mount in spec.mounts where mount.kind == .bind {
            guard mount.source.hasPrefix("/") else {
                throw RuntimeError(.invalidSpec, "Bind mount source '\(mount.source)' must be an absolute path on the drone.")
            }
        }
        for mount in spec.mounts where mount.kind == .volume {
            guard !mount.source.isEmpty, !mount.source.contains("/"), mount.source != ".", mount.source != ".." else {
                throw RuntimeError(.invalidSpec, "Volume name '\(mount.source)' must be a plain name (no '/').")
            }
        }
    }

    func imageReference(_ image: String) throws(RuntimeError) -> OCIImageReference {
        do {
            return try OCIImageReference(image, defaultRegistry: configuration.defaultRegistry)
        } catch {
            throw RuntimeError(.invalidSpec, error.message, cause: error.cause)
        }
    }

    public func prepare(_ spec: BackendSpec) async throws(RuntimeError) {
        try validate(spec)
        _ = try await store.pull(try imageReference(spec.image), credentials: spec.credentials, policy: spec.pullPolicy)
    }

    // MARK: Lifecycle

    public func start(_ spec: BackendSpec) async throws(RuntimeError) -> RuntimeHandle {
        try validate(spec)
        let backend = spec.backendID
        let id = containerID(backend)
        guard await state.reserve(backend) else {
            throw RuntimeError(.alreadyExists, "Backend \(backend) is being started already.")
        }
        defer { Task { await state.release(backend) } }
        let directory = directory(backend)
        if FileManager.default.fileExists(atPath: directory.path) || binary.exists(id) {
            throw RuntimeError(.alreadyExists, "Backend \(backend) already exists in the OCI runtime.")
        }
        let image = try await store.pull(try imageReference(spec.image), credentials: spec.credentials, policy: spec.pullPolicy)
        let started = ContinuousClock.now
        guard mkdir(directory.path, 0o711) == 0 else {
            if errno == EEXIST { throw RuntimeError(.alreadyExists, "Backend \(backend) already exists in the OCI runtime.") }
            throw RuntimeError(.internal, "Cannot create \(directory.path): \(String(cString: strerror(errno))).")
        }
        var network: OCIBackendNetwork?
        do {
            var address = Self.hostAddress(spec)
            var bundleNetwork = OCIBundleBuilder.Network.host
            if let networks {
                let created = try await networks.create(for: backend)
                network = created
                address = created.address
                try Self.write(text: OCINetworkNamespaces.hostsFile(address: created.address, hostname: spec.containerName), to: directory.hostsFile)
                try Self.write(text: OCINetworkNamespaces.resolvConf(host: try? String(contentsOfFile: "/etc/resolv.conf", encoding: .utf8),
                                                                     nameservers: configuration.nameservers), to: directory.resolvConfFile)
                bundleNetwork = .namespace(path: created.path, hostsFile: directory.hostsFile, resolvConfFile: directory.resolvConfFile)
            }
            let rootKind = try RootFilesystem.create(in: directory, layers: image.layers.map { store.layerPath($0) }, allowOverlay: configuration.useOverlay,
                                                     writableLayerBytes: configuration.writableLayerBytes)
            var record = OCIBackendRecord(backendID: backend, containerID: id, image: image.reference, address: address, port: spec.port,
                                          overlayRoot: rootKind == .overlay, network: network)
            record.runtimeFlavor = binary.flavor.rawValue
            record.runtimeBinary = binary.path
            try Self.write(record, to: directory.recordFile)
            // The image's own user database, read only when its User needs it.
            let userText = image.configuration.config?.user ?? ""
            let user = try OCIBundleBuilder.resolveUser(userText, passwd: userText.isEmpty ? nil : try Self.readImageFile(directory.rootfs, "etc/passwd"),
                                                        group: userText.isEmpty ? nil : try Self.readImageFile(directory.rootfs, "etc/group"), image: spec.image)
            var bundleSpec = spec
            bundleSpec.mounts = try spec.mounts.map { mount throws(RuntimeError) in try volumeMount(mount) }
            let config = try builder.build(spec: bundleSpec, image: image.configuration, user: user, rootPath: "rootfs", network: bundleNetwork)
            try Self.write(config, to: directory.configFile)
            let commands = binary.startCommands(id: id, bundle: directory.bundle, pidFile: directory.initPIDFile, log: directory.runtimeLog)
            var shimConfiguration = OCIShimConfiguration(
                runtimeName: binary.flavor.rawValue, runCommand: commands.run, startCommand: commands.start,
                outOfMemoryCounterFiles: cgroups.outOfMemoryCounterFiles(cgroupPath(backend)), privateNamespaceDetach: binary.privateNamespaceDetach)
            shimConfiguration.maxOutputBytes = configuration.maxOutputBytes
            try Self.write(shimConfiguration, to: directory.shimConfigurationFile)
            let standby = standbyShim.withLock { standby in
                defer { standby = nil }
                return standby
            }
            let (launched, dismissed) = try await OCIShimLauncher.launch(shim: shim, directory: directory, standby: standby)
            if let dismissed { await state.reap(dismissed) }
            // After this start, not during it: loading the next shim would compete with
            // this backend's start for the CPU.
            refillStandbyShim()
            await state.watch(backend, shim: launched.shimPID)
            await store.touch(image.reference)
            logger.info("oci.backend_started", metadata: [
                "plane.backend": "\(backend)", "plane.pid": "\(launched.initPID)", "plane.root": "\(rootKind)",
                "plane.duration": "\(ContinuousClock.now - started)",
            ])
            return RuntimeHandle(backendID: backend, runtime: Self.name, runtimeID: id, address: BackendAddress(host: address, port: spec.port))
        } catch {
            await discard(backend)
            if let network { await networks?.remove(network) }
            logger.warning("oci.backend_start_failed", metadata: ["plane.backend": "\(backend)", "error": "\(error)"])
            throw error
        }
    }

    static func hostAddress(_ spec: BackendSpec) -> String {
        if case .host(let address) = spec.network { return address }
        return "127.0.0.1"
    }

    /// A named volume is a directory of the runtime's; binds and tmpfs stay as they are.
    func volumeMount(_ mount: MountSpec) throws(RuntimeError) -> MountSpec {
        guard mount.kind == .volume else { return mount }
        let path = "\(volumesDirectory)/\(mount.source)"
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw RuntimeError(.internal, "Cannot create volume \(mount.source) at \(path).", underlying: error)
        }
        return MountSpec(kind: .bind, source: path, target: mount.target, readOnly: mount.readOnly)
    }

    /// A file of the image's root (`/etc/passwd`, `/etc/group`): never through a symlink (an
    /// image could point `/etc/passwd` at a file of the host), only a regular file, at most
    /// 1 MiB, never a blocking read (a FIFO or `/dev/zero` there is an error, not a hang).
    /// Nil when the image has no such file.
    static func readImageFile(_ root: String, _ relative: String) throws(RuntimeError) -> String? {
        guard let bytes = try BoundedFileReader.read(relative, under: root, limit: OCIImageLimits.maxImageFileBytes, what: "The image's /\(relative)") else { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }

    static func write(text: String, to path: String) throws(RuntimeError) {
        do {
            try Data(text.utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw RuntimeError(.internal, "Cannot write \(path).", underlying: error)
        }
    }

    static func write(_ value: some Encodable, to path: String) throws(RuntimeError) {
        do {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            try encoder.encode(value).write(to: URL(fileURLWithPath: path), options: .atomic)
            // The bundle's config.json has the backend's env (secrets, often); the parent
            // is 0700 already, the file is the drone's alone too.
            try PrivateFiles.restrictFile(path)
        } catch {
            throw RuntimeError(.internal, "Cannot write \(path).", underlying: error)
        }
    }

    public func status(of backend: BackendID) async throws(RuntimeError) -> RuntimeStatus {
        let directory = directory(backend)
        guard let record = Self.record(in: directory) else {
            guard let state = try await binary.state(containerID(backend)) else { return .unknown }
            return state.status == "running" ? .running(address: nil) : state.status == "created" ? .created : .killed(signal: nil, outOfMemory: false)
        }
        let address = BackendAddress(host: record.address, port: record.port)
        for _ in 0..<40 {
            if let exit = Self.exitRecord(in: directory) { return Self.status(of: exit) }
            guard let pid = Self.initPID(in: directory) else {
                return Self.isAlive(shimOf: directory) ? .created : .killed(signal: nil, outOfMemory: false)
            }
            if Self.isRunning(pid, cgroup: cgroupPath(backend)) { return .running(address: address) }
            // Init ended; its shim is writing exit.json.
            guard Self.isAlive(shimOf: directory) else { break }
            try? await Task.sleep(for: .milliseconds(50))
        }
        if let exit = Self.exitRecord(in: directory) { return Self.status(of: exit) }
        // The shim was killed: the exit code is lost, the backend is gone.
        return .killed(signal: nil, outOfMemory: false)
    }

    static func status(of exit: BackendExitRecord) -> RuntimeStatus {
        if exit.outOfMemory { return .killed(signal: exit.signal ?? SIGKILL, outOfMemory: true) }
        if let signal = exit.signal { return .killed(signal: signal, outOfMemory: false) }
        return .exited(code: exit.code)
    }

    static func record(in directory: OCIBackendDirectory) -> OCIBackendRecord? {
        guard let data = FileManager.default.contents(atPath: directory.recordFile) else { return nil }
        return try? JSONDecoder().decode(OCIBackendRecord.self, from: data)
    }

    static func records(in backends: String) -> [OCIBackendRecord] {
        ((try? FileManager.default.contentsOfDirectory(atPath: backends)) ?? []).compactMap { record(in: OCIBackendDirectory(path: "\(backends)/\($0)")) }
    }

    static func exitRecord(in directory: OCIBackendDirectory) -> BackendExitRecord? {
        guard let data = FileManager.default.contents(atPath: directory.exitFile) else { return nil }
        return try? JSONDecoder().decode(BackendExitRecord.self, from: data)
    }

    static func initPID(in directory: OCIBackendDirectory) -> pid_t? {
        guard let text = try? String(contentsOfFile: directory.initPIDFile, encoding: .utf8) else { return nil }
        return pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// Whether `pid` runs (not a zombie) inside the backend's cgroup: a recycled pid of
    /// another process does not count.
    static func isRunning(_ pid: pid_t, cgroup: String) -> Bool {
        guard let stat = BoundedFile.generatedText("/proc/\(pid)/stat"),
              let close = stat.lastIndex(of: ")") else { return false }
        let state = stat[stat.index(after: close)...].split(separator: " ").first
        guard state != "Z", state != "X" else { return false }
        guard let cgroups = BoundedFile.generatedText("/proc/\(pid)/cgroup") else { return false }
        return cgroups.split(separator: "\n").contains { $0.hasSuffix(":\(cgroup)") || $0.contains(":\(cgroup)/") }
    }

    /// Whether the backend's shim still runs.
    static func isAlive(shimOf directory: OCIBackendDirectory) -> Bool {
        guard let text = try? String(contentsOfFile: directory.shimPIDFile, encoding: .utf8),
              let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)),
              let command = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
        guard let status = BoundedFile.generatedText("/proc/\(pid)/stat"), let close = status.lastIndex(of: ")"),
              status[status.index(after: close)...].split(separator: " ").first != "Z" else { return false }
        let arguments = String(decoding: command, as: UTF8.self)
        guard arguments.contains("oci-shim\0") else { return false }
        // Shims of earlier versions, started for this backend, name it on their command line.
        if arguments.contains("oci-shim\0\(directory.path)") { return true }
        // The shim works in the backend's directory (a standby shim's command line says
        // `--standby`, not the directory).
        var working = stat()
        var backend = stat()
        guard stat("/proc/\(pid)/cwd", &working) == 0, stat(directory.path, &backend) == 0 else { return false }
        return working.st_dev == backend.st_dev && working.st_ino == backend.st_ino
    }

    public func stop(_ backend: BackendID, grace: Duration) async throws(RuntimeError) {
        let directory = directory(backend)
        let id = containerID(backend)
        let current = try await status(of: backend)
        guard current.isRunning || current == .created else { return }
        let binary = try await binary(of: backend)
        try await binary.kill(id, signal: "TERM")
        if await waitForExit(backend, within: grace) { return }
        logger.info("oci.backend_killed_after_grace", metadata: ["plane.backend": "\(backend)", "plane.grace": "\(grace)"])
        try await binary.kill(id, signal: "KILL")
        if await waitForExit(backend, within: .seconds(10)) { return }
        if Self.exitRecord(in: directory) == nil, let pid = Self.initPID(in: directory), Self.isRunning(pid, cgroup: cgroupPath(backend)) {
            throw RuntimeError(.timeout, "Backend \(backend) still runs 10 s after SIGKILL.")
        }
    }

    /// Waits until the backend is no longer running; false when it still runs after `within`.
    func waitForExit(_ backend: BackendID, within: Duration) async -> Bool {
        let deadline = ContinuousClock.now + within
        repeat {
            if let status = try? await status(of: backend), !status.isRunning, status != .created { return true }
            try? await Task.sleep(for: .milliseconds(25))
        } while ContinuousClock.now < deadline
        return false
    }

    public func remove(_ backend: BackendID) async throws(RuntimeError) {
        let directory = directory(backend)
        let id = containerID(backend)
        let binary = try await binary(of: backend)
        if let pid = Self.initPID(in: directory), Self.isRunning(pid, cgroup: cgroupPath(backend)) {
            try await binary.kill(id, signal: "KILL")
            _ = await waitForExit(backend, within: .seconds(10))
        }
        // Let the shim finish its exit record and output before the directory goes.
        let deadline = ContinuousClock.now + .seconds(3)
        while Self.isAlive(shimOf: directory), ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        try await binary.delete(id, force: true)
        let network = Self.record(in: directory)?.network
        try RootFilesystem.remove(directory)
        if let network { await networks?.remove(network) }
        cgroups.removeDirectories(cgroupPath(backend))
        await state.forget(backend)
    }

    /// Removes what a failed start left (the start removes its network namespace).
    func discard(_ backend: BackendID) async {
        let directory = directory(backend)
        let binary = (try? await binary(of: backend)) ?? binary
        if let pid = Self.initPID(in: directory), Self.isRunning(pid, cgroup: cgroupPath(backend)) {
            try? await binary.kill(containerID(backend), signal: "KILL")
        }
        try? await binary.delete(containerID(backend), force: true)
        do {
            try RootFilesystem.remove(directory)
        } catch {
            logger.warning("oci.discard_failed", metadata: ["plane.backend": "\(backend)", "error": "\(error)"])
        }
        cgroups.removeDirectories(cgroupPath(backend))
        await state.forget(backend)
    }

    // MARK: Observation

    public func mainProcessID(of backend: BackendID) async throws(RuntimeError) -> Int32? {
        let text = try? String(contentsOfFile: directory(backend).initPIDFile, encoding: .utf8)
        return text.flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }.flatMap { $0 > 0 ? $0 : nil }
    }

    /// Native: woken when the exit watch (every 100 ms) finds the shim's `exit.json`.
    public func wait(for backend: BackendID) async throws(RuntimeError) -> RuntimeStatus {
        try await state.exits.wait(for: backend) { () async throws(RuntimeError) -> RuntimeStatus in try await self.status(of: backend) }
    }

    public func events() -> AsyncStream<RuntimeEvent> {
        let (stream, continuation) = AsyncStream.makeStream(of: RuntimeEvent.self)
        let state = state
        let token = UUID()
        continuation.onTermination = { _ in Task { await state.unsubscribe(token) } }
        Task { await state.subscribe(token, continuation) }
        return stream
    }

    public func logs(of backend: BackendID, follow: Bool) -> AsyncThrowingStream<LogLine, any Error> {
        let directory = directory(backend)
        return AsyncThrowingStream { continuation in
            let task = Task {
                var fd = open(directory.outputLog, O_RDONLY | O_CLOEXEC)
                // A follower of a running backend waits for a log that is not there (yet):
                // the shim makes it at the start.
                while fd < 0, follow, errno == ENOENT, !Task.isCancelled, FileManager.default.fileExists(atPath: directory.path),
                      Self.exitRecord(in: directory) == nil {
                    try? await Task.sleep(for: .milliseconds(100))
                    fd = open(directory.outputLog, O_RDONLY | O_CLOEXEC)
                }
                guard fd >= 0 else {
                    if FileManager.default.fileExists(atPath: directory.path) {
                        continuation.finish()
                    } else {
                        continuation.finish(throwing: RuntimeError(.notFound, "Backend \(backend) is not known to the OCI runtime."))
                    }
                    return
                }
                defer { close(fd) }
                var reader = BackendOutputLog.Reader()
                var chunk = [UInt8](repeating: 0, count: 65_536)
                while !Task.isCancelled {
                    let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                    if count > 0 {
                        for line in reader.lines(in: chunk[0..<count]) { continuation.yield(line) }
                        continue
                    }
                    if count < 0, errno == EINTR { continue }
                    // At the end: done unless following a backend that still runs.
                    guard follow, FileManager.default.fileExists(atPath: directory.path) else { break }
                    // The shim rotated the log (`max_output_bytes`): go on in the new file.
                    if Self.wasReplaced(fd, path: directory.outputLog) {
                        let fresh = open(directory.outputLog, O_RDONLY | O_CLOEXEC)
                        if fresh >= 0 {
                            close(fd)
                            fd = fresh
                            reader = BackendOutputLog.Reader()
                            continue
                        }
                    }
                    if Self.exitRecord(in: directory) != nil, !Self.isAlive(shimOf: directory) {
                        // The shim wrote the last output before exit.json; read what is left.
                        let rest = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                        if rest > 0 {
                            for line in reader.lines(in: chunk[0..<rest]) { continuation.yield(line) }
                            continue
                        }
                        break
                    }
                    try? await Task.sleep(for: .milliseconds(100))
                }
                continuation.finish()
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    /// Whether `path` now names another file than the open `fd` (a rotated log).
    static func wasReplaced(_ fd: Int32, path: String) -> Bool {
        var open = stat()
        var current = stat()
        guard fstat(fd, &open) == 0, stat(path, &current) == 0 else { return false }
        return open.st_ino != current.st_ino || open.st_dev != current.st_dev
    }

    public func stats(of backend: BackendID) async throws(RuntimeError) -> ResourceSample {
        guard Self.record(in: directory(backend)) != nil else {
            throw RuntimeError(.notFound, "Backend \(backend) is not known to the OCI runtime.")
        }
        let path = cgroupPath(backend)
        var now = try cgroups.usage(path)
        var time = ContinuousClock.now
        let previous = await state.lastCPUSample(backend)
        var cpuPercent = 0.0
        let cores = Double(max(1, ProcessInfo.processInfo.activeProcessorCount))
        if let previous {
            cpuPercent = Self.percent(cpu: now.cpuNanoseconds, since: previous, at: time, cores: cores)
        } else {
            // No earlier sample: measure over a short interval.
            let first = (time, now.cpuNanoseconds)
            try? await Task.sleep(for: .milliseconds(100))
            now = try cgroups.usage(path)
            time = ContinuousClock.now
            cpuPercent = Self.percent(cpu: now.cpuNanoseconds, since: first, at: time, cores: cores)
        }
        await state.recordCPUSample(backend, (time, now.cpuNanoseconds))
        let hostMemory = ProcessInfo.processInfo.physicalMemory
        let limit = min(now.memoryLimitBytes ?? hostMemory, hostMemory)
        return ResourceSample(cpuPercent: cpuPercent, memoryBytes: now.memoryBytes, memoryLimitBytes: max(limit, now.memoryBytes))
    }

    static func percent(cpu: UInt64, since previous: (ContinuousClock.Instant, UInt64), at time: ContinuousClock.Instant, cores: Double) -> Double {
        let wall = time - previous.0
        let wallNanoseconds = Double(wall.components.seconds) * 1e9 + Double(wall.components.attoseconds) / 1e9
        guard wallNanoseconds > 0, cpu >= previous.1 else { return 0 }
        return min(100, max(0, Double(cpu - previous.1) / (wallNanoseconds * cores) * 100))
    }

    public func list() async throws(RuntimeError) -> [RuntimeHandle] {
        var handles: [BackendID: RuntimeHandle] = [:]
        for record in Self.records(in: backendsDirectory) {
            handles[record.backendID] = RuntimeHandle(backendID: record.backendID, runtime: Self.name, runtimeID: record.containerID,
                                                      address: BackendAddress(host: record.address, port: record.port))
        }
        // Containers of this drone's runtime root without a record (a start cut short).
        for container in try await binary.list() {
            guard let backend = BackendSpec.backendID(fromContainerName: container.id), handles[backend] == nil else { continue }
            handles[backend] = RuntimeHandle(backendID: backend, runtime: Self.name, runtimeID: container.id, address: nil)
        }
        return handles.values.sorted { $0.backendID.rawValue < $1.backendID.rawValue }
    }

    /// The binary that runs `backend`: the drone's, unless the backend's record names
    /// another kind (the drone was started with another `[agent.oci] runtime` since), whose
    /// state only that one can read.
    func binary(of backend: BackendID) async throws(RuntimeError) -> OCIRuntimeBinary {
        guard let record = Self.record(in: directory(backend)), let flavor = record.runtimeFlavor, let path = record.runtimeBinary,
              flavor != binary.flavor.rawValue else { return binary }
        do {
            return try await OCIRuntimeBinary.locate(path, root: binary.root, cgroups: cgroups)
        } catch {
            throw RuntimeError(.unavailable, "Backend \(backend) was started with \(flavor) (\(path)), which this drone cannot run now: \(error.message) Reinstall it to stop and remove the backend.", underlying: error)
        }
    }

    /// After a drone restart: running backends are watched for their exit again; exits
    /// that happened meanwhile are left to the drone's recovery (`list` and `status`).
    func adoptExistingBackends() async {
        let records = Self.records(in: backendsDirectory)
        await networks?.adopt(records.compactMap(\.network))
        for record in records {
            let directory = directory(record.backendID)
            if Self.exitRecord(in: directory) == nil {
                await state.watch(record.backendID, shim: nil)
            }
        }
    }
}

/// The mutable part of the OCI runtime: starts in progress, watched backends, event
/// subscribers, CPU samples.
actor OCIRuntimeState {
    /// Waiters of `OCIRuntime.wait(for:)`, woken by `poll`.
    nonisolated let exits = BackendExitSignals()
    private var starting: Set<BackendID> = []
    /// Backends whose exit is not reported yet, with the pid of their shim when this
    /// process started it (and so must reap it).
    private var watched: [BackendID: pid_t?] = [:]
    private var subscribers: [UUID: AsyncStream<RuntimeEvent>.Continuation] = [:]
    private var cpuSamples: [BackendID: (ContinuousClock.Instant, UInt64)] = [:]
    /// Shims this process started that ended but were not reaped yet.
    private var unreaped: Set<pid_t> = []

    func reserve(_ backend: BackendID) -> Bool { starting.insert(backend).inserted }
    func release(_ backend: BackendID) { starting.remove(backend) }

    func watch(_ backend: BackendID, shim: pid_t?) { watched[backend] = shim }

    /// A shim this process started that is of no backend (a standby found dead).
    func reap(_ shim: pid_t) { unreaped.insert(shim) }

    func forget(_ backend: BackendID) {
        if let shim = watched.removeValue(forKey: backend), let pid = shim { unreaped.insert(pid) }
        cpuSamples[backend] = nil
    }

    func subscribe(_ token: UUID, _ continuation: AsyncStream<RuntimeEvent>.Continuation) { subscribers[token] = continuation }
    func unsubscribe(_ token: UUID) { subscribers[token] = nil }

    func lastCPUSample(_ backend: BackendID) -> (ContinuousClock.Instant, UInt64)? { cpuSamples[backend] }
    func recordCPUSample(_ backend: BackendID, _ sample: (ContinuousClock.Instant, UInt64)) { cpuSamples[backend] = sample }

    /// Reaps ended shims and reports every exit recorded since the last poll.
    func poll(directory: @Sendable (BackendID) -> OCIBackendDirectory) {
        for pid in unreaped {
            var status: Int32 = 0
            let result = waitpid(pid, &status, WNOHANG)
            if result == pid || (result == -1 && errno == ECHILD) { unreaped.remove(pid) }
        }
        for (backend, shim) in watched {
            let backendDirectory = directory(backend)
            guard let exit = OCIRuntime.exitRecord(in: backendDirectory) else {
                if !FileManager.default.fileExists(atPath: backendDirectory.path) {
                    watched[backend] = nil
                    exits.signal(backend)
                }
                continue
            }
            watched[backend] = nil
            exits.signal(backend)
            if let shim { unreaped.insert(shim) }
            var events: [RuntimeEvent] = []
            if exit.outOfMemory { events.append(RuntimeEvent(backendID: backend, kind: .outOfMemory, time: exit.time)) }
            events.append(RuntimeEvent(backendID: backend, kind: .exited(code: exit.code), time: exit.time))
            for event in events {
                for subscriber in subscribers.values { subscriber.yield(event) }
            }
        }
    }
}
