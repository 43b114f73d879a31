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
    /// Equal for drones whose schemas were equal when they arrived (0: none), so a decision
    /// checks options once per schema without hashing or comparing schemas.
    var optionsSchemaID = 0
    public var capacity: DroneCapacity?
    /// Pre-started backends ready per warm pool (issue 15).
    public var warmPools: [String: UInt32] = [:]
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
    /// Schemas seen, by value, to their id (`DroneRecord.optionsSchemaID`); emptied when it
    /// holds `maxDrones` (ids are never reused, so a record's id stays unique).
    private var schemaIDs: [JSONValue: Int] = [:]
    private var nextSchemaID = 1
    /// Spawns this controller assigned recently, per drone, with the memory each asked for.
    private var assignments: [DroneID: [Assignment]] = [:]

    struct Assignment: Sendable {
        var at: ContinuousClock.Instant
        var memoryBytes: UInt64
        var warmPool: String?
        var backend: BackendID?
        /// When the drone accepted the spawn (nil while the request is out).
        var answered: ContinuousClock.Instant?
    }

    /// How long after a drone accepted a spawn its heartbeats may still predate the
    /// reservation: a heartbeat is read from the drone's state, then published, and then
    /// waits in this controller's queue; one read before the drone reserved the spawn's
    /// memory can arrive after the assignment, even after the answer.
    static let answerSettle: Duration = .seconds(1)

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
        var schemaID = 0
        if let known = drones[message.droneID], known.optionsSchema == schema {
            schema = known.optionsSchema
            schemaID = known.optionsSchemaID
        } else if let given = schema {
            if JSONWriter.string(given).utf8.count > Self.maxOptionsSchemaBytes {
                schema = nil
            } else if let id = schemaIDs[given] {
                schemaID = id
            } else {
                if schemaIDs.count >= maxDrones { schemaIDs = [:] }
                schemaID = nextSchemaID
                nextSchemaID += 1
                schemaIDs[given] = schemaID
            }
        }
        drones[message.droneID] = DroneRecord(
            droneID: message.droneID, cluster: message.cluster, ready: message.ready, state: message.state,
            runningBackends: Int(message.runningBackends ?? 0), version: String(message.droneVersion.prefix(Self.maxVersionLength)),
            lastSeen: now, lastSeenWallClock: wallClock, runtime: message.runtime.map { String($0.prefix(Self.maxVersionLength)) },
            runtimeClasses: message.runtimeClasses, pool: message.pool,
            capabilities: message.capabilities.map { String($0.prefix(Self.maxVersionLength)) }, optionsSchema: schema, optionsSchemaID: schemaID,
            capacity: message.capacity, warmPools: message.warmPools)
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
        guard let capacity = record.capacity, capacity.memoryFreeBytes != nil || capacity.backendSlotsFree != nil else { return (nil, nil) }
        var memory = capacity.memoryFreeBytes
        var count: UInt32 = 0
        for assignment in assignments[record.droneID] ?? [] where counts(assignment, after: record.lastSeen) {
            count &+= 1
            if let left = memory { memory = left >= assignment.memoryBytes ? left - assignment.memoryBytes : 0 }
        }
        let slots = capacity.backendSlotsFree.map { free in free >= count ? free - count : 0 }
        return (memory, slots)
    }

    /// Whether a drone meets everything but readiness (checked by the caller). `verdicts`
    /// caches the options check by schema id.
    func meets(_ record: DroneRecord, _ requirements: PlacementRequirements, options: JSONValue?, verdicts: inout [Int: Bool]) -> Bool {
        guard record.pool == requirements.pool else { return false }
        if let runtimeClass = requirements.runtimeClass, !record.runtimeClasses.contains(runtimeClass) { return false }
        if let options {
            let accepted: Bool
            if let known = verdicts[record.optionsSchemaID] {
                accepted = known
            } else {
                accepted = record.optionsSchema.map { JSONSchemaValidator(schema: $0).problems(of: options, at: "runtime_options").isEmpty } ?? false
                verdicts[record.optionsSchemaID] = accepted
            }
            guard accepted else { return false }
        }
        let room = room(of: record)
        if let memory = requirements.memoryBytes, let free = room.memoryBytes, free < memory { return false }
        return room.slots != 0
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
        // One pass over the drones in the common case; the reason is worked out only when
        // none is left.
        let options: JSONValue? = requirements.runtimeOptions.count > 0 ? .object(requirements.runtimeOptions) : nil
        var verdicts: [Int: Bool] = [:]
        var matching: [DroneID] = []
        for record in drones.values where record.cluster == cluster && record.ready && now - record.lastSeen < droneTimeout
            && !excluding.contains(record.droneID) && meets(record, requirements, options: options, verdicts: &verdicts) {
            matching.append(record.droneID)
        }
        guard !matching.isEmpty else {
            return explain(in: cluster, requirements: requirements, excluding: excluding, at: now)
        }
        // A spawn a warm pool can serve goes to a drone with a pre-started backend of it
        // left (its last heartbeat's count, less what this controller sent it since).
        if let warmPool = requirements.warmPool {
            let warm = matching.filter { warmBackends(of: $0, pool: warmPool) > 0 }
            if !warm.isEmpty { matching = warm }
        }
        guard let first = matching.randomElement(using: &generator) else {
            return explain(in: cluster, requirements: requirements, excluding: excluding, at: now)
        }
        guard matching.count > 1 else { return .chosen(first) }
        var second = first
        while second == first { second = matching.randomElement(using: &generator) ?? first }
        let (a, b) = (load(of: first, at: now), load(of: second, at: now))
        if a != b { return .chosen(a < b ? first : second) }
        return .chosen(first)
    }

    /// Why no drone meets `requirements`: the requirements applied one at a time, in order;
    /// the first that leaves none is the reason.
    func explain(in cluster: ClusterName, requirements: PlacementRequirements, excluding: Set<DroneID>, at now: ContinuousClock.Instant) -> DroneChoice {
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
        return .noDrone(reason: "all \(candidates.count) matching drone\(candidates.count == 1 ? " is" : "s are") full (max_backends)")
    }

    /// Counts a spawn assigned to `drone` towards its load and, until the drone's heartbeats
    /// include it (`counts(_:after:)`), its memory and a slot towards the drone's room.
    public mutating func assign(_ drone: DroneID, memoryBytes: UInt64 = 0, warmPool: String? = nil, backend: BackendID? = nil,
                                at now: ContinuousClock.Instant) {
        var list = assignments[drone, default: []]
        list.removeAll { now - $0.at >= recentSpawnWindow }
        list.append(Assignment(at: now, memoryBytes: memoryBytes, warmPool: warmPool, backend: backend))
        assignments[drone] = list
    }

    /// The drone answered the spawn of `backend`: accepted, the assignment counts until a
    /// heartbeat from `answerSettle` after the answer on (which includes the drone's own
    /// reservation); refused or unanswered, the drone reserved nothing and it no longer counts.
    public mutating func answered(_ drone: DroneID, backend: BackendID, accepted: Bool, at now: ContinuousClock.Instant) {
        guard var list = assignments[drone], let index = list.lastIndex(where: { $0.backend == backend }) else { return }
        if accepted { list[index].answered = now } else { list.remove(at: index) }
        assignments[drone] = list
    }

    /// Whether a drone's heartbeat of `lastSeen` may not include the assignment yet: one
    /// still out, or answered less than `answerSettle` before it. (The time the assignment
    /// was made is no test: a heartbeat read before the drone reserved may arrive after it.)
    func counts(_ assignment: Assignment, after lastSeen: ContinuousClock.Instant) -> Bool {
        lastSeen < (assignment.answered.map { $0 + Self.answerSettle } ?? assignment.at + recentSpawnWindow)
    }

    /// Pre-started backends of `pool` the drone has left as this controller sees it.
    func warmBackends(of drone: DroneID, pool: String) -> Int {
        guard let record = drones[drone], let reported = record.warmPools[pool] else { return 0 }
        let taken = assignments[drone]?.count { $0.warmPool == pool && counts($0, after: record.lastSeen) } ?? 0
        return Int(reported) - taken
    }
}
