import PlaneCore

/// One service the HTTP API can spawn (`[http.services]`): its image, and what a caller may
/// add to it. Callers of the API choose env and mounts only as far as this allows: by
/// default neither (a mount is a path of the drone's host; env can change what the image
/// runs), so the API cannot be used to mount the drone's files into a backend.
public struct HTTPServiceConfiguration: Sendable, Hashable, ExpressibleByStringLiteral {
    /// The image every spawn of the service runs.
    public var image: String
    /// Environment every spawn gets (`env`); a caller cannot override these names.
    public var env: [String: String] = [:]
    /// Names a caller may set in `env` (`allowed_env`); `*` allows every name.
    public var allowedEnv: Set<String> = []
    /// What a caller's `volume_mounts` may name (`allowed_mount_sources`): a host path
    /// (starting with `/`) allows bind mounts of it and below it; any other entry allows the
    /// named Docker volume.
    public var allowedMountSources: [String] = []
    /// Where and how every spawn of the service runs (issue 14): `runtime_class`, `pool`,
    /// `runtime_options`, `memory_limit_bytes`, `readiness_path` and
    /// `readiness_timeout_secs`, `max_lifetime_secs`.
    public var runtimeClass: FleetLabel?
    public var pool: FleetLabel?
    public var runtimeOptions = JSONObject()
    public var memoryLimitBytes: Int64?
    public var readiness: ReadinessCheck?
    public var maxLifetimeSeconds: DurationSeconds?
    /// What a caller may choose instead (`allowed_runtime_classes`, `allowed_pools`,
    /// `allowed_runtime_options`; `*` allows any). By default nothing: a class, a pool or an
    /// option can weaken the sandbox or reach drones the service was not meant for.
    public var allowedRuntimeClasses: Set<String> = []
    public var allowedPools: Set<String> = []
    public var allowedRuntimeOptions: Set<String> = []
    /// Pre-started backends of the service kept on each drone that can run it (`warm_pool`,
    /// issue 15); `POST /ctrl/connect` takes one when the spawn asks for nothing else.
    public var warmPool = 0

    public init(image: String, env: [String: String] = [:], allowedEnv: Set<String> = [], allowedMountSources: [String] = []) {
        self.image = image
        self.env = env
        self.allowedEnv = allowedEnv
        self.allowedMountSources = allowedMountSources
    }

    /// v0.3.10's form, `name = "image"`: the image alone, nothing from callers.
    public init(stringLiteral image: String) { self.init(image: image) }

    /// The keys a mount object may have; anything else (driver options, propagation, ...)
    /// could reach beyond the named source, so it is refused.
    static let mountKeys: Set<String> = ["Type", "Source", "Target", "ReadOnly"]

    /// The environment of a spawn: the service's, plus what the caller may set. Throws
    /// naming the first name the caller may not set.
    func environment(from caller: [String: String], service name: String) throws(ControllerError) -> [String: String] {
        var result = env
        for key in caller.keys.sorted() {
            guard allowedEnv.contains("*") || allowedEnv.contains(key), env[key] == nil else {
                throw ControllerError(.forbidden, "Service '\(name)' does not let callers set env '\(key)'; the operator allows names with [http.services.\(name)] allowed_env.")
            }
            result[key] = caller[key]
        }
        return result
    }

    /// The caller's runtime class, pool and options over the service's; throws `.forbidden`
    /// naming the first the service does not let callers choose.
    func placement(runtimeClass callerClass: FleetLabel?, pool callerPool: FleetLabel?, options callerOptions: JSONObject,
                   service name: String) throws(ControllerError) -> (FleetLabel?, FleetLabel?, JSONObject) {
        if let callerClass, callerClass != runtimeClass, !allowedRuntimeClasses.contains("*"), !allowedRuntimeClasses.contains(callerClass.rawValue) {
            throw ControllerError(.forbidden, "Service '\(name)' does not let callers choose runtime class '\(callerClass)'; the operator allows classes with [http.services.\(name)] allowed_runtime_classes.")
        }
        if let callerPool, callerPool != pool, !allowedPools.contains("*"), !allowedPools.contains(callerPool.rawValue) {
            throw ControllerError(.forbidden, "Service '\(name)' does not let callers choose pool '\(callerPool)'; the operator allows pools with [http.services.\(name)] allowed_pools.")
        }
        var options = runtimeOptions
        for (key, value) in callerOptions.members {
            guard allowedRuntimeOptions.contains("*") || allowedRuntimeOptions.contains(key) else {
                throw ControllerError(.forbidden, "Service '\(name)' does not let callers set runtime option '\(key)'; the operator allows options with [http.services.\(name)] allowed_runtime_options.")
            }
            options[key] = value
        }
        return (callerClass ?? runtimeClass, callerPool ?? pool, options)
    }

    /// Throws naming the first mount this service does not allow.
    func check(_ mounts: [VolumeMount], service name: String) throws(ControllerError) {
        let hint = "the operator allows sources with [http.services.\(name)] allowed_mount_sources"
        for mount in mounts {
            if let key = mount.json.keys.first(where: { !Self.mountKeys.contains($0) }) {
                throw ControllerError(.forbidden, "Volume mount field '\(key)' is not accepted through the HTTP API; only Type, Source, Target and ReadOnly.")
            }
            guard let source = mount.source, allows(type: mount.type, source: source) else {
                throw ControllerError(.forbidden, "Service '\(name)' does not allow mounting \(mount.type ?? "?") '\(mount.source ?? "")'; \(hint).")
            }
        }
    }

    func allows(type: String?, source: String) -> Bool {
        switch type {
        case "bind":
            guard let path = Self.normalizedAbsolutePath(source) else { return false }
            return allowedMountSources.contains { allowed in
                guard allowed.hasPrefix("/"), let root = Self.normalizedAbsolutePath(allowed) else { return false }
                return path == root || root == "/" || path.hasPrefix(root + "/")
            }
        case "volume":
            return !source.isEmpty && !source.contains("/") && allowedMountSources.contains(source)
        default:
            return false
        }
    }

    /// `/a/b` for `/a//b/./`; nil for a relative path or one with `..` (which could climb out
    /// of an allowed directory).
    public static func normalizedAbsolutePath(_ path: String) -> String? {
        guard path.hasPrefix("/") else { return nil }
        var parts: [Substring] = []
        for part in path.split(separator: "/", omittingEmptySubsequences: true) where part != "." {
            if part == ".." { return nil }
            parts.append(part)
        }
        return "/" + parts.joined(separator: "/")
    }
}
