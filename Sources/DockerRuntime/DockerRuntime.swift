import AsyncHTTPClient
import ContainerRuntime
import Foundation
import Logging
import NIOCore
import PlaneCore
import Synchronization

/// Runs backends as Docker containers through the Engine API. Containers are named
/// `plane-{backend}` and labelled with the managing drone, so several drones can share one
/// daemon and each sees only its own backends.
public final class DockerRuntime: ContainerRuntime {
    public static let name = "docker"
    static let managedLabel = "dev.plane.managed"
    static let backendLabel = "dev.plane.backend"
    static let droneLabel = "dev.plane.drone"
    static let addressLabel = "dev.plane.address"
    static let portLabel = "dev.plane.port"

    public let descriptor: RuntimeDescriptor
    let configuration: DockerRuntimeConfiguration
    let droneID: DroneID
    let logger: Logger
    let client: DockerEngineClient
    private let eventHub: DockerEventHub
    let writableLayerLimit: WritableLayerLimit
    let imageAccess: DockerImageAccess

    /// Connects to the daemon and speaks its API version when it is older than ours.
    public static func make(configuration: DockerRuntimeConfiguration, droneID: DroneID, logger: Logger) async throws(RuntimeError) -> DockerRuntime {
        var client = try DockerEngineClient(endpoint: configuration.endpoint)
        let version = try await client.call(.GET, "/version", timeout: .seconds(10), versioned: false)
        guard version.status == 200, let info = version.json?.objectValue else {
            throw RuntimeError(.unavailable, "The Docker daemon at \(configuration.endpoint) answered /version with \(version.status): \(version.message)")
        }
        let serverAPI = info["ApiVersion"]?.stringValue ?? DockerEngineClient.preferredAPIVersion
        if Self.compare(serverAPI, DockerEngineClient.preferredAPIVersion) < 0 { client.apiVersion = serverAPI }
        let engine = info["Version"]?.stringValue ?? "?"
        var layerLimit = WritableLayerLimit.none
        if let limit = configuration.writableLayerBytes {
            layerLimit = try await checkWritableLayerLimit(limit, client: client, endpoint: configuration.endpoint)
        }
        try await DockerNetworkSetup(client: client, logger: logger).ensure(configuration.network, egress: configuration.egress, endpoint: configuration.endpoint)
        return DockerRuntime(configuration: configuration, droneID: droneID, logger: logger, client: client, engineVersion: engine, writableLayerLimit: layerLimit)
    }

    /// How the daemon's storage driver limits a container's writable layer.
    enum WritableLayerLimit: Sendable, Equatable {
        case none
        /// overlay2 on xfs: Docker's `size` bounds the container's own layer.
        case ownLayer(bytes: Int64)
        /// btrfs, zfs: Docker's `size` bounds the whole root, the image's files included
        /// (a btrfs quota group on the bytes a subvolume refers to), so the image's size is
        /// added to the limit.
        case wholeRoot(bytes: Int64)
    }

    init(configuration: DockerRuntimeConfiguration, droneID: DroneID, logger: Logger, client: DockerEngineClient, engineVersion: String,
         writableLayerLimit: WritableLayerLimit = .none) {
        self.writableLayerLimit = writableLayerLimit
        self.configuration = configuration
        self.droneID = droneID
        self.logger = logger
        self.client = client
        descriptor = RuntimeDescriptor(name: Self.name, version: "docker \(engineVersion), API \(client.apiVersion)", capabilities: RuntimeCapabilities(
            networkModes: configuration.network == .host ? [.host] : [.bridge], mounts: configuration.allowMounts, stats: true, outOfMemoryEvents: true,
            optionsSchema: Self.optionsSchema, waits: true))
        eventHub = DockerEventHub(client: client, droneID: droneID, logger: logger)
        imageAccess = DockerImageAccess(path: configuration.imageAccessFile, logger: logger)
    }

    /// `writable_layer_bytes` needs a storage driver that limits a container's writable
    /// layer: btrfs and zfs do; overlay2 only on xfs mounted with `pquota` (which `/info`
    /// does not show: such a daemon is let through, and a create it refuses says why).
    static func checkWritableLayerLimit(_ limit: Int64, client: DockerEngineClient, endpoint: String) async throws(RuntimeError) -> WritableLayerLimit {
        let response = try await client.call(.GET, "/info", timeout: .seconds(10))
        guard response.status == 200, let info = response.json?.objectValue else {
            throw RuntimeError(.unavailable, "The Docker daemon at \(endpoint) answered /info with \(response.status): \(response.message)")
        }
        let driver = info["Driver"]?.stringValue ?? "unknown"
        let backing = info["DriverStatus"]?.arrayValue?.lazy.compactMap { pair -> String? in
            guard let pair = pair.arrayValue, pair.count == 2, pair[0].stringValue == "Backing Filesystem" else { return nil }
            return pair[1].stringValue
        }.first
        switch (driver, backing) {
        case ("btrfs", _), ("zfs", _): return .wholeRoot(bytes: limit)
        case ("overlay2", "xfs"?): return .ownLayer(bytes: limit)
        default:
            let described = backing.map { "\(driver) on \($0)" } ?? driver
            throw RuntimeError(.unavailable, "[agent.docker] writable_layer_bytes (\(limit)) needs Docker's storage driver to limit a container's writable layer "
                + "(btrfs, zfs, or overlay2 on xfs mounted with pquota); the daemon at \(endpoint) uses \(described). Change the daemon's storage driver or remove the key.")
        }
    }

    static func compare(_ a: String, _ b: String) -> Int {
        let x = a.split(separator: ".").compactMap { Int($0) }, y = b.split(separator: ".").compactMap { Int($0) }
        for i in 0..<max(x.count, y.count) {
            let l = i < x.count ? x[i] : 0, r = i < y.count ? y[i] : 0
            if l != r { return l < r ? -1 : 1 }
        }
        return 0
    }

    /// Per-spawn options: `oci_runtime` (string) overrides the configured OCI runtime;
    /// `pids_limit` the configured process limit.
    static let optionsSchema: JSONValue = .object(JSONObject([
        ("type", .string("object")),
        ("properties", .object(JSONObject([("oci_runtime", .object(JSONObject([("type", .string("string")), ("minLength", .integer(1))]))),
                                           BuiltInRuntimeOptions.pidsLimitSchema]))),
        ("additionalProperties", .bool(false)),
    ]))

    // MARK: Validation

    public func validate(_ spec: BackendSpec) throws(RuntimeError) {
        try validateCommon(spec)
        for (key, value) in spec.options.members {
            switch key {
            case "oci_runtime":
                guard case .string(let name) = value, !name.isEmpty else {
                    throw RuntimeError(.invalidSpec, "Docker option 'oci_runtime' must be a non-empty string, e.g. \"runsc\".")
                }
            case BuiltInRuntimeOptions.pidsLimitKey:
                _ = try BuiltInRuntimeOptions.pidsLimit(of: spec, runtime: "Docker")
            default:
                throw RuntimeError(.invalidSpec, "Unknown Docker option '\(key)'; the Docker runtime accepts: oci_runtime, pids_limit.")
            }
        }
        _ = try DockerImageReference(spec.image)
        if spec.port == 0 { throw RuntimeError(.invalidSpec, "The backend port must be 1 to 65535.") }
    }

    // MARK: Images

    public func prepare(_ spec: BackendSpec) async throws(RuntimeError) {
        try validate(spec)
        let reference = try DockerImageReference(spec.image)
        let present = try await imageIsPresent(reference)
        let scope = ImageAccessScope(spec.credentials, registry: reference.registry)
        let usable = present && imageAccess.mayUse(reference.description, scope: scope)
        switch spec.pullPolicy {
        case .never:
            if !present {
                throw RuntimeError(.imageUnavailable, "Image \(reference) is not on this drone and the pull policy is Never; load it first or use IfNotPresent.")
            }
            if !usable {
                throw RuntimeError(.imageUnavailable, "Image \(reference) was pulled with other credentials and the pull policy is Never; pass the credentials it was pulled with, or use IfNotPresent.")
            }
        case .ifNotPresent:
            if !usable {
                try await pull(reference, credentials: spec.credentials)
                imageAccess.granted(reference.description, scope: scope)
            }
        case .always:
            try await pull(reference, credentials: spec.credentials)
            imageAccess.granted(reference.description, scope: scope)
        }
    }

    func imageIsPresent(_ reference: DockerImageReference) async throws(RuntimeError) -> Bool {
        let response = try await client.call(.GET, "/images/\(reference.description)/json")
        switch response.status {
        case 200: return true
        case 404: return false
        default: throw RuntimeError(.unavailable, "Docker could not look up image \(reference): \(response.message)")
        }
    }

    /// Pulls through dockerd, for at most `pull_timeout_secs`.
    func pull(_ reference: DockerImageReference, credentials: RegistryCredentials?) async throws(RuntimeError) {
        let timeout = configuration.pullTimeout
        do {
            // Cancelled at the limit: its request is closed, and dockerd stops a pull nobody waits for.
            try await withTimeLimit(timeout) { try await self.pullOnce(reference, credentials: credentials) }
        } catch let error as RuntimeError {
            throw error
        } catch is TimeLimitExceeded {
            throw RuntimeError(.imageUnavailable, "Pulling image \(reference) took longer than \(timeout.components.seconds) s ([agent.docker] pull_timeout_secs); the registry is slow or stalls. The pull was stopped.",
                               limit: "agent.docker.pull_timeout_secs")
        } catch {
            throw RuntimeError(.imageUnavailable, "Pulling image \(reference) was interrupted.", underlying: error)
        }
    }

    private func pullOnce(_ reference: DockerImageReference, credentials: RegistryCredentials?) async throws(RuntimeError) {
        var headers: [(String, String)] = []
        if let credentials {
            let auth = JSONValue.object(JSONObject([("username", .string(credentials.username)), ("password", .string(credentials.password)), ("serveraddress", .string(reference.registry))]))
            headers.append(("X-Registry-Auth", Data(JSONWriter.write(auth)).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")))
        }
        logger.info("docker.pull", metadata: ["plane.image": "\(reference)"])
        let (status, body) = try await client.stream(.POST, "/images/create", query: [("fromImage", reference.repository), ("tag", reference.digest ?? reference.tag ?? "latest")], headers: headers)
        var splitter = LineSplitter()
        var lastError: String?
        var raw: [UInt8] = []
        do {
            for try await chunk in body {
                let bytes = Array(chunk.readableBytesView)
                if status != 200 { raw.append(contentsOf: bytes); continue }
                for line in splitter.feed(bytes) {
                    if let object = try? JSONParser.parse(line).objectValue, let error = object["error"]?.stringValue ?? object["errorDetail"]?.objectValue?["message"]?.stringValue {
                        lastError = error
                    }
                }
            }
        } catch {
            throw RuntimeError(.imageUnavailable, "Pulling image \(reference) was interrupted.", underlying: error)
        }
        if status != 200 {
            let message = (try? JSONParser.parse(raw))?.objectValue?["message"]?.stringValue ?? String(decoding: raw.prefix(300), as: UTF8.self)
            throw RuntimeError(.imageUnavailable, "Image \(reference) could not be pulled: \(message)")
        }
        if let lastError {
            throw RuntimeError(.imageUnavailable, "Image \(reference) could not be pulled: \(lastError)")
        }
    }

    // MARK: Lifecycle

    public func start(_ spec: BackendSpec) async throws(RuntimeError) -> RuntimeHandle {
        try validate(spec)
        let reference = try DockerImageReference(spec.image)
        // `prepare` normally ran already; without it (or if it was for other credentials),
        // make the image available to this spawn now.
        let present = try await imageIsPresent(reference)
        if !present || !imageAccess.mayUse(reference.description, scope: ImageAccessScope(spec.credentials, registry: reference.registry)) {
            try await prepare(spec)
        }
        let name = spec.containerName
        let storageSize = try await storageSize(for: reference)
        let create = try await client.call(.POST, "/containers/create", query: [("name", name)], body: createBody(spec, reference: reference, storageSize: storageSize))
        switch create.status {
        case 201: break
        case 409: throw RuntimeError(.alreadyExists, "A container named \(name) already exists; backend \(spec.backendID) is not started twice.")
        case 404: throw RuntimeError(.imageUnavailable, "Image \(reference) is not available: \(create.message)")
        case 400: throw RuntimeError(.invalidSpec, "Docker refused the container for \(spec.backendID): \(create.message)")
        default: throw RuntimeError(.internal, "Docker could not create \(name): \(create.status) \(create.message)")
        }
        let id = create.json?.objectValue?["Id"]?.stringValue ?? name
        let started = try await client.call(.POST, "/containers/\(id)/start")
        guard started.status == 204 || started.status == 304 else {
            // Never leave a created-but-not-started container behind (v0.3.10 did).
            _ = try? await client.call(.DELETE, "/containers/\(id)", query: [("force", "1"), ("v", "1")])
            throw RuntimeError(.internal, "Docker could not start \(name): \(started.message)")
        }
        let status = try await status(of: spec.backendID)
        var address: BackendAddress?
        if case .running(let a) = status { address = a }
        logger.info("docker.started", metadata: ["plane.backend": "\(spec.backendID)", "docker.container": "\(id.prefix(12))"])
        return RuntimeHandle(backendID: spec.backendID, runtime: Self.name, runtimeID: id, address: address)
    }

    /// Docker's `StorageOpt` `size` for a container of `reference` (`writable_layer_bytes`),
    /// nil without a limit.
    func storageSize(for reference: DockerImageReference) async throws(RuntimeError) -> Int64? {
        switch writableLayerLimit {
        case .none: return nil
        case .ownLayer(let bytes): return bytes
        case .wholeRoot(let bytes):
            let response = try await client.call(.GET, "/images/\(reference.description)/json")
            guard response.status == 200, let size = response.json?.objectValue?["Size"]?.int64Value, size >= 0 else {
                throw RuntimeError(.unavailable, "Docker could not give the size of image \(reference) (needed for writable_layer_bytes): \(response.message)")
            }
            let (total, overflow) = size.addingReportingOverflow(bytes)
            return overflow ? Int64.max : total
        }
    }

    func createBody(_ spec: BackendSpec, reference: DockerImageReference, storageSize: Int64? = nil) -> JSONValue {
        let env = spec.effectiveEnvironment.sorted { $0.key < $1.key }.map { JSONValue.string("\($0.key)=\($0.value)") }
        var labels: [(String, JSONValue)] = [
            (Self.managedLabel, .string("true")), (Self.backendLabel, .string(spec.containerName)),
            (Self.droneLabel, .string(droneID.rawValue)), (Self.portLabel, .string(String(spec.port))),
        ]
        var host: [(String, JSONValue)] = []
        var exposed: JSONObject?
        let portKey = "\(spec.port)/tcp"
        switch spec.network {
        case .host(let address):
            host.append(("NetworkMode", .string("host")))
            labels.append((Self.addressLabel, .string(address)))
        case .bridge(let network):
            host.append(("NetworkMode", .string(network ?? configuration.network.dockerName)))
            exposed = JSONObject([(portKey, .object(JSONObject()))])
        case .publish(let hostAddress):
            host.append(("NetworkMode", .string("bridge")))
            exposed = JSONObject([(portKey, .object(JSONObject()))])
            host.append(("PortBindings", .object(JSONObject([(portKey, .array([.object(JSONObject([("HostIp", .string(hostAddress)), ("HostPort", .string(""))]))]))]))))
        }
        // No raw sockets: on a shared bridge they allow ARP spoofing of a neighbour's
        // address, on the host's network sniffing and spoofing of loopback traffic.
        host.append(("CapDrop", .array([.string("NET_RAW")])))
        host.append(("OomScoreAdj", .integer(Int64(configuration.oomScoreAdjust))))
        if let storageSize { host.append(("StorageOpt", .object(JSONObject([("size", .string(String(storageSize)))])))) }
        let limits = spec.limits
        if let memory = limits.memoryBytes ?? configuration.memoryLimitBytes { host.append(("Memory", .integer(memory))) }
        if let period = limits.cpuPeriodMicroseconds { host.append(("CpuPeriod", .integer(period))) }
        if let quota = limits.cpuQuotaMicroseconds { host.append(("CpuQuota", .integer(quota))) }
        let pidsOption = try? BuiltInRuntimeOptions.pidsLimit(of: spec, runtime: "Docker")
        if let pids = pidsOption ?? limits.pidsLimit ?? configuration.pidsLimit { host.append(("PidsLimit", .integer(pids))) }
        if let cpuTime = limits.cpuTimeLimitSeconds {
            host.append(("Ulimits", .array([.object(JSONObject([("Name", .string("cpu")), ("Soft", .integer(cpuTime)), ("Hard", .integer(cpuTime))]))])))
        }
        if !spec.mounts.isEmpty {
            host.append(("Mounts", .array(spec.mounts.map { mount in
                var m: [(String, JSONValue)] = [("Type", .string(mount.kind.rawValue)), ("Target", .string(mount.target)), ("ReadOnly", .bool(mount.readOnly))]
                if mount.kind != .tmpfs { m.append(("Source", .string(mount.source))) } else {
                    m.append(("TmpfsOptions", .object(JSONObject([("SizeBytes", .integer(configuration.tmpfsSizeBytes))]))))
                }
                return .object(JSONObject(m))
            })))
        }
        if let runtime = spec.options["oci_runtime"]?.stringValue ?? configuration.ociRuntime { host.append(("Runtime", .string(runtime))) }
        if let driver = configuration.logDriver {
            let options = configuration.logOptions.sorted { $0.key < $1.key }.map { ($0.key, JSONValue.string($0.value)) }
            host.append(("LogConfig", .object(JSONObject([("Type", .string(driver)), ("Config", .object(JSONObject(options)))]))))
        }
        var body: [(String, JSONValue)] = [("Image", .string(reference.description)), ("Env", .array(env)), ("Labels", .object(JSONObject(labels)))]
        if let exposed { body.append(("ExposedPorts", .object(exposed))) }
        body.append(("HostConfig", .object(JSONObject(host))))
        return .object(JSONObject(body))
    }

    public func status(of backend: BackendID) async throws(RuntimeError) -> RuntimeStatus {
        let response = try await client.call(.GET, "/containers/\(BackendSpec.containerName(for: backend))/json")
        if response.status == 404 { return .unknown }
        guard response.status == 200, let info = response.json?.objectValue else {
            throw RuntimeError(.internal, "Docker could not inspect backend \(backend): \(response.message)")
        }
        let labels = info["Config"]?.objectValue?["Labels"]?.objectValue
        guard labels?[Self.droneLabel]?.stringValue == droneID.rawValue else { return .unknown }
        let state = info["State"]?.objectValue
        if state?["Running"]?.boolValue == true {
            return .running(address: Self.address(info: info))
        }
        let statusText = state?["Status"]?.stringValue ?? ""
        if statusText == "created" { return .created }
        let code = Int32(clamping: state?["ExitCode"]?.int64Value ?? 0)
        if state?["OOMKilled"]?.boolValue == true { return .killed(signal: 9, outOfMemory: true) }
        if code == 137 { return .killed(signal: 9, outOfMemory: false) }
        return .exited(code: code)
    }

    public func mainProcessID(of backend: BackendID) async throws(RuntimeError) -> Int32? {
        let response = try await client.call(.GET, "/containers/\(BackendSpec.containerName(for: backend))/json")
        guard response.status == 200, let info = response.json?.objectValue,
              info["Config"]?.objectValue?["Labels"]?.objectValue?[Self.droneLabel]?.stringValue == droneID.rawValue,
              let pid = info["State"]?.objectValue?["Pid"]?.int64Value, pid > 0, pid <= Int64(Int32.max) else { return nil }
        return Int32(pid)
    }

    static func address(info: JSONObject) -> BackendAddress? {
        let labels = info["Config"]?.objectValue?["Labels"]?.objectValue
        guard let port = labels?[portLabel]?.stringValue.flatMap(UInt16.init) else { return nil }
        if let host = labels?[addressLabel]?.stringValue { return BackendAddress(host: host, port: port) }
        let network = info["NetworkSettings"]?.objectValue
        if let bindings = network?["Ports"]?.objectValue?["\(port)/tcp"]?.arrayValue, let first = bindings.first?.objectValue,
           let hostPort = first["HostPort"]?.stringValue.flatMap(UInt16.init) {
            let hostIP = first["HostIp"]?.stringValue ?? "127.0.0.1"
            return BackendAddress(host: hostIP.isEmpty || hostIP == "0.0.0.0" ? "127.0.0.1" : hostIP, port: hostPort)
        }
        if let networks = network?["Networks"]?.objectValue {
            for member in networks.members {
                if let ip = member.value.objectValue?["IPAddress"]?.stringValue, !ip.isEmpty { return BackendAddress(host: ip, port: port) }
            }
        }
        return nil
    }

    /// Whether the container of `backend` exists and belongs to this drone (another drone's
    /// container with that name is never touched).
    func owns(_ backend: BackendID) async throws(RuntimeError) -> Bool {
        let response = try await client.call(.GET, "/containers/\(BackendSpec.containerName(for: backend))/json")
        if response.status == 404 { return false }
        guard response.status == 200 else {
            throw RuntimeError(.internal, "Docker could not inspect backend \(backend): \(response.message)")
        }
        return response.json?.objectValue?["Config"]?.objectValue?["Labels"]?.objectValue?[Self.droneLabel]?.stringValue == droneID.rawValue
    }

    public func stop(_ backend: BackendID, grace: Duration) async throws(RuntimeError) {
        guard try await owns(backend) else { return }
        let seconds = max(0, Int(grace.components.seconds) + (grace.components.attoseconds > 0 ? 1 : 0))
        let response = try await client.call(.POST, "/containers/\(BackendSpec.containerName(for: backend))/stop", query: [("t", String(seconds))], timeout: .seconds(Int64(seconds) + 60))
        switch response.status {
        case 204, 304, 404: return
        default: throw RuntimeError(.internal, "Docker could not stop backend \(backend): \(response.message)")
        }
    }

    public func remove(_ backend: BackendID) async throws(RuntimeError) {
        guard try await owns(backend) else { return }
        let response = try await client.call(.DELETE, "/containers/\(BackendSpec.containerName(for: backend))", query: [("force", "1"), ("v", "1")])
        switch response.status {
        case 204, 404: return
        case 409 where response.message.contains("already in progress"): return
        default: throw RuntimeError(.internal, "Docker could not remove backend \(backend): \(response.message)")
        }
    }

    // MARK: Observation

    public func events() -> AsyncStream<RuntimeEvent> { eventHub.subscribe() }

    /// Native: woken by the `/events` stream's `die` and `oom` for the backend (and by the
    /// stream reopening), then the container's state says how it ended.
    public func wait(for backend: BackendID) async throws(RuntimeError) -> RuntimeStatus {
        eventHub.startReading()
        return try await eventHub.exits.wait(for: backend) { () async throws(RuntimeError) -> RuntimeStatus in try await self.status(of: backend) }
    }

    public func logs(of backend: BackendID, follow: Bool) -> AsyncThrowingStream<LogLine, any Error> {
        let client = self.client
        let name = BackendSpec.containerName(for: backend)
        return AsyncThrowingStream { continuation in
            let task = Task {
                do throws(RuntimeError) {
                    guard try await self.owns(backend) else { throw RuntimeError(.notFound, "No backend \(backend) of this drone in Docker.") }
                    let (status, body) = try await client.stream(.GET, "/containers/\(name)/logs", query: [("stdout", "1"), ("stderr", "1"), ("timestamps", "1"), ("follow", follow ? "1" : "0")])
                    if status == 404 { throw RuntimeError(.notFound, "No backend \(backend) in Docker.") }
                    var demux = DockerLogDemultiplexer(timestamps: true)
                    do {
                        for try await chunk in body {
                            for line in demux.feed(chunk.readableBytesView) { continuation.yield(line) }
                        }
                    } catch {
                        throw RuntimeError(.unavailable, "The log stream of \(backend) broke off.", underlying: error)
                    }
                    for line in demux.finish() { continuation.yield(line) }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    public func stats(of backend: BackendID) async throws(RuntimeError) -> ResourceSample {
        guard try await owns(backend) else { throw RuntimeError(.notFound, "No backend \(backend) of this drone in Docker.") }
        let response = try await client.call(.GET, "/containers/\(BackendSpec.containerName(for: backend))/stats", query: [("stream", "false")])
        if response.status == 404 { throw RuntimeError(.notFound, "No backend \(backend) in Docker.") }
        guard response.status == 200, let json = response.json else {
            throw RuntimeError(.internal, "Docker stats of \(backend) failed: \(response.message)")
        }
        return try DockerStatsCalculator.sample(from: json)
    }

    public func list() async throws(RuntimeError) -> [RuntimeHandle] {
        let filters = JSONWriter.string(.object(JSONObject([("label", .array([.string("\(Self.managedLabel)=true"), .string("\(Self.droneLabel)=\(droneID.rawValue)")]))])))
        let response = try await client.call(.GET, "/containers/json", query: [("all", "1"), ("filters", filters)])
        guard response.status == 200, let containers = response.json?.arrayValue else {
            throw RuntimeError(.internal, "Docker could not list containers: \(response.message)")
        }
        var handles: [RuntimeHandle] = []
        for container in containers {
            guard let object = container.objectValue, let id = object["Id"]?.stringValue,
                  let name = object["Names"]?.arrayValue?.first?.stringValue, let backend = BackendSpec.backendID(fromContainerName: name) else { continue }
            var address: BackendAddress?
            if case .running(let a) = try await status(of: backend) { address = a }
            handles.append(RuntimeHandle(backendID: backend, runtime: Self.name, runtimeID: id, address: address))
        }
        return handles.sorted { $0.backendID < $1.backendID }
    }
}
