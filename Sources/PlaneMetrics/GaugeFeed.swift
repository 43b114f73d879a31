import CoreMetrics
import Synchronization

/// Writes a value kept elsewhere into a registry gauge as this source's share: each `set`
/// adds the change since the last, so several sources in one process (the drones of
/// `plane dev`) add up in the one series.
public final class GaugeFeed: Sendable {
    private let metric: MetricDefinition
    private let factory: PlaneMetricsFactory
    private let state = Mutex<[[String]: (meter: CoreMetrics.Meter, fed: Double)]>([:])

    public init(_ metric: MetricDefinition, factory: PlaneMetricsFactory) {
        self.metric = metric
        self.factory = factory
    }

    public func set(_ dimensions: [(String, String)] = [], to value: Double) {
        let key = dimensions.flatMap { [$0.0, $0.1] }
        state.withLock { state in
            var entry = state[key] ?? (CoreMetrics.Meter(label: metric.name, dimensions: dimensions, factory: factory), 0)
            entry.meter.increment(by: value - entry.fed)
            entry.fed = value
            state[key] = entry
        }
    }

    /// The series this source wrote, by their label values.
    public var series: [[String]] { state.withLock { Array($0.keys) } }
}
