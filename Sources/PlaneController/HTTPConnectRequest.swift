import PlaneCore

/// The body of `POST /ctrl/connect`: "the process for this key", spawned when none runs.
///
/// ```json
/// {"key": "doc-42", "spawn_config": {"service": "editor"}, "user": "ada"}
/// {"key": "doc-42", "spawn_config": {"image": "registry.example.com/editor:3", "env": {"MODE": "x"},
///   "memory_limit_bytes": 536870912, "runtime_class": "sandbox", "pool": "eu", "runtime_options": {"pids_limit": 256},
///   "max_lifetime_secs": 3600, "max_idle_secs": 300, "readiness": {"path": "/healthz"}}}
/// ```
///
/// `key` is the lock (any controller answers the same live backend for it). With `service`,
/// the service's configuration applies as for `POST /service/{name}/spawn` (the other fields
/// only as far as it lets callers choose); with `image`, the fields as given. Unknown fields
/// are refused.
public struct HTTPConnectRequest: Sendable, Hashable {
    public var key: LockName
    public var service: String?
    public var image: String?
    public var user: String?
    /// `spawn_config` without `service`/`image`: what the caller chose.
    public var spawn = HTTPSpawnRequest()
    /// `max_idle_secs` (default 300).
    public var maxIdleSeconds: UInt64 = 300
    public var memoryLimitBytes: Int64?

    public static let maximumUserLength = 256
    static let knownFields = ["key", "spawn_config", "user"]
    static let knownSpawnFields = ["service", "image", "env", "memory_limit_bytes", "runtime_class", "pool", "runtime_options", "max_lifetime_secs",
                                   "max_idle_secs", "readiness"]

    init(key: LockName) { self.key = key }

    public static func parse(_ body: [UInt8]) throws(ControllerError) -> HTTPConnectRequest {
        let object = try HTTPJSONBody.object(body, knownFields: knownFields, example: #"{"key": "doc-1", "spawn_config": {"service": "name"}}"#)
        guard let keyText = object["key"]?.stringValue else { throw ControllerError(.invalidRequest, "Field 'key' (a string) is required.") }
        var request: HTTPConnectRequest
        do { request = HTTPConnectRequest(key: try LockName(keyText)) } catch { throw ControllerError(.invalidRequest, "Field 'key': \(error.message)") }
        if let user = object["user"], !user.isNull {
            guard let text = user.stringValue, text.utf8.count <= maximumUserLength, !text.unicodeScalars.contains(where: { $0.value < 0x20 }) else {
                throw ControllerError(.invalidRequest, "Field 'user' must be a string of at most \(maximumUserLength) bytes without control characters.")
            }
            request.user = text
        }
        guard let config = object["spawn_config"]?.objectValue else {
            throw ControllerError(.invalidRequest, "Field 'spawn_config' (an object with 'service' or 'image') is required.")
        }
        try HTTPJSONBody.checkFields(of: config, knownFields: knownSpawnFields, prefix: "spawn_config.")
        request.service = config["service"]?.stringValue
        request.image = config["image"]?.stringValue
        guard (request.service == nil) != (request.image == nil) else {
            throw ControllerError(.invalidRequest, "'spawn_config' needs exactly one of 'service' (a configured service's name) and 'image' (a string).")
        }
        if let image = request.image, image.isEmpty || image.utf8.count > 4096 {
            throw ControllerError(.invalidRequest, "'spawn_config.image' must be 1 to 4096 bytes.")
        }
        if let idle = config["max_idle_secs"], !idle.isNull {
            guard let seconds = idle.int64Value, seconds >= 1 else { throw ControllerError(.invalidRequest, "'spawn_config.max_idle_secs' must be a whole number of seconds from 1.") }
            request.maxIdleSeconds = UInt64(seconds)
        }
        if let memory = config["memory_limit_bytes"], !memory.isNull {
            guard let bytes = memory.int64Value, bytes >= 1 << 20 else { throw ControllerError(.invalidRequest, "'spawn_config.memory_limit_bytes' must be an integer of at least 1048576.") }
            request.memoryLimitBytes = bytes
        }
        // The rest has the spawn body's form and checks.
        var rest = JSONObject()
        for key in ["env", "runtime_class", "pool", "runtime_options", "max_lifetime_secs", "readiness"] { if let value = config[key] { rest[key] = value } }
        do {
            request.spawn = try HTTPSpawnRequest.parse(JSONWriter.write(.object(rest)))
        } catch {
            throw ControllerError(.invalidRequest, "In 'spawn_config': \(error.message)")
        }
        return request
    }

    /// The schedule request: the key as lock, a bearer token required (the URL is handed to
    /// users; the token goes with it), `user` in the metadata.
    public func scheduleRequest(cluster: ClusterName, services: [String: HTTPServiceConfiguration]) throws(ControllerError) -> ScheduleRequest {
        var schedule: ScheduleRequest
        if let service {
            guard let configuration = services[service] else {
                let known = services.keys.sorted().joined(separator: ", ")
                throw ControllerError(.notFound, "Unknown service '\(service)'. Configured services: \(known.isEmpty ? "none" : known).")
            }
            schedule = try spawn.scheduleRequest(cluster: cluster, service: configuration, named: service)
            // A caller may lower the service's memory limit, never raise it.
            if let memoryLimitBytes {
                if let limit = configuration.memoryLimitBytes, memoryLimitBytes > limit {
                    throw ControllerError(.forbidden, "Service '\(service)' runs with at most \(limit) bytes of memory ([http.services.\(service)] memory_limit_bytes); ask for that or less.")
                }
                schedule.executable.resourceLimits.memoryLimitBytes = memoryLimitBytes
            }
            // A pre-started backend of the service serves it when the spawn asks for what
            // the pool's backends were started with (the drone compares).
            if configuration.warmPool > 0 { schedule.warmPool = service }
        } else {
            var executable = DockerExecutableConfig(image: image ?? "", env: spawn.env)
            executable.resourceLimits.memoryLimitBytes = memoryLimitBytes
            schedule = ScheduleRequest(cluster: cluster, maxIdleSeconds: DurationSeconds(maxIdleSeconds), executable: executable, runtimeClass: spawn.runtimeClass,
                                       pool: spawn.pool, runtimeOptions: spawn.runtimeOptions, readiness: spawn.readiness, maxLifetimeSeconds: spawn.maxLifetimeSeconds)
        }
        schedule.maxIdleSeconds = DurationSeconds(maxIdleSeconds)
        schedule.lock = key
        schedule.requireBearerToken = true
        if let user { schedule.metadata["user"] = user }
        return schedule
    }

    /// The warm pool of a service with `warm_pool`: what a connect naming the service with
    /// nothing of its own asks for.
    public static func warmPoolDefinition(cluster: ClusterName, service name: String, _ service: HTTPServiceConfiguration) -> WarmPoolDefinition? {
        guard WarmPoolDefinition.isValidName(name) else { return nil }
        var request = HTTPConnectRequest(key: "warm-pool-template")
        request.service = name
        guard let schedule = try? request.scheduleRequest(cluster: cluster, services: [name: service]) else { return nil }
        return WarmPoolDefinition(cluster: cluster, name: name, size: service.warmPool, executable: schedule.executable, runtimeClass: schedule.runtimeClass,
                                  pool: schedule.pool, runtimeOptions: schedule.runtimeOptions, readiness: schedule.readiness)
    }
}
