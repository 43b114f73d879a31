import ContainerRuntime
import PlaneCore

/// The JSON of the runtime types on the plugin protocol (docs/runtime-plugins.md, "Types"):
/// snake_case keys, times in nanoseconds since the Unix epoch, durations in milliseconds.
public enum PluginWire {
    // MARK: BackendSpec

    public static func json(_ spec: BackendSpec) -> JSONValue {
        var environment = JSONObject()
        for (key, value) in spec.effectiveEnvironment.sorted(by: { $0.key < $1.key }) { environment[key] = .string(value) }
        var object = JSONObject([
            ("backend_id", .string(spec.backendID.rawValue)),
            ("drone_id", .string(spec.droneID.rawValue)),
            ("image", .string(spec.image)),
            ("env", .object(environment)),
            ("port", .integer(spec.port)),
            ("network", json(spec.network)),
            ("limits", json(spec.limits)),
            ("pull_policy", .string(spec.pullPolicy.rawValue)),
        ])
        if let credentials = spec.credentials {
            object["credentials"] = .object(JSONObject([("username", .string(credentials.username)), ("password", .string(credentials.password))]))
        }
        object["mounts"] = .array(spec.mounts.map { mount in
            .object(JSONObject([("kind", .string(mount.kind.rawValue)), ("source", .string(mount.source)), ("target", .string(mount.target)),
                                ("read_only", .bool(mount.readOnly))]))
        })
        object["options"] = .object(spec.options)
        return .object(object)
    }

    public static func spec(_ value: JSONValue) throws(PluginProtocolError) -> BackendSpec {
        let fields = try PluginFields(value, "spec")
        let droneText = try fields.string("drone_id")
        let drone: DroneID
        do { drone = try DroneID(droneText) } catch { throw PluginProtocolError(.malformedPayload, "spec: \"drone_id\" is not a drone id: \(error.message)") }
        var environment: [String: String] = [:]
        for member in try fields.optionalObject("env")?.members ?? [] {
            guard let text = member.value.stringValue else { throw PluginProtocolError(.malformedPayload, "spec: env \"\(member.key)\" must be a string.") }
            environment[member.key] = text
        }
        guard let port = UInt16(exactly: try fields.integer("port")) else { throw PluginProtocolError(.malformedPayload, "spec: \"port\" must be 1 to 65535.") }
        guard let policy = DockerPullPolicy(rawValue: try fields.optionalString("pull_policy") ?? "IfNotPresent") else {
            throw PluginProtocolError(.malformedPayload, "spec: \"pull_policy\" must be IfNotPresent, Always or Never.")
        }
        var credentials: RegistryCredentials?
        if let object = try fields.optionalObject("credentials") {
            let nested = try PluginFields(.object(object), "spec.credentials")
            credentials = RegistryCredentials(username: try nested.string("username"), password: try nested.string("password"))
        }
        var mounts: [MountSpec] = []
        for item in try fields.array("mounts") {
            let mount = try PluginFields(item, "spec.mounts[]")
            guard let kind = MountSpec.Kind(rawValue: try mount.string("kind")) else { throw PluginProtocolError(.malformedPayload, "spec.mounts[]: \"kind\" must be bind, volume or tmpfs.") }
            mounts.append(MountSpec(kind: kind, source: try mount.optionalString("source") ?? "", target: try mount.string("target"),
                                    readOnly: try mount.bool("read_only", default: false)))
        }
        environment.removeValue(forKey: "PORT")  // effectiveEnvironment adds it back from `port`
        return BackendSpec(backendID: try fields.backendID(), droneID: drone, image: try fields.string("image"), env: environment, port: port,
                           network: try network(fields.object["network"] ?? .null), limits: try limits(fields.object["limits"] ?? .object(JSONObject())),
                           pullPolicy: policy, credentials: credentials, mounts: mounts, options: try fields.optionalObject("options") ?? JSONObject())
    }

    public static func json(_ network: NetworkPlan) -> JSONValue {
        switch network {
        case .host(let address): .object(JSONObject([("mode", .string("host")), ("address", .string(address))]))
        case .bridge(let name): .object(JSONObject([("mode", .string("bridge")), ("network", name.map(JSONValue.string) ?? .null)]))
        case .publish(let hostAddress): .object(JSONObject([("mode", .string("publish")), ("host_address", .string(hostAddress))]))
        }
    }

    public static func network(_ value: JSONValue) throws(PluginProtocolError) -> NetworkPlan {
        let fields = try PluginFields(value, "spec.network")
        switch try fields.string("mode") {
        case "host": return .host(address: try fields.string("address"))
        case "bridge": return .bridge(network: try fields.optionalString("network"))
        case "publish": return .publish(hostAddress: try fields.string("host_address"))
        case let other: throw PluginProtocolError(.malformedPayload, "spec.network: mode \"\(other)\" is not host, bridge or publish.")
        }
    }

    public static func json(_ limits: ResourceLimitsSpec) -> JSONValue {
        var object = JSONObject()
        if let value = limits.memoryBytes { object["memory_bytes"] = .integer(value) }
        if let value = limits.cpuPeriodMicroseconds { object["cpu_period_us"] = .integer(value) }
        if let value = limits.cpuQuotaMicroseconds { object["cpu_quota_us"] = .integer(value) }
        if let value = limits.cpuTimeLimitSeconds { object["cpu_time_limit_secs"] = .integer(value) }
        if let value = limits.pidsLimit { object["pids_limit"] = .integer(value) }
        return .object(object)
    }

    public static func limits(_ value: JSONValue) throws(PluginProtocolError) -> ResourceLimitsSpec {
        let fields = try PluginFields(value, "spec.limits")
        let cpuTime = try fields.optionalInteger("cpu_time_limit_secs")
        if let cpuTime, cpuTime < 0 { throw PluginProtocolError(.malformedPayload, "spec.limits: \"cpu_time_limit_secs\" must not be negative.") }
        return ResourceLimitsSpec(memoryBytes: try fields.optionalInteger("memory_bytes"), cpuPeriodMicroseconds: try fields.optionalInteger("cpu_period_us"),
                                  cpuQuotaMicroseconds: try fields.optionalInteger("cpu_quota_us"), cpuTimeLimitSeconds: cpuTime.map { UInt64($0) },
                                  pidsLimit: try fields.optionalInteger("pids_limit"))
    }

    // MARK: Handles, status, events, logs, stats

    public static func json(_ address: BackendAddress?) -> JSONValue {
        guard let address else { return .null }
        return .object(JSONObject([("host", .string(address.host)), ("port", .integer(address.port))]))
    }

    public static func address(_ value: JSONValue?) throws(PluginProtocolError) -> BackendAddress? {
        guard let value, !value.isNull else { return nil }
        let fields = try PluginFields(value, "address")
        guard let port = UInt16(exactly: try fields.integer("port")) else { throw PluginProtocolError(.malformedPayload, "address: \"port\" must be 0 to 65535.") }
        return BackendAddress(host: try fields.string("host"), port: port)
    }

    public static func json(_ handle: RuntimeHandle) -> JSONValue {
        .object(JSONObject([("backend_id", .string(handle.backendID.rawValue)), ("runtime_id", .string(handle.runtimeID)), ("address", json(handle.address))]))
    }

    /// A handle the plugin reported, attributed to the runtime `runtime` (the name it was
    /// loaded under).
    public static func handle(_ value: JSONValue, runtime: String) throws(PluginProtocolError) -> RuntimeHandle {
        let fields = try PluginFields(value, "handle")
        return RuntimeHandle(backendID: try fields.backendID(), runtime: runtime, runtimeID: try fields.optionalString("runtime_id") ?? "",
                             address: try address(fields.object["address"]))
    }

    public static func json(_ status: RuntimeStatus) -> JSONValue {
        switch status {
        case .unknown: .object(JSONObject([("state", .string("unknown"))]))
        case .created: .object(JSONObject([("state", .string("created"))]))
        case .running(let address): .object(JSONObject([("state", .string("running")), ("address", json(address))]))
        case .exited(let code): .object(JSONObject([("state", .string("exited")), ("code", .integer(code))]))
        case .killed(let signal, let outOfMemory):
            .object(JSONObject([("state", .string("killed")), ("signal", signal.map { .integer($0) } ?? .null), ("oom", .bool(outOfMemory))]))
        }
    }

    public static func status(_ value: JSONValue) throws(PluginProtocolError) -> RuntimeStatus {
        let fields = try PluginFields(value, "status")
        switch try fields.string("state") {
        case "unknown": return .unknown
        case "created": return .created
        case "running": return .running(address: try address(fields.object["address"]))
        case "exited": return .exited(code: try int32(fields.integer("code"), "status.code"))
        case "killed": return .killed(signal: try fields.optionalInteger("signal").map { v throws(PluginProtocolError) in try int32(v, "status.signal") },
                                      outOfMemory: try fields.bool("oom", default: false))
        case let other: throw PluginProtocolError(.malformedPayload, "status: state \"\(other)\" is not unknown, created, running, exited or killed.")
        }
    }

    public static func json(_ event: RuntimeEvent) -> JSONValue {
        var object = JSONObject([("backend_id", .string(event.backendID.rawValue))])
        switch event.kind {
        case .exited(let code):
            object["kind"] = .string("exited")
            object["code"] = .integer(code)
        case .outOfMemory:
            object["kind"] = .string("oom")
        }
        object["time_ns"] = .integer(event.time.nanosecondsSinceEpoch)
        return .object(object)
    }

    public static func event(_ value: JSONValue) throws(PluginProtocolError) -> RuntimeEvent {
        let fields = try PluginFields(value, "event")
        let time = try fields.optionalInteger("time_ns").map(Timestamp.init(nanosecondsSinceEpoch:)) ?? .now()
        switch try fields.string("kind") {
        case "exited": return RuntimeEvent(backendID: try fields.backendID(), kind: .exited(code: try int32(fields.integer("code"), "event.code")), time: time)
        case "oom": return RuntimeEvent(backendID: try fields.backendID(), kind: .outOfMemory, time: time)
        case let other: throw PluginProtocolError(.malformedPayload, "event: kind \"\(other)\" is not exited or oom.")
        }
    }

    public static func json(_ line: LogLine) -> JSONValue {
        .object(JSONObject([("stream", .string(line.stream.rawValue)), ("text", .string(line.text)),
                            ("time_ns", line.time.map { .integer($0.nanosecondsSinceEpoch) } ?? .null)]))
    }

    public static func logLine(_ value: JSONValue) throws(PluginProtocolError) -> LogLine {
        let fields = try PluginFields(value, "log line")
        guard let stream = LogLine.Stream(rawValue: try fields.string("stream")) else { throw PluginProtocolError(.malformedPayload, "log line: \"stream\" must be stdout or stderr.") }
        return LogLine(stream: stream, text: try fields.string("text"), time: try fields.optionalInteger("time_ns").map(Timestamp.init(nanosecondsSinceEpoch:)))
    }

    public static func json(_ sample: ResourceSample) -> JSONValue {
        .object(JSONObject([("cpu_percent", .double(sample.cpuPercent)), ("memory_bytes", .integer(sample.memoryBytes)),
                            ("memory_limit_bytes", .integer(sample.memoryLimitBytes)), ("time_ns", .integer(sample.time.nanosecondsSinceEpoch))]))
    }

    public static func sample(_ value: JSONValue) throws(PluginProtocolError) -> ResourceSample {
        let fields = try PluginFields(value, "stats")
        let memory = try fields.integer("memory_bytes"), limit = try fields.integer("memory_limit_bytes")
        guard memory >= 0, limit >= 0 else { throw PluginProtocolError(.malformedPayload, "stats: memory values must not be negative.") }
        return ResourceSample(cpuPercent: try fields.double("cpu_percent"), memoryBytes: UInt64(memory), memoryLimitBytes: UInt64(limit),
                              time: try fields.optionalInteger("time_ns").map(Timestamp.init(nanosecondsSinceEpoch:)) ?? .now())
    }

    static func int32(_ value: Int64, _ field: String) throws(PluginProtocolError) -> Int32 {
        guard let narrow = Int32(exactly: value) else { throw PluginProtocolError(.malformedPayload, "\(field) is out of range.") }
        return narrow
    }

    // MARK: Errors

    public static func failure(_ error: RuntimeError) -> PluginFailure {
        PluginFailure(code: error.code.rawValue, message: error.message, cause: error.cause)
    }

    /// The `RuntimeError` of a plugin's error; an unknown code becomes `internal`.
    public static func runtimeError(_ failure: PluginFailure, plugin: String) -> RuntimeError {
        let known: Set<String> = ["image_unavailable", "invalid_spec", "not_found", "already_exists", "unavailable", "unsupported", "timeout", "internal"]
        let code = known.contains(failure.code) ? RuntimeError.Code(rawValue: failure.code) : .internal
        return RuntimeError(code, failure.message, cause: failure.cause ?? (code == .internal && failure.code != "internal" ? "plugin \(plugin) answered code \(failure.code)" : nil))
    }
}
