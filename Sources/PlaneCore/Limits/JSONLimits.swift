/// Bounds on a JSON document that came from outside: a NATS message, a key-value entry, an
/// HTTP request body. Going over one is a `PlaneCoreError` with code `limitExceeded` naming
/// the limit's configuration key (`[limits]` in `controller.toml` and `drone.toml`).
public struct JSONLimits: Sendable, Hashable {
    /// `limits.max_message_bytes`: the whole document.
    public var maxBytes: Int
    /// `limits.max_json_depth`: nested arrays and objects (at most `JSONParser.maximumDepth`).
    public var maxDepth: Int
    /// `limits.max_json_string_bytes`: one string (after unescaping) or number.
    public var maxStringBytes: Int

    public init(maxBytes: Int = 1 << 20, maxDepth: Int = 64, maxStringBytes: Int = 256 << 10) {
        self.maxBytes = maxBytes
        self.maxDepth = min(maxDepth, JSONParser.maximumDepth)
        self.maxStringBytes = maxStringBytes
    }

    /// The defaults for wire messages: 1 MiB (NATS's own default payload limit), 64 levels,
    /// 256 KiB per string.
    public static let wire = JSONLimits()

    /// For documents the process wrote itself (its own store): only the parser's fixed
    /// depth bound, so nothing stored is refused after a limit was lowered.
    public static let stored = JSONLimits(maxBytes: .max, maxDepth: JSONParser.maximumDepth, maxStringBytes: .max)

    public static let maxBytesKey = "limits.max_message_bytes"
    public static let maxDepthKey = "limits.max_json_depth"
    public static let maxStringBytesKey = "limits.max_json_string_bytes"
}
