/// The `[limits]` section of `controller.toml` and `drone.toml`: bounds on wire messages
/// and spawns, the same keys in both files.
public struct InputLimits: Sendable, Hashable {
    public var json: JSONLimits
    public var spawn: SpawnLimits

    public init(json: JSONLimits = .wire, spawn: SpawnLimits = SpawnLimits()) {
        self.json = json
        self.spawn = spawn
    }

    /// Reads `[limits]` (every key optional; out of range is a problem naming the key and
    /// its range).
    public static func read(_ section: ConfigReader?) -> InputLimits {
        var limits = InputLimits()
        guard let section else { return limits }
        if let bytes = section.int("max_message_bytes", in: 1024...(64 << 20)) { limits.json.maxBytes = bytes }
        if let depth = section.int("max_json_depth", in: 8...JSONParser.maximumDepth) { limits.json.maxDepth = depth }
        if let bytes = section.int("max_json_string_bytes", in: 256...(64 << 20)) { limits.json.maxStringBytes = bytes }
        if let bytes = section.int("max_env_bytes", in: 0...(16 << 20)) { limits.spawn.maxEnvBytes = bytes }
        if let bytes = section.int("max_metadata_bytes", in: 0...(16 << 20)) { limits.spawn.maxMetadataBytes = bytes }
        return limits
    }
}
