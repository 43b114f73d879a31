import CoreMetrics
import PlaneCore
import Prometheus
import Synchronization

/// One process's metrics (issue 16): a `PrometheusCollectorRegistry` that the components
/// write into through swift-metrics (`counter`, `gauge`, `timer` hand out its handlers, via
/// `PlaneMetricsFactory`), and that `/metrics` renders. `plane controller`, `plane drone`
/// and `plane dev` make one each and give it to every part they run, so a process has one
/// registry and one exposition; tests give each component its own.
///
/// Values that are snapshots of other state (drones heard from, backends by state) or that
/// a hot path keeps on its own (the proxy's per-event-loop counters, the input-limit
/// counters) are written by scrape hooks, which run before each rendering.
public final class PlaneMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    public let factory: PlaneMetricsFactory
    private let hooks = Mutex<[@Sendable () -> Void]>([])
    private let limitFeed: CounterFeed

    public init() {
        registry = PrometheusCollectorRegistry()
        factory = PlaneMetricsFactory(registry: registry)
        limitFeed = CounterFeed(MetricCatalog.inputLimitHits, factory: factory)
        let feed = limitFeed
        addScrapeHook {
            for (key, count) in LimitCounters.shared.snapshot { feed.set([("limit", key)], to: count) }
        }
    }

    /// A swift-metrics counter of a catalog metric.
    public func counter(_ metric: MetricDefinition, _ dimensions: [(String, String)] = []) -> CoreMetrics.Counter {
        CoreMetrics.Counter(label: metric.name, dimensions: dimensions, factory: factory)
    }

    /// A swift-metrics gauge of a catalog metric.
    public func gauge(_ metric: MetricDefinition, _ dimensions: [(String, String)] = []) -> CoreMetrics.Gauge {
        CoreMetrics.Gauge(label: metric.name, dimensions: dimensions, factory: factory)
    }

    /// A swift-metrics timer (a histogram with the catalog's buckets) of a catalog metric.
    public func timer(_ metric: MetricDefinition, _ dimensions: [(String, String)] = []) -> CoreMetrics.Timer {
        CoreMetrics.Timer(label: metric.name, dimensions: dimensions, factory: factory)
    }

    /// Runs before every rendering, to write snapshot values into the registry.
    public func addScrapeHook(_ hook: @escaping @Sendable () -> Void) {
        hooks.withLock { $0.append(hook) }
    }

    /// The Prometheus text exposition (format 0.0.4) of everything registered.
    public func exposition() -> String {
        for hook in hooks.withLock({ $0 }) { hook() }
        return registry.emitToString()
    }

    /// Makes this registry swift-metrics' global backend too (once per process; later calls
    /// do nothing), so metrics of libraries that use the global system land in it.
    public func bootstrapMetricsSystem() {
        Self.bootstrapped.withLock { done in
            guard !done else { return }
            done = true
            MetricsSystem.bootstrap(factory)
        }
    }

    private static let bootstrapped = Mutex(false)
}

extension CoreMetrics.Timer {
    /// Records a duration (clamped to what nanoseconds in an `Int64` hold, about 292 years).
    public func record(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        let (whole, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        guard !overflow else { return recordNanoseconds(seconds < 0 ? Int64.min : Int64.max) }
        recordNanoseconds(whole.addingReportingOverflow(attoseconds / 1_000_000_000).partialValue)
    }
}
