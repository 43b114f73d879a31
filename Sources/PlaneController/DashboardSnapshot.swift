import PlaneCore

/// What the dashboard (`GET /dashboard`) shows at one moment, as the JSON its page reads
/// from `/dashboard/state` and `/dashboard/events`: the drones this controller's scheduler
/// hears from and the cluster's backends. Pure (time and inputs passed in), so the shape
/// and its bounds are unit-tested.
///
/// Times are milliseconds since the epoch (`*_ms`), with the controller's own clock as
/// `server_time_ms`: the page computes ages from them and its own clock, so a snapshot
/// changes only when something happened (and the stream sends only then).
public struct DashboardSnapshot: Sendable {
    /// A backend's idle time as its drone last reported it (`idle_secs` of its stats).
    public struct IdleSample: Sendable, Hashable {
        public var seconds: Double
        /// When the report arrived.
        public var received: Timestamp

        public init(seconds: Double, received: Timestamp) {
            self.seconds = seconds
            self.received = received
        }
    }

    public var cluster: ClusterName
    /// Drones as the scheduler knows them; nil on a controller without `[scheduler]`.
    public var drones: [DroneRecord]?
    public var droneTimeout: Duration
    public var backends: [BackendRecord]
    public var idle: [BackendID: IdleSample]
    /// At most this many backends are listed (live ones first, newest first).
    public var maxBackends: Int
    /// Ended backends stay listed this long after their last state.
    public var endedWindow: Duration

    public init(cluster: ClusterName, drones: [DroneRecord]?, droneTimeout: Duration, backends: [BackendRecord],
                idle: [BackendID: IdleSample] = [:], maxBackends: Int = 1000, endedWindow: Duration = .seconds(600)) {
        self.cluster = cluster
        self.drones = drones
        self.droneTimeout = droneTimeout
        self.backends = backends
        self.idle = idle
        self.maxBackends = maxBackends
        self.endedWindow = endedWindow
    }

    static func milliseconds(_ time: Timestamp) -> JSONValue {
        .integer(time.nanosecondsSinceEpoch / 1_000_000)
    }

    /// The backends listed: every live one of the cluster and those that ended within
    /// `endedWindow`, live first, then by newest state; at most `maxBackends`.
    func listed(now: Timestamp) -> (backends: [BackendRecord], omitted: Int) {
        let relevant = backends.filter { record in
            guard record.cluster == cluster else { return false }
            return record.isLive || now.duration(since: record.time) <= endedWindow
        }
        let ordered = relevant.sorted { a, b in
            if a.isLive != b.isLive { return a.isLive }
            let (ta, tb) = (a.created ?? a.time, b.created ?? b.time)
            return ta != tb ? tb < ta : a.backendID.rawValue < b.backendID.rawValue
        }
        let kept = Array(ordered.prefix(max(0, maxBackends)))
        return (kept, ordered.count - kept.count)
    }

    public func json(now: Timestamp, instant: ContinuousClock.Instant) -> JSONValue {
        var root = JSONObject()
        root["cluster"] = .string(cluster.rawValue)
        root["controller_version"] = .string(PlaneVersion.current)
        root["server_time_ms"] = Self.milliseconds(now)
        if let drones {
            root["drones"] = .array(drones.filter { $0.cluster == cluster }.map { drone in
                var object = JSONObject()
                object["id"] = .string(drone.droneID.rawValue)
                object["state"] = .string(drone.state.rawValue)
                object["ready"] = .bool(drone.ready)
                object["alive"] = .bool(instant - drone.lastSeen <= droneTimeout)
                object["version"] = .string(drone.version)
                object["running_backends"] = .integer(drone.runningBackends)
                object["last_heartbeat_ms"] = Self.milliseconds(drone.lastSeenWallClock)
                if let runtime = drone.runtime { object["runtime"] = .string(runtime) }
                if !drone.runtimeClasses.isEmpty { object["runtime_classes"] = .array(drone.runtimeClasses.map { .string($0.rawValue) }) }
                if let pool = drone.pool { object["pool"] = .string(pool.rawValue) }
                if let capacity = drone.capacity {
                    var c = JSONObject()
                    if let value = capacity.memoryBytes { c["memory_bytes"] = .integer(value) }
                    if let value = capacity.memoryFreeBytes { c["memory_free_bytes"] = .integer(value) }
                    if let value = capacity.backendSlots { c["backend_slots"] = .integer(value) }
                    if let value = capacity.backendSlotsFree { c["backend_slots_free"] = .integer(value) }
                    if let value = capacity.cpus, value.isFinite { c["cpus"] = .double(value) }
                    object["capacity"] = .object(c)
                }
                if !drone.warmPools.isEmpty {
                    object["warm_pools"] = .object(JSONObject(drone.warmPools.sorted { $0.key < $1.key }.map { ($0.key, JSONValue.integer($0.value)) }))
                }
                return .object(object)
            })
        } else {
            root["drones"] = .null
        }
        let (listed, omitted) = listed(now: now)
        var counts: [String: Int] = [:]
        for record in backends where record.cluster == cluster && record.isLive {
            counts[record.state?.rawValue ?? "Scheduled", default: 0] += 1
        }
        root["live_backends_by_state"] = .object(JSONObject(counts.sorted { $0.key < $1.key }.map { ($0.key, JSONValue.integer($0.value)) }))
        root["backends"] = .array(listed.map { record in
            var object = JSONObject()
            object["id"] = .string(record.backendID.rawValue)
            object["state"] = .string(record.state?.rawValue ?? "Scheduled")
            object["live"] = .bool(record.isLive)
            if let drone = record.drone { object["drone"] = .string(drone.rawValue) }
            object["state_time_ms"] = Self.milliseconds(record.time)
            if let created = record.created { object["created_ms"] = Self.milliseconds(created) }
            if let lock = record.lock { object["lock"] = .string(lock.rawValue) }
            if record.state == .ready, let sample = idle[record.backendID] {
                object["idle_secs"] = .double(sample.seconds)
                object["idle_at_ms"] = Self.milliseconds(sample.received)
            }
            return .object(object)
        })
        if omitted > 0 { root["backends_omitted"] = .integer(omitted) }
        return .object(root)
    }
}
