import Synchronization

/// How often each input limit was hit in this process, by the limit's configuration key
/// (`dns.max_records_per_name`, `limits.max_message_bytes`, ...): served on `/metrics` as
/// `plane_input_limit_hits_total{limit="..."}` by the controller and the drone (every
/// `PlaneMetrics` registry writes them in at each scrape).
///
/// Pure code (parsers, stores) reports a limit as an error or a result; the edge that gave
/// it the input counts the hit here and, when `record` says so, logs it with the input's
/// source (`limit.exceeded`, with `plane.limit_hits`: the hits that line stands for).
public final class LimitCounters: Sendable {
    /// The process's counters (one process may hold a controller and a drone, as `plane dev`
    /// does; the limits' keys say which part hit them).
    public static let shared = LimitCounters()

    /// A flood of bad input must not become a flood of log lines: a limit's hits are
    /// logged at most once per this interval.
    public static let logInterval: Duration = .seconds(10)

    struct Counter {
        var count: UInt64 = 0
        var loggedAt: ContinuousClock.Instant?
        var countWhenLogged: UInt64 = 0
    }

    private let counters = Mutex<[String: Counter]>([:])

    public init() {}

    /// Counts one hit of the limit `key`. Returns how many hits to log now (this one and
    /// those not logged since the last line), or nil when a line for this limit was written
    /// within `logInterval`.
    @discardableResult
    public func record(_ key: String, now: ContinuousClock.Instant = .now) -> UInt64? {
        counters.withLock { counters in
            var counter = counters[key, default: Counter()]
            counter.count &+= 1
            defer { counters[key] = counter }
            if let logged = counter.loggedAt, now - logged < Self.logInterval { return nil }
            let unlogged = counter.count - counter.countWhenLogged
            counter.loggedAt = now
            counter.countWhenLogged = counter.count
            return unlogged
        }
    }

    /// Hits of `key` so far.
    public func count(_ key: String) -> UInt64 {
        counters.withLock { $0[key]?.count ?? 0 }
    }

    /// Every limit hit so far with its count, by key.
    public var snapshot: [String: UInt64] { counters.withLock { $0.mapValues(\.count) } }
}
