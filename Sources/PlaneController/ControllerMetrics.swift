import CoreMetrics
import PlaneCore
import PlaneMetrics
import Synchronization

/// The controller's metrics, written through swift-metrics into its process's registry
/// (`PlaneMetrics`) and rendered on `GET /metrics`. Gauges that are snapshots of other
/// state (drones, backends, DNS counts) are written when rendering.
public final class ControllerMetrics: Sendable {
    public let registry: PlaneMetrics
    private let scheduleLatency: CoreMetrics.Timer
    private let relayed: CoreMetrics.Counter
    private let rejectedUpdates: CoreMetrics.Counter
    private let liveDrones: CoreMetrics.Gauge
    private let dnsQueries: CounterFeed
    static let results = ["scheduled", "existing", "no_drone_available", "invalid", "error"]
    private let scheduleCounters: [String: CoreMetrics.Counter]
    /// Schedule requests answered, by result (also for in-process readers).
    private let counts = Mutex<[String: Int]>([:])
    /// States with a `plane_backends` series, so one that no backend is in any more reads 0.
    private let statesShown = Mutex<Set<String>>([])

    public init(registry: PlaneMetrics = PlaneMetrics()) {
        self.registry = registry
        scheduleLatency = registry.timer(MetricCatalog.scheduleLatency)
        relayed = registry.counter(MetricCatalog.stateUpdatesRelayed)
        rejectedUpdates = registry.counter(MetricCatalog.stateUpdatesRejected)
        liveDrones = registry.gauge(MetricCatalog.liveDrones)
        dnsQueries = CounterFeed(MetricCatalog.dnsQueries, factory: registry.factory)
        // Every result is listed from the start (at 0).
        scheduleCounters = Dictionary(uniqueKeysWithValues: Self.results.map { ($0, registry.counter(MetricCatalog.scheduleRequests, [("result", $0)])) })
    }

    func recordSchedule(_ response: ScheduleResponse, latency: Duration) {
        let result: String
        switch response {
        case .scheduled(let backend): result = backend.spawned ? "scheduled" : "existing"
        case .noDroneAvailable: result = "no_drone_available"
        case .error: result = "error"
        }
        scheduleCounters[result]?.increment()
        counts.withLock { $0[result, default: 0] += 1 }
        scheduleLatency.record(latency)
    }

    /// A request that did not decode (answered with an `Error` before scheduling).
    func recordInvalidSchedule() {
        scheduleCounters["invalid"]?.increment()
        counts.withLock { $0["invalid", default: 0] += 1 }
    }

    func recordRelayed() {
        relayed.increment()
    }

    /// A state update not stored: its payload names another cluster or backend than its
    /// subject, its backend belongs to another cluster, or another drone than the one the
    /// backend is placed on sent it.
    func recordRejectedUpdate() {
        rejectedUpdates.increment()
    }

    /// Schedule requests answered so far, by result.
    public var scheduleResults: [String: Int] { counts.withLock { $0 } }

    /// The exposition text of the process's registry, with the snapshot values written first.
    public func render(liveDrones: Int, backendsByState: [String: Int], dnsQueries: [String: Int]) -> String {
        self.liveDrones.record(liveDrones)
        let shown = statesShown.withLock { shown in
            shown.formUnion(backendsByState.keys)
            return shown
        }
        for state in shown {
            registry.gauge(MetricCatalog.backends, [("state", state)]).record(backendsByState[state] ?? 0)
        }
        for (outcome, count) in dnsQueries { self.dnsQueries.set([("result", outcome)], to: UInt64(max(0, count))) }
        return registry.exposition()
    }
}
