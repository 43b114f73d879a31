import PlaneCore

/// The body of `POST /service/{name}/spawn` (later Plane 0.3.x's API): every field is
/// optional and `{}` (or an empty body) is valid. Unknown fields are rejected, so a typo
/// does not silently do nothing.
public struct HTTPSpawnRequest: Sendable, Hashable {
    public var lock: LockName?
    public var requireBearerToken = false
    public var port: UInt16?
    public var env: [String: String] = [:]
    /// Idle time before the backend is shut down (`max_idle_secs` on the wire).
    public var gracePeriodSeconds: UInt64 = 60
    public var volumeMounts: [VolumeMount] = []
    /// Issue 14's fields, as on the wire; the service decides which a caller may set.
    public var runtimeClass: FleetLabel?
    public var pool: FleetLabel?
    public var runtimeOptions = JSONObject()
    public var readiness: ReadinessCheck?
    public var maxLifetimeSeconds: DurationSeconds?

    public init() {}

    static let knownFields = ["lock", "require_bearer_token", "port", "env", "grace_period_seconds", "volume_mounts",
                              "runtime_class", "pool", "runtime_options", "readiness", "max_lifetime_secs"]

    /// Parses a body; the error message names the field and what was wrong.
    public static func parse(_ body: [UInt8]) throws(ControllerError) -> HTTPSpawnRequest {
        var request = HTTPSpawnRequest()
        if body.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) { return request }
        let object = try HTTPJSONBody.object(body, knownFields: knownFields, example: #"{} or {"lock":"doc-1"}"#)
        func field<T>(_ key: String, _ what: String, _ convert: (JSONValue) -> T?) throws(ControllerError) -> T? {
            guard let raw = object[key], !raw.isNull else { return nil }
            guard let converted = convert(raw) else { throw ControllerError(.invalidRequest, "Field '\(key)' must be \(what), not \(raw.kindName).") }
            return converted
        }
        if let lock = try field("lock", "a string", \.stringValue) {
            do { request.lock = try LockName(lock) } catch { throw ControllerError(.invalidRequest, "Field 'lock': \(error.message)") }
        }
        request.requireBearerToken = try field("require_bearer_token", "true or false", \.boolValue) ?? false
        if let port = try field("port", "an integer from 1 to 65535", { $0.int64Value.flatMap { (1...65535).contains($0) ? UInt16($0) : nil } }) {
            request.port = port
        }
        if let env = try field("env", "an object of strings", { value -> [String: String]? in
            guard let members = value.objectValue?.members else { return nil }
            var env: [String: String] = [:]
            for member in members {
                guard let text = member.value.stringValue else { return nil }
                env[member.key] = text
            }
            return env
        }) { request.env = env }
        if let grace = try field("grace_period_seconds", "a whole number of seconds", { $0.int64Value.flatMap { $0 >= 0 ? UInt64($0) : nil } }) {
            request.gracePeriodSeconds = grace
        }
        do {
            if let name = try field("runtime_class", "a string", \.stringValue) { request.runtimeClass = try FleetLabel(name) }
            if let name = try field("pool", "a string", \.stringValue) { request.pool = try FleetLabel(name) }
        } catch let error as PlaneCoreError {
            throw ControllerError(.invalidRequest, error.message)
        } catch let error as ControllerError {
            throw error
        } catch {
            throw ControllerError(.invalidRequest, "\(error)")
        }
        if let options = try field("runtime_options", "an object", \.objectValue) { request.runtimeOptions = options }
        if let readiness = object["readiness"], !readiness.isNull {
            do { request.readiness = try WireDecoder().decode(ReadinessCheck.self, from: readiness) } catch {
                throw ControllerError(.invalidRequest, "Field 'readiness' must be {\"path\": \"/healthz\", \"timeout_secs\": 30}: \(error.message)")
            }
        }
        if let lifetime = try field("max_lifetime_secs", "a whole number of seconds from 1", { $0.int64Value.flatMap { $0 >= 1 ? UInt64($0) : nil } }) {
            request.maxLifetimeSeconds = DurationSeconds(lifetime)
        }
        if let mounts = object["volume_mounts"], !mounts.isNull {
            do { request.volumeMounts = try WireDecoder().decode([VolumeMount].self, from: mounts) } catch {
                throw ControllerError(.invalidRequest, "Field 'volume_mounts': \(error.message)")
            }
        }
        return request
    }

    /// The wire request for a spawn of `service` in `cluster`; throws `.forbidden` naming
    /// an env name or mount the service does not let callers choose.
    public func scheduleRequest(cluster: ClusterName, service: HTTPServiceConfiguration, named name: String) throws(ControllerError) -> ScheduleRequest {
        let environment = try service.environment(from: env, service: name)
        try service.check(volumeMounts, service: name)
        let (runtimeClass, pool, options) = try service.placement(runtimeClass: runtimeClass, pool: pool, options: runtimeOptions, service: name)
        var executable = DockerExecutableConfig(image: service.image, env: environment, port: port, volumeMounts: volumeMounts)
        executable.resourceLimits.memoryLimitBytes = service.memoryLimitBytes
        return ScheduleRequest(cluster: cluster, maxIdleSeconds: DurationSeconds(gracePeriodSeconds), executable: executable,
                               requireBearerToken: requireBearerToken, lock: lock, runtimeClass: runtimeClass, pool: pool, runtimeOptions: options,
                               readiness: readiness ?? service.readiness, maxLifetimeSeconds: maxLifetimeSeconds ?? service.maxLifetimeSeconds)
    }
}
