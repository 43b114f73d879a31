/// A backend's lifecycle state (spec §3.9). Parsing is exact and case-sensitive.
public enum BackendState: String, Sendable, Hashable, Codable, CaseIterable {
    case loading = "Loading"
    case errorLoading = "ErrorLoading"
    case starting = "Starting"
    case errorStarting = "ErrorStarting"
    case ready = "Ready"
    case timedOutBeforeReady = "TimedOutBeforeReady"
    case failed = "Failed"
    case exited = "Exited"
    case swept = "Swept"
    case terminated = "Terminated"
    /// Additive (later Plane 0.3.x): the backend's drone has been gone longer than the
    /// controller's grace period, so the backend is presumed dead and its lock released.
    case lost = "Lost"

    /// A terminal state is never left.
    public var isTerminal: Bool {
        switch self {
        case .loading, .starting, .ready: false
        default: true
        }
    }

    /// The backend's process is (expected to be) running.
    public var isRunning: Bool { self == .starting || self == .ready }
}

/// A drone's report of a backend state change to the controller (subject
/// `cluster.{cluster_s}.backend.{backend_id}.status`, reply `null`, spec §3.10).
public struct UpdateBackendStateMessage: Sendable, Hashable, Codable {
    public var cluster: ClusterName
    public var state: BackendState
    public var backend: BackendID
    /// Drone clock at the transition; relayed unchanged.
    public var time: Timestamp
    public var drone: DroneID

    public init(cluster: ClusterName, state: BackendState, backend: BackendID, time: Timestamp, drone: DroneID) {
        self.cluster = cluster
        self.state = state
        self.backend = backend
        self.time = time
        self.drone = drone
    }

    /// What the controller writes to JetStream for this update.
    public var relayed: BackendStateMessage {
        BackendStateMessage(cluster: cluster, state: state, backend: backend, time: time)
    }
}

/// A backend state change as stored in the `backend_status` JetStream stream (subject
/// `backend.{backend_id}.status`, spec §3.11).
public struct BackendStateMessage: Sendable, Hashable, Codable {
    /// Written as `null` when nil; the controller always fills it.
    public var cluster: ClusterName?
    public var state: BackendState
    public var backend: BackendID
    public var time: Timestamp

    public init(cluster: ClusterName?, state: BackendState, backend: BackendID, time: Timestamp) {
        self.cluster = cluster
        self.state = state
        self.backend = backend
        self.time = time
    }

    enum CodingKeys: String, CodingKey { case cluster, state, backend, time }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        cluster = try c.decodeIfPresent(ClusterName.self, forKey: .cluster)
        state = try c.decode(BackendState.self, forKey: .state)
        backend = try c.decode(BackendID.self, forKey: .backend)
        time = try c.decode(Timestamp.self, forKey: .time)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(cluster, forKey: .cluster)
        try c.encode(state, forKey: .state)
        try c.encode(backend, forKey: .backend)
        try c.encode(time, forKey: .time)
    }
}
