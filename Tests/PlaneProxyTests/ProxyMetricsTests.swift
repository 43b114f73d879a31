import NIOCore
import NIOEmbedded
import PlaneMetrics
import PlaneTestSupport
import Testing
@testable import PlaneProxy

struct ProxyMetricsTests {
    /// Counters are kept per event loop and added up when read or rendered; each loop has
    /// its own latency histogram (label `loop`).
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
        let samples = PrometheusSamples(text)
        #expect(samples.value("plane_proxy_upstream_latency_seconds_bucket", ["le": "0.005"]) == 1, "\(text)")
        #expect(samples.value("plane_proxy_upstream_latency_seconds_bucket", ["le": "0.05"]) == 2)
        #expect(samples.value("plane_proxy_upstream_latency_seconds_count") == 2)
        #expect(samples.value("plane_proxy_upstream_latency_seconds_count", ["loop": "0"]) == 1)
        #expect(samples.value("plane_proxy_upstream_latency_seconds_count", ["loop": "1"]) == 1)
        #expect(samples.value("plane_proxy_responses_total", ["class": "2xx"]) == 2)
        #expect(samples.value("plane_proxy_responses_total", ["class": "5xx"]) == 0)
        #expect(samples.value("plane_proxy_bytes_total", ["direction": "out"]) == 1022)
        #expect(samples.value("plane_proxy_upgraded_connections") == 1)
        #expect(samples.types["plane_proxy_responses_total"] == "counter" && samples.types["plane_proxy_upstream_latency_seconds"] == "histogram")
        #expect(text.contains("# HELP plane_proxy_responses_total Responses sent to clients, by status class.\n"))

        // A scrape adds only what grew since the last; a closed upgrade lowers the gauge.
        tally = ProxyMetrics.ByteTally(fromClient: 0, toClient: 8)
        first.proxied(status: 503, latency: .milliseconds(1), bytes: &tally)
        metrics.upgraded(opened: false)
        let again = PrometheusSamples(metrics.render())
        #expect(again.value("plane_proxy_responses_total", ["class": "2xx"]) == 2)
        #expect(again.value("plane_proxy_responses_total", ["class": "5xx"]) == 1)
        #expect(again.value("plane_proxy_bytes_total", ["direction": "out"]) == 1030)
        #expect(again.value("plane_proxy_upgraded_connections") == 0)
        #expect(again.value("plane_proxy_upgraded_connections_total") == 1)
    }

    /// Two proxies in one process (the drones of `plane dev`) share the process's registry:
    /// their series add up.
    @Test func twoProxiesOfOneProcessAddUp() {
        let registry = PlaneMetrics()
        let (a, b) = (ProxyMetrics(registry: registry), ProxyMetrics(registry: registry))
        var tally = ProxyMetrics.ByteTally()
        a.shard(for: EmbeddedEventLoop()).response(status: 200, bytes: &tally)
        b.shard(for: EmbeddedEventLoop()).response(status: 200, bytes: &tally)
        b.upgraded(opened: true)
        a.upgraded(opened: true)
        let samples = PrometheusSamples(registry.exposition())
        #expect(samples.value("plane_proxy_responses_total", ["class": "2xx"]) == 2)
        #expect(samples.value("plane_proxy_upgraded_connections") == 2)
    }

    /// Each response counts in every bucket that holds its latency (cumulative), and a
    /// latency beyond the last bound is only in `+Inf`.
    @Test func latencyBucketsRenderCumulatively() {
        let metrics = ProxyMetrics()
        let shard = metrics.shard(for: EmbeddedEventLoop())
        var tally = ProxyMetrics.ByteTally()
        for milliseconds in [1, 1, 2, 700, 20_000] {
            shard.proxied(status: 200, latency: .milliseconds(Int64(milliseconds)), bytes: &tally)
        }
        let text = metrics.render()
        let samples = PrometheusSamples(text)
        for (bound, count) in [("0.001", 2.0), ("0.0025", 3), ("0.5", 3), ("1", 4), ("10", 4), ("+Inf", 5)] {
            // Summed over the loops (the `other` loop's histogram is there too, empty).
            let value = samples.samples.filter { sample in
                guard sample.name == "plane_proxy_upstream_latency_seconds_bucket", let le = sample.labels["le"] else { return false }
                return bound == "+Inf" ? le == bound : le != "+Inf" && Double(le) == Double(bound)
            }.reduce(0) { $0 + $1.value }
            #expect(value == count, "le=\(bound)\n\(text)")
        }
        #expect(samples.value("plane_proxy_upstream_latency_seconds_count") == 5)
        #expect(samples.value("plane_proxy_upstream_latency_seconds_sum").map { abs($0 - 20.704) < 1e-6 } == true)
    }
}
