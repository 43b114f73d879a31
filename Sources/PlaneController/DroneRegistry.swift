import PlaneCore

/// What the controller knows about one drone, from its heartbeats.
public struct DroneRecord: Sendable, Hashable {
    public var droneID: DroneID
    public var cluster: ClusterName
    public var ready: Bool
    public var state: DroneState
    public var runningBackends: Int
    public var version: String
    /// When this controller last received a heartbeat (receive time, as v0.3.10).
    public var lastSeen: ContinuousClock.Instant
    public var lastSeenWallClock: Timestamp
}

/// The drone registry and the drone choice, as a plain state machine: heartbeats in,
/// decisions out, time passed in by the caller (so tests run under a manual clock).
///
/// Anyone who can publish on NATS can send heartbeats, so the registry is bounded: drones
/// not heard from for `forgetAfter` are forgotten (to the scheduler and the lost-backend
/// sweeper a forgotten drone is one not heard from), and at most `maxDrones` are kept.
public struct DroneRegistry: Sendable {
    public var droneTimeout: Duration
    public var recentSpawnWindow: Duration
    /// `[scheduler] max_drones`.
    public var maxDrones: Int
    /// Longer than any grace period that asks whether a drone was heard from.
    public var forgetAfter: Duration
    private(set) var drones: [DroneID: DroneRecord] = [:]
    /// Spawns this controller assigned recently, per drone.
    private var assignments: [DroneID: [ContinuousClock.Instant]] = [:]

    public static let maxDronesKey = "scheduler.max_drones"
    /// A heartbeat's version string is kept to this length.
    static let maxVersionLength = 64

    public init(droneTimeout: Duration = .seconds(5), recentSpawnWindow: Duration = .seconds(10), maxDrones: Int = 10_000,
                forgetAfter: Duration = .seconds(3600)) {
        self.droneTimeout = droneTimeout
        self.recentSpawnWindow = recentSpawnWindow
        self.maxDrones = maxDrones
        self.forgetAfter = forgetAfter
    }

    /// Records a heartbeat; false when it is from a drone the registry has no room for
    /// (`maxDrones` others were heard from within `forgetAfter`).
    @discardableResult
    public mutating func heartbeat(_ message: DroneStatusMessage, at now: ContinuousClock.Instant, wallClock: Timestamp = .now()) -> Bool {
        if drones[message.droneID] == nil, drones.count >= maxDrones {
            forgetSilentDrones(at: now)
            guard drones.count < maxDrones else { return false }
        }
        drones[message.droneID] = DroneRecord(
            droneID: message.droneID, cluster: message.cluster, ready: message.ready, state: message.state,
            runningBackends: Int(message.runningBackends ?? 0), version: String(message.droneVersion.prefix(Self.maxVersionLength)),
            lastSeen: now, lastSeenWallClock: wallClock)
        return true
    }

    /// Forgets drones not heard from within `forgetAfter` (and their assignments).
    public mutating func forgetSilentDrones(at now: ContinuousClock.Instant) {
        drones = drones.filter { now - $0.value.lastSeen < forgetAfter }
        assignments = assignments.filter { drones[$0.key] != nil }
    }

    /// Every drone ever heard from (for listing).
    public var all: [DroneRecord] { drones.values.sorted { $0.droneID.rawValue < $1.droneID.rawValue } }

    public func record(of drone: DroneID) -> DroneRecord? { drones[drone] }

    /// Whether a drone was heard from within `within` (ready or not).
    public func isAlive(_ drone: DroneID, at now: ContinuousClock.Instant, within: Duration) -> Bool {
        guard let record = drones[drone] else { return false }
        return now - record.lastSeen < within
    }

    /// Drones that may receive a spawn: ready, in the cluster, heard from within the timeout.
    public func candidates(in cluster: ClusterName, at now: ContinuousClock.Instant) -> [DroneRecord] {
        drones.values.filter { $0.cluster == cluster && $0.ready && now - $0.lastSeen < droneTimeout }
    }

    /// Load as this controller sees it: the drone's running backends plus spawns assigned
    /// to it within the recent window.
    public func load(of drone: DroneID, at now: ContinuousClock.Instant) -> Int {
        let recent = assignments[drone]?.count { now - $0 < recentSpawnWindow } ?? 0
        return (drones[drone]?.runningBackends ?? 0) + recent
    }

    /// Power of two random choices: two distinct random candidates, the less loaded wins.
    public func choose(in cluster: ClusterName, excluding: Set<DroneID> = [], at now: ContinuousClock.Instant,
                       using generator: inout some RandomNumberGenerator) -> DroneID? {
        let candidates = candidates(in: cluster, at: now).filter { !excluding.contains($0.droneID) }
        guard let first = candidates.randomElement(using: &generator) else { return nil }
        guard candidates.count > 1 else { return first.droneID }
        var second = first
        while second.droneID == first.droneID { second = candidates.randomElement(using: &generator)! }
        let (a, b) = (load(of: first.droneID, at: now), load(of: second.droneID, at: now))
        if a != b { return a < b ? first.droneID : second.droneID }
        return first.droneID
    }

    /// Counts a spawn assigned to `drone` towards its load.
    public mutating func assign(_ drone: DroneID, at now: ContinuousClock.Instant) {
        var list = assignments[drone, default: []]
        list.removeAll { now - $0 >= recentSpawnWindow }
        list.append(now)
        assignments[drone] = list
    }
}
