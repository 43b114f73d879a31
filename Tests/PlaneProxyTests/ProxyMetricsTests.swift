import NIOCore
import NIOEmbedded
import Testing
@testable import PlaneProxy

struct ProxyMetricsTests {
    /// Counters are kept per event loop and added up when read or rendered.
    @Test func shardsOfTwoEventLoopsAddUp() {
        let metrics = ProxyMetrics()
        // The first loop is not kept by the test: the metrics keep it, so the second
        // (allocated after it) cannot take its identity and its shard.
        let first = metrics.shard(for: EmbeddedEventLoop())
        let secondLoop = EmbeddedEventLoop()
        let second = metrics.shard(for: secondLoop)
        #expect(metrics.shard(for: secondLoop) === second)
        #expect(first !== second)
        var tally = ProxyMetrics.ByteTally(fromClient: 100, toClient: 1000)
        first.proxied(status: 200, latency: .milliseconds(3), bytes: &tally)
        #expect(tally.isEmpty)
        tally = ProxyMetrics.ByteTally(fromClient: 10, toClient: 20)
        second.proxied(status: 204, latency: .milliseconds(30), bytes: &tally)
        tally = ProxyMetrics.ByteTally(fromClient: 1, toClient: 2)
        second.response(status: 404, bytes: &tally)
        metrics.upgraded(opened: true)
        #expect(metrics.responses(ofClass: 2) == 2 && metrics.responses(ofClass: 4) == 1)
        #expect(metrics.bytes == (in: 111, out: 1022))
        #expect(metrics.openUpgradedConnections == 1)
        let text = metrics.render()
        #expect(text.contains("plane_proxy_upstream_latency_seconds_bucket{le=\"0.005\"} 1\n"))
        #expect(text.contains("plane_proxy_upstream_latency_seconds_bucket{le=\"0.05\"} 2\n"))
        #expect(text.contains("plane_proxy_upstream_latency_seconds_count 2\n"))
        #expect(text.contains("plane_proxy_responses_total{class=\"2xx\"} 2\n"))
    }

    /// Each response counts in the first bucket that holds its latency; the rendered
    /// buckets are cumulative, and a latency beyond the last bound is only in `+Inf`.
    @Test func latencyBucketsRenderCumulatively() {
        let metrics = ProxyMetrics()
        let shard = metrics.shard(for: EmbeddedEventLoop())
        var tally = ProxyMetrics.ByteTally()
        for milliseconds in [1, 1, 2, 700, 20_000] {
            shard.proxied(status: 200, latency: .milliseconds(Int64(milliseconds)), bytes: &tally)
        }
        let text = metrics.render()
        for (bound, count) in [("0.001", 2), ("0.0025", 3), ("0.5", 3), ("1.0", 4), ("10.0", 4), ("+Inf", 5)] {
            #expect(text.contains("plane_proxy_upstream_latency_seconds_bucket{le=\"\(bound)\"} \(count)\n"), "le=\(bound)")
        }
        #expect(text.contains("plane_proxy_upstream_latency_seconds_count 5\n"))
    }
}
