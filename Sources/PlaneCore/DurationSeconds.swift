/// A duration on the wire: a non-negative JSON integer of whole seconds (serde_with
/// `DurationSeconds<u64, Strict>`). `30.0`, `-1` and `"30"` are rejected.
public struct DurationSeconds: Sendable, Hashable, Comparable, Codable, CustomStringConvertible, ExpressibleByIntegerLiteral {
    public var seconds: UInt64

    public init(_ seconds: UInt64) { self.seconds = seconds }
    public init(integerLiteral value: UInt64) { self.seconds = value }

    /// Whole seconds of `duration`, the sub-second part rounded half up (as serde_with does).
    /// Negative durations become zero.
    public init(_ duration: Duration) {
        let (s, attos) = duration.components
        if s < 0 { self.seconds = 0; return }
        self.seconds = UInt64(s) + (attos >= 500_000_000_000_000_000 ? 1 : 0)
    }

    public var duration: Duration { .seconds(Int64(clamping: seconds)) }
    public var description: String { "\(seconds)s" }
    public static func < (lhs: DurationSeconds, rhs: DurationSeconds) -> Bool { lhs.seconds < rhs.seconds }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        do {
            seconds = try container.decode(UInt64.self)
        } catch {
            let e = PlaneCoreError(.invalidDuration, "A duration must be a non-negative whole number of seconds written as a JSON integer, e.g. 300.")
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: e.message, underlyingError: e))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(seconds)
    }
}
