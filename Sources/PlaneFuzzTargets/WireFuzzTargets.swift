import ContainerRuntime
import PlaneController
import PlaneCore

/// The wire JSON of every message a NATS client can send to a controller or a drone, and
/// of the records controllers keep in JetStream KV: decoded with the wire limits; what
/// decodes is encoded again and must decode to what encodes the same; spawns go through the
/// checks and conversions a drone applies (where a huge `cpu_period` trapped).
enum WireFuzzTargets {
    /// One decoder per message type, by the type's name; the first input byte picks one.
    static let decoders: [(name: String, decode: @Sendable ([UInt8]) -> Void)] = [
        ("ScheduleRequest", { roundTrip(ScheduleRequest.self, $0) { request in
            _ = try? SpawnLimits().check(request.executable, metadata: request.metadata)
            spawnConversions(request.executable)
        } }),
        ("SpawnRequest", { roundTrip(SpawnRequest.self, $0) { spawn in
            if (try? SpawnLimits().check(spawn.executable, metadata: spawn.metadata)) != nil { spawnConversions(spawn.executable) }
            _ = spawn.maxIdleSeconds.duration
        } }),
        ("ScheduleResponse", { roundTrip(ScheduleResponse.self, $0) }),
        ("TerminationRequest", { roundTrip(TerminationRequest.self, $0) }),
        ("DrainDrone", { roundTrip(DrainDrone.self, $0) }),
        ("DroneStatusMessage", { roundTrip(DroneStatusMessage.self, $0) }),
        ("DroneConnectRequest", { roundTrip(DroneConnectRequest.self, $0) }),
        ("UpdateBackendStateMessage", { roundTrip(UpdateBackendStateMessage.self, $0) { update in
            _ = Timestamp.now().duration(since: update.time)
            _ = update.time.rfc3339
        } }),
        ("BackendStateMessage", { roundTrip(BackendStateMessage.self, $0) }),
        ("SetDnsRecord", { roundTrip(SetDnsRecord.self, $0) }),
        ("SetAcmeDnsRecord", { roundTrip(SetAcmeDnsRecord.self, $0) }),
        ("DroneLogMessage", { roundTrip(DroneLogMessage.self, $0) }),
        ("BackendLogHistoryRequest", { roundTrip(BackendLogHistoryRequest.self, $0) }),
        ("BackendStatsMessage", { roundTrip(BackendStatsMessage.self, $0) }),
        ("LogMessage", { roundTrip(LogMessage.self, $0) }),
        ("DroneLogMessages", { roundTrip([DroneLogMessage].self, $0) }),
        ("BackendRecord", { roundTrip(BackendRecord.self, $0) { record in _ = Timestamp.now().duration(since: record.time) } }),
        ("LockRecord", { roundTrip(LockRecord.self, $0) { lock in _ = Timestamp.now().duration(since: lock.created) } }),
        ("Bool", { roundTrip(Bool.self, $0) }),
        ("NullReply", { roundTrip(NullReply.self, $0) }),
        ("DroneLeaseRequest", { roundTrip(DroneLeaseRequest.self, $0) }),
        ("DroneLeaseGrant", { roundTrip(DroneLeaseGrant.self, $0) }),
        ("DroneLeaseRecord", { roundTrip(DroneLeaseRecord.self, $0) { record in
            var table = DroneLeaseTable()
            table.watchCaughtUp()
            let now = ContinuousClock.now
            table.observe(record, revision: 1, at: now)
            _ = table.verdict(for: record.drone, at: now + .seconds(3600), reassignAfter: .seconds(30), margin: .seconds(5))
        } }),
        // A KV record a drone reads (`plane_warm_pools`): the checks it makes of it, as of a
        // spawn, and the spawn it is started as must match it.
        ("WarmPoolDefinition", { roundTrip(WarmPoolDefinition.self, $0) { definition in
            _ = try? SpawnLimits().check(definition.executable, metadata: [:])
            spawnConversions(definition.executable)
            _ = definition.executable.resourceLimits.memoryLimitBytes.flatMap { UInt64(exactly: $0) }
            var spawn = SpawnRequest(cluster: definition.cluster, droneID: "drone-1", maxIdleSeconds: DurationSeconds(60), backendID: "fuzz",
                                     executable: definition.executable, runtimeClass: definition.runtimeClass, pool: definition.pool,
                                     runtimeOptions: definition.runtimeOptions, readiness: definition.readiness)
            spawn.warmPool = definition.name
            FuzzTarget.require(definition.matches(spawn), "a warm pool does not match the spawn it is started as")
        } }),
        ("BackendAccessTokenMessage", { roundTrip(BackendAccessTokenMessage.self, $0) { message in
            FuzzTarget.require(BackendAccessTokenMessage.backendID(of: message.token) == message.backendID, "a decoded access token is not its backend's")
        } }),
    ]

    static let messages = FuzzTarget("wire-json", "Every wire message type and KV record: decoded with the wire limits, re-encoded and decoded to the same value; spawns through the drone's conversions.") { raw in
        var input = FuzzInput(raw)
        let choice = Int(input.byte()) % decoders.count
        decoders[choice].decode(input.rest())
    }

    static func roundTrip<T: Codable & Hashable>(_ type: T.Type, _ bytes: [UInt8], then check: (T) -> Void = { _ in }) {
        guard let value = try? WireDecoder().decode(T.self, from: bytes) else { return }
        check(value)
        guard let encoded = try? WireEncoder().encode(value) else {
            FuzzTarget.require(false, "a decoded \(T.self) does not encode")
            return
        }
        // Compared as the bytes they encode to: a value may hold NaN (a stats message's
        // missing percentage), which is not equal to itself.
        let again = try? WireDecoder(limits: .stored).decode(T.self, from: encoded)
        let reencoded = again.flatMap { try? WireEncoder().encode($0) }
        FuzzTarget.require(reencoded == encoded, "a \(T.self) changed in an encode and decode: \(String(decoding: encoded, as: UTF8.self))")
    }

    /// What the drone makes of an accepted spawn's executable.
    static func spawnConversions(_ executable: DockerExecutableConfig) {
        guard let limits = try? ResourceLimitsSpec(wire: executable.resourceLimits) else { return }
        _ = try? limits.validate()
        for mount in executable.volumeMounts { _ = try? MountSpec(wire: mount) }
    }

    static let fleetSchema = JSONValue.object(JSONObject([
        ("type", .string("object")), ("additionalProperties", .bool(false)),
        ("properties", .object(JSONObject([("pids_limit", .object(JSONObject([("type", .string("integer")), ("minimum", .integer(1)), ("maximum", .integer(4_194_304))]))),
                                           ("oci_runtime", .object(JSONObject([("type", .string("string")), ("pattern", .string("^[a-z]+$"))])))]))),
    ]))

    static let httpSpawn = FuzzTarget("http-spawn", "The controller HTTP API's spawn body (HTTPSpawnRequest) and the schedule request made of it.") { raw in
        // The same bytes as a connect body.
        if let connect = try? HTTPConnectRequest.parse(Array(raw)) {
            _ = try? connect.scheduleRequest(cluster: "plane.test", services: ["fuzz": "plane-test-server:dev"])
        }
        guard let request = try? HTTPSpawnRequest.parse(Array(raw)) else { return }
        // The default service refuses caller env and mounts; the open one takes what its
        // policy allows, so the policy checks see every body too.
        _ = try? request.scheduleRequest(cluster: "plane.test", service: "plane-test-server:dev", named: "fuzz")
        var open = HTTPServiceConfiguration(image: "plane-test-server:dev", env: ["FIXED": "1"], allowedEnv: ["*"], allowedMountSources: ["/srv", "data"])
        open.allowedRuntimeClasses = ["*"]
        open.allowedPools = ["*"]
        open.allowedRuntimeOptions = ["*"]
        guard let schedule = try? request.scheduleRequest(cluster: "plane.test", service: open, named: "fuzz") else { return }
        _ = try? SpawnLimits().check(schedule.executable, metadata: schedule.metadata)
        // The placement of it, options checked against a schema.
        var registry = DroneRegistry()
        let now = ContinuousClock.now
        registry.heartbeat(DroneStatusMessage(droneID: "drone-1", cluster: "plane.test", droneVersion: "fuzz", runtime: "oci", runtimeClasses: ["sandbox"],
                                              pool: schedule.pool, optionsSchema: fleetSchema,
                                              capacity: DroneCapacity(memoryFreeBytes: 1 << 30, backendSlotsFree: 1)), at: now)
        var generator = SystemRandomNumberGenerator()
        _ = registry.choose(in: "plane.test", requirements: PlacementRequirements(schedule), at: now, using: &generator)
        _ = schedule.maxIdleSeconds.duration
        roundTrip(ScheduleRequest.self, (try? WireEncoder().encode(schedule)) ?? [])
    }
}
