import CoreMetrics
import NIOCore
import PlaneMetrics
import Synchronization

/// The proxy's counters, written into its process's registry (`PlaneMetrics`, rendered on
/// the drone's `/metrics`): requests by status class, upstream latency (time to the response
/// head) as a histogram per event loop, open upgraded connections, and bytes in each direction.
///
/// Connections count their bytes in a `ByteTally` and hand it over with the next response
/// they record (or at 64 KiB, or when they close), so the request path touches only state
/// of its own event loop (`Shard`): atomic counters no other thread writes (no lock), and
/// that loop's latency histogram (a lock no other thread takes but a scrape). A scrape adds the shards up and feeds the growth since the
/// last scrape into the registry's counters (`CounterFeed`).
public final class ProxyMetrics: Sendable {

    /// Bytes one connection moved and has not reported yet.
    struct ByteTally {
        var fromClient = 0
        var toClient = 0
        /// Worth a report of its own.
        var isLarge: Bool { fromClient + toClient >= 64 * 1024 }
        var isEmpty: Bool { fromClient == 0 && toClient == 0 }
    }

    /// The shards' counters added up (a scrape's snapshot).
    struct Counters {
        var statusClasses = InlineArray<6, UInt64>(repeating: 0)
        var upgradedOpen: Int64 = 0
        var upgradedTotal: UInt64 = 0
        var bytesIn: UInt64 = 0
        var bytesOut: UInt64 = 0
        /// Requests held for a starting backend, by how the hold ended: Ready, ended,
        /// timed out, over `max_held_requests`.
        var held = InlineArray<4, UInt64>(repeating: 0)
    }

    /// Counters written by one event loop thread (read by scrapes), as atomics with relaxed
    /// ordering: no lock on the request path, and a cache line that stays with the thread
    /// that writes it, where counters shared by every thread would move between cores on
    /// every request. (The shard of everything else, `common`, is written from any thread;
    /// atomics hold there too.)
    final class Shard: Sendable {
        let statusClasses: InlineArray<6, Atomic<UInt64>> = InlineArray { _ in Atomic(0) }
        let upgradedOpen = Atomic<Int64>(0)
        let upgradedTotal = Atomic<UInt64>(0)
        let bytesIn = Atomic<UInt64>(0)
        let bytesOut = Atomic<UInt64>(0)
        let held: InlineArray<4, Atomic<UInt64>> = InlineArray { _ in Atomic(0) }
        /// This event loop's histogram (its lock is only this loop's and the scrape's).
        let latency: CoreMetrics.Timer

        init(latency: CoreMetrics.Timer) {
            self.latency = latency
        }

        /// A local answer (with the connection's unreported bytes).
        func response(status: Int, bytes tally: inout ByteTally) {
            statusClasses[min(max(status / 100, 0), 5)].wrappingAdd(1, ordering: .relaxed)
            report(&tally)
        }

        /// A response from a backend began: its status class, the time to its head and the
        /// connection's unreported bytes.
        func proxied(status: Int, latency: TimeAmount, bytes tally: inout ByteTally) {
            statusClasses[min(max(status / 100, 0), 5)].wrappingAdd(1, ordering: .relaxed)
            report(&tally)
            self.latency.recordNanoseconds(max(0, latency.nanoseconds))
        }

        /// A request held for a starting backend was let go of.
        func held(_ outcome: RouteTable.StartOutcome) {
            let index = switch outcome {
            case .ready: 0
            case .ended: 1
            case .cancelled: 2
            case .overLimit: 3
            }
            held[index].wrappingAdd(1, ordering: .relaxed)
        }

        func upgraded(opened: Bool) {
            upgradedOpen.wrappingAdd(opened ? 1 : -1, ordering: .relaxed)
            if opened { upgradedTotal.wrappingAdd(1, ordering: .relaxed) }
        }

        /// Reports a connection's bytes (with a response, when its tally is large, or when
        /// it closes).
        func report(_ tally: inout ByteTally) {
            if tally.fromClient > 0 { bytesIn.wrappingAdd(UInt64(tally.fromClient), ordering: .relaxed) }
            if tally.toClient > 0 { bytesOut.wrappingAdd(UInt64(tally.toClient), ordering: .relaxed) }
            tally = ByteTally()
        }

        /// Adds this shard's counters to `total`.
        func add(to total: inout Counters) {
            for index in 0..<6 { total.statusClasses[index] &+= statusClasses[index].load(ordering: .relaxed) }
            total.upgradedOpen &+= upgradedOpen.load(ordering: .relaxed)
            total.upgradedTotal &+= upgradedTotal.load(ordering: .relaxed)
            total.bytesIn &+= bytesIn.load(ordering: .relaxed)
            total.bytesOut &+= bytesOut.load(ordering: .relaxed)
            for index in 0..<4 { total.held[index] &+= held[index].load(ordering: .relaxed) }
        }
    }

    /// One shard per event loop, and one for everything else.
    private let shards = PerEventLoop<Shard>()
    private let common: Shard
    public let registry: PlaneMetrics
    private let loopsSeen = Mutex(0)

    public init(registry: PlaneMetrics = PlaneMetrics()) {
        self.registry = registry
        common = Shard(latency: registry.timer(MetricCatalog.proxyUpstreamLatency, [("loop", "other")]))
        let feeds = Feeds(registry)
        registry.addScrapeHook { [weak self] in
            guard let self else { return }
            feeds.write(self.total)
        }
    }

    /// The shard of the connections of `eventLoop`.
    func shard(for eventLoop: any EventLoop) -> Shard {
        shards.value(for: eventLoop) { _ in
            let index = loopsSeen.withLock { seen in
                defer { seen += 1 }
                return seen
            }
            return Shard(latency: registry.timer(MetricCatalog.proxyUpstreamLatency, [("loop", String(index))]))
        }
    }

    func upgraded(opened: Bool) { common.upgraded(opened: opened) }
    func report(_ tally: inout ByteTally) { common.report(&tally) }

    /// All shards added up.
    private var total: Counters {
        var total = Counters()
        common.add(to: &total)
        for shard in shards.values { shard.add(to: &total) }
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

    /// The exposition text of the process's registry.
    public func render() -> String { registry.exposition() }

    /// The registry's series of these counters, written from the shards' totals at a scrape.
    /// Several proxies in one process (`plane dev` with several drones) each add their growth
    /// to the same series.
    final class Feeds: Sendable {
        let responses: CounterFeed
        let upgradedOpened: CounterFeed
        let bytes: CounterFeed
        let held: CounterFeed
        let upgradedOpen: GaugeFeed

        init(_ registry: PlaneMetrics) {
            responses = CounterFeed(MetricCatalog.proxyResponses, factory: registry.factory)
            upgradedOpened = CounterFeed(MetricCatalog.proxyUpgradedConnectionsOpened, factory: registry.factory)
            bytes = CounterFeed(MetricCatalog.proxyBytes, factory: registry.factory)
            held = CounterFeed(MetricCatalog.proxyHeldRequests, factory: registry.factory)
            upgradedOpen = GaugeFeed(MetricCatalog.proxyUpgradedConnections, factory: registry.factory)
        }

        func write(_ c: Counters) {
            for statusClass in 1...5 { responses.set([("class", "\(statusClass)xx")], to: c.statusClasses[statusClass]) }
            upgradedOpened.set(to: c.upgradedTotal)
            bytes.set([("direction", "in")], to: c.bytesIn)
            bytes.set([("direction", "out")], to: c.bytesOut)
            for (index, outcome) in ["ready", "ended", "timed_out", "over_limit"].enumerated() { held.set([("outcome", outcome)], to: c.held[index]) }
            upgradedOpen.set(to: Double(c.upgradedOpen))
        }
    }
}
