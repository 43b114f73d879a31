import PlaneCore
import Synchronization

/// Counters and histograms the controller exposes on `GET /metrics` in the Prometheus text
/// format. Gauges that are snapshots of other state (drones, backends, DNS) are passed in
/// when rendering.
public final class ControllerMetrics: Sendable {
    /// Upper bounds (seconds) of the scheduling latency histogram.
    static let latencyBuckets: [Double] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

    struct State {
        var schedules: [String: Int] = [:]
        var latencyCounts = [Int](repeating: 0, count: ControllerMetrics.latencyBuckets.count)
        var latencySum: Double = 0
        var latencyCount = 0
        var relayed = 0
        var rejectedUpdates = 0
    }

    private let state = Mutex(State())

    public init() {}

    func recordSchedule(_ response: ScheduleResponse, latency: Duration) {
        let result: String
        switch response {
        case .scheduled(let backend): result = backend.spawned ? "scheduled" : "existing"
        case .noDroneAvailable: result = "no_drone_available"
        case .error: result = "error"
        }
        let seconds = Double(latency.components.seconds) + Double(latency.components.attoseconds) / 1e18
        state.withLock { state in
            state.schedules[result, default: 0] += 1
            for (index, bound) in Self.latencyBuckets.enumerated() where seconds <= bound { state.latencyCounts[index] += 1 }
            state.latencySum += seconds
            state.latencyCount += 1
        }
    }

    /// A request that did not decode (answered with an `Error` before scheduling).
    func recordInvalidSchedule() {
        state.withLock { $0.schedules["invalid", default: 0] += 1 }
    }

    func recordRelayed() {
        state.withLock { $0.relayed += 1 }
    }

    /// A state update not stored: its payload names another cluster or backend than its
    /// subject, or its backend belongs to another cluster.
    func recordRejectedUpdate() {
        state.withLock { $0.rejectedUpdates += 1 }
    }

    /// Schedule requests answered so far, by result.
    public var scheduleResults: [String: Int] { state.withLock { $0.schedules } }

    /// The exposition text.
    public func render(liveDrones: Int, backendsByState: [String: Int], dnsQueries: [String: Int]) -> String {
        let snapshot = state.withLock { $0 }
        var out = ""
        out += "# HELP plane_schedule_requests_total Schedule requests answered, by result.\n# TYPE plane_schedule_requests_total counter\n"
        for result in ["scheduled", "existing", "no_drone_available", "invalid", "error"] {
            out += "plane_schedule_requests_total{result=\"\(result)\"} \(snapshot.schedules[result] ?? 0)\n"
        }
        out += "# HELP plane_schedule_latency_seconds Time to answer a schedule request.\n# TYPE plane_schedule_latency_seconds histogram\n"
        for (index, bound) in Self.latencyBuckets.enumerated() {
            out += "plane_schedule_latency_seconds_bucket{le=\"\(bound)\"} \(snapshot.latencyCounts[index])\n"
        }
        out += "plane_schedule_latency_seconds_bucket{le=\"+Inf\"} \(snapshot.latencyCount)\n"
        out += "plane_schedule_latency_seconds_sum \(snapshot.latencySum)\nplane_schedule_latency_seconds_count \(snapshot.latencyCount)\n"
        out += "# HELP plane_state_updates_relayed_total Backend state updates written to the backend_status stream.\n# TYPE plane_state_updates_relayed_total counter\n"
        out += "plane_state_updates_relayed_total \(snapshot.relayed)\n"
        out += "# HELP plane_state_updates_rejected_total Backend state updates not stored: their payload names another cluster or backend than their subject, or the backend is another cluster's.\n# TYPE plane_state_updates_rejected_total counter\n"
        out += "plane_state_updates_rejected_total \(snapshot.rejectedUpdates)\n"
        out += "# HELP plane_live_drones Drones heard from within the drone timeout.\n# TYPE plane_live_drones gauge\nplane_live_drones \(liveDrones)\n"
        out += "# HELP plane_backends Backends known to the controller, by state.\n# TYPE plane_backends gauge\n"
        for (state, count) in backendsByState.sorted(by: { $0.key < $1.key }) { out += "plane_backends{state=\"\(state)\"} \(count)\n" }
        out += "# HELP plane_dns_queries_total DNS queries, by outcome.\n# TYPE plane_dns_queries_total counter\n"
        for (outcome, count) in dnsQueries.sorted(by: { $0.key < $1.key }) { out += "plane_dns_queries_total{result=\"\(outcome)\"} \(count)\n" }
        out += LimitCounters.shared.prometheusText()
        return out
    }
}
