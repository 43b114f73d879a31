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
