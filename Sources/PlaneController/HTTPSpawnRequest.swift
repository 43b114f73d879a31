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

    public init() {}

    static let knownFields = ["lock", "require_bearer_token", "port", "env", "grace_period_seconds", "volume_mounts"]

    /// Parses a body; the error message names the field and what was wrong.
    public static func parse(_ body: [UInt8]) throws(ControllerError) -> HTTPSpawnRequest {
        var request = HTTPSpawnRequest()
        if body.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) { return request }
        let value: JSONValue
        do {
            value = try JSONParser.parse(body, limits: .wire)
        } catch {
            throw ControllerError(.invalidRequest, "The body is not valid JSON: \(error.message)")
        }
        guard let object = value.objectValue else {
            throw ControllerError(.invalidRequest, "The body must be a JSON object (e.g. {} or {\"lock\":\"doc-1\"}), not \(value.kindName).")
        }
        for key in object.keys where !knownFields.contains(key) {
            throw ControllerError(.invalidRequest, "Unknown field '\(key)'; the fields are \(knownFields.joined(separator: ", ")).")
        }
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
        let executable = DockerExecutableConfig(image: service.image, env: environment, port: port, volumeMounts: volumeMounts)
        return ScheduleRequest(cluster: cluster, maxIdleSeconds: DurationSeconds(gracePeriodSeconds), executable: executable,
                               requireBearerToken: requireBearerToken, lock: lock)
    }
}
