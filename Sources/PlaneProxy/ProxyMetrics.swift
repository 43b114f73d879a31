import Synchronization

/// The proxy's counters, rendered in the Prometheus text format on the drone's `/metrics`:
/// requests by status class, upstream latency (time to the response head) as a histogram,
/// open upgraded connections, and bytes in each direction.
///
/// Connections count their bytes in a `ByteTally` and hand it over with the next response
/// they record (or at 64 KiB, or when they close), so the lock is taken about once per request.
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
        var latencyBuckets = InlineArray<13, UInt64>(repeating: 0)
        var latencyCount: UInt64 = 0
        var latencySeconds: Double = 0
        var upgradedOpen: Int64 = 0
        var upgradedTotal: UInt64 = 0
        var bytesIn: UInt64 = 0
        var bytesOut: UInt64 = 0
    }

    private let counters = Mutex(Counters())

    public init() {}

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
    func proxied(status: Int, latency duration: Duration, bytes tally: inout ByteTally) {
        let index = min(max(status / 100, 0), 5)
        let seconds = Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
        let taken = tally
        tally = ByteTally()
        counters.withLock { counters in
            counters.statusClasses[index] += 1
            for (bucket, bound) in Self.latencyBounds.enumerated() where seconds <= bound { counters.latencyBuckets[bucket] += 1 }
            counters.latencyCount += 1
            counters.latencySeconds += seconds
            counters.add(taken)
        }
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

    /// Responses of one status class (1 to 5) so far.
    public func responses(ofClass statusClass: Int) -> UInt64 { counters.withLock { $0.statusClasses[statusClass] } }
    public var openUpgradedConnections: Int64 { counters.withLock { $0.upgradedOpen } }
    /// Bytes read from clients and written to them (HTTP heads and bodies, upgraded streams).
    public var bytes: (in: UInt64, out: UInt64) { counters.withLock { ($0.bytesIn, $0.bytesOut) } }

    /// The Prometheus text exposition.
    public func render() -> String {
        let c = counters.withLock { $0 }
        var lines = ["# HELP plane_proxy_responses_total Responses sent to clients, by status class.", "# TYPE plane_proxy_responses_total counter"]
        for statusClass in 1...5 {
            lines.append("plane_proxy_responses_total{class=\"\(statusClass)xx\"} \(c.statusClasses[statusClass])")
        }
        lines += ["# HELP plane_proxy_upstream_latency_seconds Time from sending a request to a backend to its response head.",
                  "# TYPE plane_proxy_upstream_latency_seconds histogram"]
        for (index, bound) in Self.latencyBounds.enumerated() {
            lines.append("plane_proxy_upstream_latency_seconds_bucket{le=\"\(bound)\"} \(c.latencyBuckets[index])")
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
                  "plane_proxy_bytes_total{direction=\"out\"} \(c.bytesOut)"]
        return lines.joined(separator: "\n") + "\n"
    }
}

extension ProxyMetrics.Counters {
    mutating func add(_ tally: ProxyMetrics.ByteTally) {
        bytesIn += UInt64(max(0, tally.fromClient))
        bytesOut += UInt64(max(0, tally.toClient))
    }
}
