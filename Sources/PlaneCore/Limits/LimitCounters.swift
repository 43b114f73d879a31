import Synchronization

/// How often each input limit was hit in this process, by the limit's configuration key
/// (`dns.max_records_per_name`, `limits.max_message_bytes`, ...): served on `/metrics` as
/// `plane_input_limit_hits_total{limit="..."}` by the controller and the drone.
///
/// Pure code (parsers, stores) reports a limit as an error or a result; the edge that gave
/// it the input counts the hit here and logs it with the input's source.
public final class LimitCounters: Sendable {
    /// The process's counters (one process may hold a controller and a drone, as `plane dev`
    /// does; the limits' keys say which part hit them).
    public static let shared = LimitCounters()

    private let counts = Mutex<[String: UInt64]>([:])

    public init() {}

    /// Counts one hit of the limit `key`.
    public func record(_ key: String) {
        counts.withLock { $0[key, default: 0] &+= 1 }
    }

    /// Hits of `key` so far.
    public func count(_ key: String) -> UInt64 {
        counts.withLock { $0[key] ?? 0 }
    }

    /// Every limit hit so far with its count, by key.
    public var snapshot: [String: UInt64] { counts.withLock { $0 } }

    /// The counters in the Prometheus text format (nothing before the first hit but the
    /// metric's help and type).
    public func prometheusText() -> String {
        var text = "# HELP plane_input_limit_hits_total Inputs refused or cut because they exceeded a limit, by the limit's configuration key.\n"
        text += "# TYPE plane_input_limit_hits_total counter\n"
        for (key, count) in snapshot.sorted(by: { $0.key < $1.key }) {
            text += "plane_input_limit_hits_total{limit=\"\(key)\"} \(count)\n"
        }
        return text
    }
}
