import NIOCore
import Synchronization

/// The proxy's counters, rendered in the Prometheus text format on the drone's `/metrics`:
/// requests by status class, upstream latency (time to the response head) as a histogram,
/// open upgraded connections, and bytes in each direction.
///
/// Connections count their bytes in a `ByteTally` and hand it over with the next response
/// they record (or at 64 KiB, or when they close), so a lock is taken about once per
/// request: the lock of the connection's event loop (`Shard`); a scrape adds them up.
public final class ProxyMetrics: Sendable {
    /// Histogram bucket bounds in seconds.
    static let latencyBounds: [Double] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

    /// Bytes one connection moved and has not reported yet.
    struct ByteTally {
        var fromClient = 0
        var toClient = 0
        /// Worth a report of its own.
        var isLarge: Bool { fromClient + toClient >= 64 * 1024 }
        var isEmpty: Bool { fromClient == 0 && toClient == 0 }
    }

    struct Counters {
        // Inline storage: no copy-on-write check or heap array under the lock.
        var statusClasses = InlineArray<6, UInt64>(repeating: 0)
        /// Per bucket, not cumulative (one increment per response); a scrape adds them up.
        var latencyBuckets = InlineArray<13, UInt64>(repeating: 0)
        var latencyCount: UInt64 = 0
        var latencySeconds: Double = 0
        var upgradedOpen: Int64 = 0
        var upgradedTotal: UInt64 = 0
        var bytesIn: UInt64 = 0
        var bytesOut: UInt64 = 0
        /// Requests held for a starting backend, by how the hold ended: Ready, ended,
        /// timed out, over `max_held_requests`.
        var held = InlineArray<4, UInt64>(repeating: 0)
    }

    /// Counters written by one event loop thread (read by scrapes): a thread taking a lock
    /// that only it writes to keeps the lock's cache line, where one lock for every thread
    /// would move between cores on every request.
    final class Shard: Sendable {
        let counters = Mutex(Counters())

        /// A local answer (with the connection's unreported bytes).
        func response(status: Int, bytes tally: inout ByteTally) {
            let index = min(max(status / 100, 0), 5)
            let taken = tally
            tally = ByteTally()
            counters.withLock { counters in
                counters.statusClasses[index] += 1
                counters.add(taken)
            }
        }

        /// A response from a backend began: its status class, the time to its head and the
        /// connection's unreported bytes, in one lock.
        func proxied(status: Int, latency: TimeAmount, bytes tally: inout ByteTally) {
            let index = min(max(status / 100, 0), 5)
            let seconds = Double(latency.nanoseconds) / 1e9
            let taken = tally
            tally = ByteTally()
            counters.withLock { counters in
                counters.statusClasses[index] += 1
                if let bucket = ProxyMetrics.bucket(of: seconds) { counters.latencyBuckets[bucket] += 1 }
                counters.latencyCount += 1
                counters.latencySeconds += seconds
                counters.add(taken)
            }
        }

        /// A request held for a starting backend was let go of.
        func held(_ outcome: RouteTable.StartOutcome) {
            let index = switch outcome {
            case .ready: 0
            case .ended: 1
            case .cancelled: 2
            case .overLimit: 3
            }
            counters.withLock { $0.held[index] += 1 }
        }

        func upgraded(opened: Bool) {
            counters.withLock { counters in
                counters.upgradedOpen += opened ? 1 : -1
                if opened { counters.upgradedTotal += 1 }
            }
        }

        /// Reports a connection's bytes (when its tally is large, or it closes).
        func report(_ tally: inout ByteTally) {
            guard !tally.isEmpty else { return }
            let taken = tally
            tally = ByteTally()
            counters.withLock { $0.add(taken) }
        }
    }

    /// The first bucket whose bound holds `seconds` (nil: only `+Inf`).
    static func bucket(of seconds: Double) -> Int? {
        let bounds = latencyBounds
        var index = 0
        while index < bounds.count, seconds > bounds[index] { index += 1 }
        return index < bounds.count ? index : nil
    }

    /// One shard per event loop, and one for everything else.
    private let shards = PerEventLoop<Shard>()
    private let common = Shard()

    public init() {}

    /// The shard of the connections of `eventLoop`.
    func shard(for eventLoop: any EventLoop) -> Shard {
        shards.value(for: eventLoop) { _ in Shard() }
    }

    func upgraded(opened: Bool) { common.upgraded(opened: opened) }
    func report(_ tally: inout ByteTally) { common.report(&tally) }

    /// All shards added up.
    private var total: Counters {
        var total = common.counters.withLock { $0 }
        for shard in shards.values {
            let counters = shard.counters.withLock { $0 }
            for index in 0..<6 { total.statusClasses[index] += counters.statusClasses[index] }
            for index in 0..<13 { total.latencyBuckets[index] += counters.latencyBuckets[index] }
            total.latencyCount += counters.latencyCount
            total.latencySeconds += counters.latencySeconds
            total.upgradedOpen += counters.upgradedOpen
            total.upgradedTotal += counters.upgradedTotal
            total.bytesIn += counters.bytesIn
            total.bytesOut += counters.bytesOut
            for index in 0..<4 { total.held[index] += counters.held[index] }
        }
        return total
    }

    /// Responses of one status class (1 to 5) so far.
    public func responses(ofClass statusClass: Int) -> UInt64 { total.statusClasses[statusClass] }
    public var openUpgradedConnections: Int64 { total.upgradedOpen }
    /// Requests held for starting backends so far, by outcome (`ready`, `ended`, `timed_out`, `over_limit`).
    public var heldRequests: [String: UInt64] {
        let held = total.held
        return ["ready": held[0], "ended": held[1], "timed_out": held[2], "over_limit": held[3]]
    }
    /// Bytes read from clients and written to them (HTTP heads and bodies, upgraded streams).
    public var bytes: (in: UInt64, out: UInt64) { let total = self.total; return (total.bytesIn, total.bytesOut) }

    /// The Prometheus text exposition.
    public func render() -> String {
        let c = total
        var lines = ["# HELP plane_proxy_responses_total Responses sent to clients, by status class.", "# TYPE plane_proxy_responses_total counter"]
        for statusClass in 1...5 {
            lines.append("plane_proxy_responses_total{class=\"\(statusClass)xx\"} \(c.statusClasses[statusClass])")
        }
        lines += ["# HELP plane_proxy_upstream_latency_seconds Time from sending a request to a backend to its response head.",
                  "# TYPE plane_proxy_upstream_latency_seconds histogram"]
        var cumulative: UInt64 = 0
        for (index, bound) in Self.latencyBounds.enumerated() {
            cumulative += c.latencyBuckets[index]
            lines.append("plane_proxy_upstream_latency_seconds_bucket{le=\"\(bound)\"} \(cumulative)")
        }
        let count = c.latencyCount
        lines += ["plane_proxy_upstream_latency_seconds_bucket{le=\"+Inf\"} \(count)",
                  "plane_proxy_upstream_latency_seconds_sum \(c.latencySeconds)",
                  "plane_proxy_upstream_latency_seconds_count \(count)",
                  "# HELP plane_proxy_upgraded_connections Open upgraded (WebSocket) connections.",
                  "# TYPE plane_proxy_upgraded_connections gauge",
                  "plane_proxy_upgraded_connections \(c.upgradedOpen)",
                  "# HELP plane_proxy_upgraded_connections_total Upgraded (WebSocket) connections opened.",
                  "# TYPE plane_proxy_upgraded_connections_total counter",
                  "plane_proxy_upgraded_connections_total \(c.upgradedTotal)",
                  "# HELP plane_proxy_bytes_total Bytes read from clients (in) and written to them (out): HTTP heads and bodies, upgraded streams.",
                  "# TYPE plane_proxy_bytes_total counter",
                  "plane_proxy_bytes_total{direction=\"in\"} \(c.bytesIn)",
                  "plane_proxy_bytes_total{direction=\"out\"} \(c.bytesOut)",
                  "# HELP plane_proxy_held_requests_total Requests held while their backend was starting, by how the hold ended.",
                  "# TYPE plane_proxy_held_requests_total counter",
                  "plane_proxy_held_requests_total{outcome=\"ready\"} \(c.held[0])",
                  "plane_proxy_held_requests_total{outcome=\"ended\"} \(c.held[1])",
                  "plane_proxy_held_requests_total{outcome=\"timed_out\"} \(c.held[2])",
                  "plane_proxy_held_requests_total{outcome=\"over_limit\"} \(c.held[3])"]
        return lines.joined(separator: "\n") + "\n"
    }
}

extension ProxyMetrics.Counters {
    mutating func add(_ tally: ProxyMetrics.ByteTally) {
        bytesIn += UInt64(max(0, tally.fromClient))
        bytesOut += UInt64(max(0, tally.toClient))
    }
}
