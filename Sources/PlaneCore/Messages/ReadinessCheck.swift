/// Extension (issue 14): how the drone decides that a spawn's backend is ready. The backend
/// is `Ready` once `GET path` answers with a status below 400 (with the drone's own check,
/// any HTTP answer counts); a backend that has not passed within `timeout_secs` (default: the
/// drone's `startup_timeout_secs`) ends `TimedOutBeforeReady`.
public struct ReadinessCheck: Sendable, Hashable, Codable {
    /// An absolute path with its query, e.g. `/healthz?full=1`.
    public var path: String
    public var timeoutSeconds: DurationSeconds?

    public static let maximumPathLength = 1024
    /// A day: a longer wait is a mistake, not a slow start.
    public static let maximumTimeoutSeconds: UInt64 = 86_400

    public init(path: String, timeoutSeconds: DurationSeconds? = nil) throws(PlaneCoreError) {
        let bytes = Array(path.utf8)
        guard bytes.first == 0x2F, bytes.count <= Self.maximumPathLength, bytes.allSatisfy({ (0x21...0x7E).contains($0) }) else {
            throw PlaneCoreError(.invalidFleetField, "The readiness path \(path.quotedForError) must start with '/' and be at most \(Self.maximumPathLength) printable ASCII characters without spaces.")
        }
        if let timeoutSeconds, timeoutSeconds.seconds == 0 || timeoutSeconds.seconds > Self.maximumTimeoutSeconds {
            throw PlaneCoreError(.invalidFleetField, "The readiness timeout must be 1 to \(Self.maximumTimeoutSeconds) seconds, not \(timeoutSeconds.seconds).")
        }
        self.path = path
        self.timeoutSeconds = timeoutSeconds
    }

    enum CodingKeys: String, CodingKey {
        case path
        case timeoutSeconds = "timeout_secs"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        do {
            try self.init(path: try c.decode(String.self, forKey: .path), timeoutSeconds: try c.decodeIfPresent(DurationSeconds.self, forKey: .timeoutSeconds))
        } catch let error as PlaneCoreError {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: error.message, underlyingError: error))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(path, forKey: .path)
        try c.encodeIfPresent(timeoutSeconds, forKey: .timeoutSeconds)
    }
}
