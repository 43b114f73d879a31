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
    /// What the drone says of itself (issue 14); empty for a v0.3.10 drone.
    public var runtime: String?
    public var runtimeClasses: [FleetLabel] = []
    public var pool: FleetLabel?
    public var capabilities: [String] = []
    public var optionsSchema: JSONValue?
    public var capacity: DroneCapacity?
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
    /// Spawns this controller assigned recently, per drone, with the memory each asked for.
    private var assignments: [DroneID: [Assignment]] = [:]

    struct Assignment: Sendable {
        var at: ContinuousClock.Instant
        var memoryBytes: UInt64
    }

    public static let maxDronesKey = "scheduler.max_drones"
    /// A heartbeat's version, runtime name and capability strings are kept to this length.
    static let maxVersionLength = 64
    /// An options schema larger than this (as JSON) is not kept: the drone then counts as
    /// taking no options.
    static let maxOptionsSchemaBytes = 16_384

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
        var schema = message.optionsSchema
        if let known = drones[message.droneID]?.optionsSchema, known == schema {
            schema = known
        } else if let given = schema, JSONWriter.string(given).utf8.count > Self.maxOptionsSchemaBytes {
            schema = nil
        }
        drones[message.droneID] = DroneRecord(
            droneID: message.droneID, cluster: message.cluster, ready: message.ready, state: message.state,
            runningBackends: Int(message.runningBackends ?? 0), version: String(message.droneVersion.prefix(Self.maxVersionLength)),
            lastSeen: now, lastSeenWallClock: wallClock, runtime: message.runtime.map { String($0.prefix(Self.maxVersionLength)) },
            runtimeClasses: message.runtimeClasses, pool: message.pool,
            capabilities: message.capabilities.map { String($0.prefix(Self.maxVersionLength)) }, optionsSchema: schema, capacity: message.capacity)
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
        let recent = assignments[drone]?.count { now - $0.at < recentSpawnWindow } ?? 0
        return (drones[drone]?.runningBackends ?? 0) + recent
    }

    /// The drone's free memory and backend slots as this controller sees them: what its last
    /// heartbeat said, less the spawns this controller assigned to it since (nil: the drone
    /// does not say).
    func room(of record: DroneRecord) -> (memoryBytes: UInt64?, slots: UInt32?) {
        let since = assignments[record.droneID]?.filter { $0.at >= record.lastSeen } ?? []
        let memory = record.capacity?.memoryFreeBytes.map { free in
            since.reduce(free) { left, assignment in left >= assignment.memoryBytes ? left - assignment.memoryBytes : 0 }
        }
        let slots = record.capacity?.backendSlotsFree.map { free in free >= UInt32(clamping: since.count) ? free - UInt32(clamping: since.count) : 0 }
        return (memory, slots)
    }

    /// Power of two random choices among any ready drones (no requirements).
    public func choose(in cluster: ClusterName, excluding: Set<DroneID> = [], at now: ContinuousClock.Instant,
                       using generator: inout some RandomNumberGenerator) -> DroneID? {
        if case .chosen(let drone) = choose(in: cluster, requirements: PlacementRequirements(), excluding: excluding, at: now, using: &generator) {
            return drone
        }
        return nil
    }

    /// Keeps the ready drones that meet `requirements` (pool, runtime class, options, free
    /// memory, a free slot), then makes the power-of-two choice by load among them: two
    /// distinct random candidates, the less loaded wins. With none, says which requirement
    /// no drone met.
    public func choose(in cluster: ClusterName, requirements: PlacementRequirements, excluding: Set<DroneID> = [], at now: ContinuousClock.Instant,
                       using generator: inout some RandomNumberGenerator) -> DroneChoice {
        var candidates = candidates(in: cluster, at: now)
        guard !candidates.isEmpty else { return .noDrone(reason: "no drone of cluster \(cluster) is ready") }
        candidates.removeAll { excluding.contains($0.droneID) }
        guard !candidates.isEmpty else { return .noDrone(reason: "every ready drone was tried (\(excluding.count)) and none took the spawn") }
        let inCluster = candidates
        candidates.removeAll { $0.pool != requirements.pool }
        guard !candidates.isEmpty else {
            let pools = Set(inCluster.map { $0.pool.map { "'\($0)'" } ?? "default" }).sorted().joined(separator: ", ")
            return .noDrone(reason: "no ready drone is in \(requirements.poolName) (pools with ready drones: \(pools))")
        }
        if let runtimeClass = requirements.runtimeClass {
            let inPool = candidates
            candidates.removeAll { !$0.runtimeClasses.contains(runtimeClass) }
            guard !candidates.isEmpty else {
                let offered = Set(inPool.flatMap(\.runtimeClasses)).sorted().map(\.rawValue).joined(separator: ", ")
                return .noDrone(reason: "no ready drone in \(requirements.poolName) has runtime class '\(runtimeClass)' (classes offered there: \(offered.isEmpty ? "none" : offered))")
            }
        }
        if requirements.runtimeOptions.count > 0 {
            // One check per distinct schema: drones of one runtime share it.
            var verdicts: [JSONValue?: [String]] = [:]
            let options = JSONValue.object(requirements.runtimeOptions)
            func problems(_ schema: JSONValue?) -> [String] {
                if let known = verdicts[schema] { return known }
                let found = schema.map { JSONSchemaValidator(schema: $0).problems(of: options, at: "runtime_options") } ?? ["the runtime takes no options"]
                verdicts[schema] = found
                return found
            }
            let withClass = candidates
            candidates.removeAll { !problems($0.optionsSchema).isEmpty }
            guard !candidates.isEmpty else {
                let runtimes = Set(withClass.map { $0.runtime ?? "unknown" }).sorted().joined(separator: ", ")
                let first = withClass.first.map { problems($0.optionsSchema).prefix(5).joined(separator: "; ") } ?? ""
                return .invalidOptions(problems: "No runtime of the drones that match (\(runtimes)) takes these runtime_options: \(first).")
            }
        }
        let rooms = Dictionary(uniqueKeysWithValues: candidates.map { ($0.droneID, room(of: $0)) })
        if let memory = requirements.memoryBytes {
            let matching = candidates
            candidates.removeAll { (rooms[$0.droneID]?.memoryBytes).map { $0 < memory } ?? false }
            guard !candidates.isEmpty else {
                let most = matching.compactMap { rooms[$0.droneID]?.memoryBytes }.max() ?? 0
                return .noDrone(reason: "no matching drone has \(memory) bytes of memory free for the spawn's memory limit (the most any has: \(most) bytes)")
            }
        }
        let withMemory = candidates.count
        candidates.removeAll { rooms[$0.droneID]?.slots == 0 }
        guard !candidates.isEmpty else { return .noDrone(reason: "all \(withMemory) matching drones are full (max_backends)") }

        guard let first = candidates.randomElement(using: &generator) else { return .noDrone(reason: "no drone") }
        guard candidates.count > 1 else { return .chosen(first.droneID) }
        var second = first
        while second.droneID == first.droneID { second = candidates.randomElement(using: &generator) ?? first }
        let (a, b) = (load(of: first.droneID, at: now), load(of: second.droneID, at: now))
        if a != b { return .chosen(a < b ? first.droneID : second.droneID) }
        return .chosen(first.droneID)
    }

    /// Counts a spawn assigned to `drone` towards its load (and, until its next heartbeat,
    /// its memory towards the drone's free memory).
    public mutating func assign(_ drone: DroneID, memoryBytes: UInt64 = 0, at now: ContinuousClock.Instant) {
        var list = assignments[drone, default: []]
        list.removeAll { now - $0.at >= recentSpawnWindow }
        list.append(Assignment(at: now, memoryBytes: memoryBytes))
        assignments[drone] = list
    }
}
