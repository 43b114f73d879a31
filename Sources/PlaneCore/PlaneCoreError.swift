/// The one error type of `PlaneCore`: wire decoding, identifier validation, timestamps.
///
/// `message` is written for the person who sent the bad input and says what to change.
public struct PlaneCoreError: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Code: Sendable, Hashable, RawRepresentable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// The bytes are not JSON.
        public static let malformedJSON = Code(rawValue: "malformed_json")
        /// JSON, but not the message that was expected (missing field, wrong type, ...).
        public static let invalidMessage = Code(rawValue: "invalid_message")
        public static let invalidBackendID = Code(rawValue: "invalid_backend_id")
        public static let invalidDroneID = Code(rawValue: "invalid_drone_id")
        public static let invalidClusterName = Code(rawValue: "invalid_cluster_name")
        public static let invalidLock = Code(rawValue: "invalid_lock")
        public static let invalidTimestamp = Code(rawValue: "invalid_timestamp")
        public static let invalidDuration = Code(rawValue: "invalid_duration")
        /// A runtime class or pool name, or a readiness check, that breaks its rules.
        public static let invalidFleetField = Code(rawValue: "invalid_fleet_field")
        /// The input is larger (or deeper, or longer) than a configured limit allows; `limit`
        /// names the limit's configuration key.
        public static let limitExceeded = Code(rawValue: "limit_exceeded")
    }

    public var code: Code
    public var message: String
    /// The coding path of the offending field, e.g. `executable.port`, when known.
    public var field: String?
    /// For `limitExceeded`: the configuration key of the limit (`limits.max_message_bytes`).
    public var limit: String?

    public init(_ code: Code, _ message: String, field: String? = nil, limit: String? = nil) {
        self.code = code
        self.message = message
        self.field = field
        self.limit = limit
    }

    public var description: String {
        if let field, !field.isEmpty { return "\(message) (field `\(field)`)" }
        return message
    }
}
