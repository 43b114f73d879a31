import CoreMetrics
import Synchronization

/// Writes totals that are kept elsewhere into a registry counter: each `set` adds what the
/// total grew by since the last (a total that went down, as after a reset, is taken as is
/// from then on).
public final class CounterFeed: Sendable {
    private let metric: MetricDefinition
    private let factory: PlaneMetricsFactory
    private let state = Mutex<[[String]: (counter: CoreMetrics.Counter, fed: UInt64)]>([:])

    public init(_ metric: MetricDefinition, factory: PlaneMetricsFactory) {
        self.metric = metric
        self.factory = factory
    }

    public func set(_ dimensions: [(String, String)] = [], to total: UInt64) {
        let key = dimensions.flatMap { [$0.0, $0.1] }
        state.withLock { state in
            var entry = state[key] ?? (CoreMetrics.Counter(label: metric.name, dimensions: dimensions, factory: factory), 0)
            if total > entry.fed {
                entry.counter.increment(by: Int64(clamping: total - entry.fed))
            }
            entry.fed = total
            state[key] = entry
        }
    }
}
