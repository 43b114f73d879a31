import PlaneCore

/// What a spawn needs of a drone (issue 14): its pool, a runtime class, room for its memory
/// limit, and a runtime that takes its options. Taken from the schedule request.
public struct PlacementRequirements: Sendable, Hashable {
    /// Only drones of this pool; nil: the default pool (drones without one).
    public var pool: FleetLabel?
    /// Only drones that have this class; nil: any.
    public var runtimeClass: FleetLabel?
    /// Only drones with this much memory free (those that do not say are not excluded).
    public var memoryBytes: UInt64?
    /// Only drones whose runtime's options schema takes these.
    public var runtimeOptions: JSONObject
    /// A preference, not a requirement (issue 15): drones with a pre-started backend of this
    /// warm pool first.
    public var warmPool: String?

    public init(pool: FleetLabel? = nil, runtimeClass: FleetLabel? = nil, memoryBytes: UInt64? = nil, runtimeOptions: JSONObject = JSONObject(),
                warmPool: String? = nil) {
        self.pool = pool
        self.runtimeClass = runtimeClass
        self.memoryBytes = memoryBytes
        self.runtimeOptions = runtimeOptions
        self.warmPool = warmPool
    }

    public init(_ request: ScheduleRequest) {
        self.init(pool: request.pool, runtimeClass: request.runtimeClass,
                  memoryBytes: request.executable.resourceLimits.memoryLimitBytes.flatMap { UInt64(exactly: $0) },
                  runtimeOptions: request.runtimeOptions, warmPool: request.warmPool)
    }

    /// "pool 'eu'" or "the default pool", for reasons.
    var poolName: String { pool.map { "pool '\($0)'" } ?? "the default pool" }
}

/// The registry's answer to "which drone?".
public enum DroneChoice: Sendable, Hashable {
    case chosen(DroneID)
    /// No drone meets the requirements; `reason` names the first one none met.
    case noDrone(reason: String)
    /// Drones meet the other requirements, but no runtime among them takes the options;
    /// `problems` are the schema's complaints.
    case invalidOptions(problems: String)
}
