/// The calls of the runtime plugin protocol; the drone sends them, the plugin answers.
public enum PluginMethod: String, Sendable, Hashable, CaseIterable {
    /// First call on every connection: protocol version, runtime name and capabilities.
    case hello
    case prepare, start, status, stop, remove, stats, list
    /// Streams: answered with items until `end` (or an error).
    case events, logs
    /// Ends a stream the drone no longer reads.
    case cancel

    /// Calls a plugin must answer; the others it lists in its capabilities' `calls`.
    public static let required: Set<PluginMethod> = [.hello, .start, .status, .stop, .remove, .list]

    /// Calls a plugin may leave out (declared in `calls` when it supports them).
    public static let optional: [PluginMethod] = [.prepare, .events, .logs, .stats]

    /// Whether answers come as a stream of items.
    public var isStream: Bool { self == .events || self == .logs }
}

/// The protocol versions this build speaks.
public enum PluginProtocolVersion {
    public static let supported: [Int] = [1]
}
