import PlaneCore
import Testing
@testable import PlaneController

/// Issue 14's placement as a pure decision: pool, runtime class, runtime options against each
/// runtime's schema, free memory and free slots filter the ready drones before the
/// power-of-two choice, and a request none meets learns which requirement it was.
struct PlacementTests {
    let t0 = ContinuousClock.now

    static let pidsSchema = JSONValue.object(JSONObject([
        ("type", .string("object")), ("additionalProperties", .bool(false)),
        ("properties", .object(JSONObject([("pids_limit", .object(JSONObject([("type", .string("integer")), ("minimum", .integer(1))])))]))),
    ]))

    func status(_ drone: DroneID, runtime: String = "oci", classes: [FleetLabel] = [], pool: FleetLabel? = nil, schema: JSONValue? = nil,
                memoryFree: UInt64? = nil, slotsFree: UInt32? = nil, running: UInt32 = 0) -> DroneStatusMessage {
        DroneStatusMessage(droneID: drone, cluster: "plane.test", droneVersion: "test", runningBackends: running, runtime: runtime,
                           runtimeClasses: classes, pool: pool, optionsSchema: schema,
                           capacity: memoryFree == nil && slotsFree == nil ? nil : DroneCapacity(memoryFreeBytes: memoryFree, backendSlotsFree: slotsFree))
    }

    func choose(_ registry: DroneRegistry, _ requirements: PlacementRequirements, excluding: Set<DroneID> = []) -> DroneChoice {
        var generator = SystemRandomNumberGenerator()
        return registry.choose(in: "plane.test", requirements: requirements, excluding: excluding, at: t0 + .seconds(1), using: &generator)
    }

    func chosen(_ choice: DroneChoice) -> DroneID? {
        if case .chosen(let drone) = choice { return drone }
        return nil
    }

    func reason(_ choice: DroneChoice) -> String {
        switch choice {
        case .chosen(let drone): "chosen \(drone)"
        case .noDrone(let reason): reason
        case .invalidOptions(let problems): problems
        }
    }

    @Test func aClassKeepsTheDronesThatHaveItAndNoClassTakesAny() {
        var registry = DroneRegistry()
        let sandbox = DroneID.random(), fast = DroneID.random(), plain = DroneID.random()
        registry.heartbeat(status(sandbox, classes: ["sandbox"]), at: t0)
        registry.heartbeat(status(fast, classes: ["fast", "gpu"]), at: t0)
        registry.heartbeat(status(plain), at: t0)
        for _ in 0..<50 {
            #expect(chosen(choose(registry, PlacementRequirements(runtimeClass: "sandbox"))) == sandbox)
            #expect(chosen(choose(registry, PlacementRequirements(runtimeClass: "gpu"))) == fast)
        }
        var seen: Set<DroneID> = []
        for _ in 0..<200 { if let drone = chosen(choose(registry, PlacementRequirements())) { seen.insert(drone) } }
        #expect(seen == [sandbox, fast, plain])
        let missing = reason(choose(registry, PlacementRequirements(runtimeClass: "tpu")))
        #expect(missing.contains("runtime class 'tpu'") && missing.contains("fast, gpu, sandbox"), "\(missing)")
    }

    @Test func poolsConfineSpawnsBothWays() {
        var registry = DroneRegistry()
        let west = DroneID.random(), plain = DroneID.random()
        registry.heartbeat(status(west, pool: "west"), at: t0)
        registry.heartbeat(status(plain), at: t0)
        for _ in 0..<50 {
            #expect(chosen(choose(registry, PlacementRequirements(pool: "west"))) == west)
            // A spawn without a pool goes to the default pool only.
            #expect(chosen(choose(registry, PlacementRequirements())) == plain)
        }
        let missing = reason(choose(registry, PlacementRequirements(pool: "east")))
        #expect(missing.contains("pool 'east'") && missing.contains("'west'") && missing.contains("default"), "\(missing)")
        // A class is looked for within the pool.
        let noClass = reason(choose(registry, PlacementRequirements(pool: "west", runtimeClass: "sandbox")))
        #expect(noClass.contains("in pool 'west'") && noClass.contains("none"), "\(noClass)")
    }

    @Test func optionsGoOnlyToRuntimesWhoseSchemaTakesThem() {
        var registry = DroneRegistry()
        let oci = DroneID.random(), none = DroneID.random()
        registry.heartbeat(status(oci, runtime: "oci", schema: Self.pidsSchema), at: t0)
        registry.heartbeat(status(none, runtime: "process"), at: t0)
        let good = PlacementRequirements(runtimeOptions: JSONObject([("pids_limit", .integer(64))]))
        for _ in 0..<50 { #expect(chosen(choose(registry, good)) == oci) }
        let bad = PlacementRequirements(runtimeOptions: JSONObject([("pids_limit", .string("many"))]))
        guard case .invalidOptions(let problems) = choose(registry, bad) else { Issue.record("\(choose(registry, bad))"); return }
        #expect(problems.contains("runtime_options") && problems.contains("oci, process"), "\(problems)")
        let unknown = PlacementRequirements(runtimeOptions: JSONObject([("nofile", .integer(64))]))
        guard case .invalidOptions = choose(registry, unknown) else { Issue.record("an unknown option must be refused"); return }
    }

    @Test func memoryAndSlotsExcludeFullDronesAndCountAssignmentsUntilAHeartbeatIncludesThem() {
        var registry = DroneRegistry()
        let small = DroneID.random(), big = DroneID.random(), old = DroneID.random()
        registry.heartbeat(status(small, memoryFree: 512 << 20, slotsFree: 10), at: t0)
        registry.heartbeat(status(big, memoryFree: 4 << 30, slotsFree: 10), at: t0)
        let gigabyte = PlacementRequirements(memoryBytes: 1 << 30)
        for _ in 0..<50 { #expect(chosen(choose(registry, gigabyte)) == big) }
        // Three gigabytes assigned since the heartbeat: one is left.
        let spawned = (0..<4).map { _ in BackendID.random() }
        for id in spawned.prefix(3) { registry.assign(big, memoryBytes: 1 << 30, backend: id, at: t0 + .milliseconds(100)) }
        #expect(chosen(choose(registry, gigabyte)) == big)
        registry.assign(big, memoryBytes: 1 << 30, backend: spawned[3], at: t0 + .milliseconds(200))
        let refused = reason(choose(registry, gigabyte))
        #expect(refused.contains("\(1 << 30) bytes of memory free") && refused.contains("the most any has: \(512 << 20)"), "\(refused)")
        // The drone accepts them. A heartbeat it read before it reserved them arrives after
        // the answers: they still count.
        for id in spawned { registry.answered(big, backend: id, accepted: true, at: t0 + .milliseconds(300)) }
        registry.heartbeat(status(big, memoryFree: 4 << 30, slotsFree: 10), at: t0 + .milliseconds(400))
        #expect(reason(choose(registry, gigabyte)).contains("memory free"))
        // A heartbeat from well after the answers says what the drone has now.
        registry.heartbeat(status(big, memoryFree: 2 << 30, slotsFree: 0), at: t0 + .seconds(2))
        let full = reason(choose(registry, gigabyte))
        #expect(full.contains("full"), "\(full)")
        // A drone that says nothing of its capacity (v0.3.10) is not excluded.
        registry.heartbeat(DroneStatusMessage(droneID: old, cluster: "plane.test", droneVersion: "0.3.10"), at: t0)
        #expect(chosen(choose(registry, gigabyte)) == old)
    }

    @Test func aRefusedOrUnansweredSpawnReservesNothingAndOneStillOutAlwaysCounts() {
        var registry = DroneRegistry()
        let drone = DroneID.random()
        registry.heartbeat(status(drone, memoryFree: 1 << 30, slotsFree: 10), at: t0)
        let gigabyte = PlacementRequirements(memoryBytes: 1 << 30)
        let (first, second) = (BackendID.random(), BackendID.random())
        registry.assign(drone, memoryBytes: 1 << 30, backend: first, at: t0 + .milliseconds(10))
        // Out: heartbeats (read before the drone saw it) do not clear it.
        registry.heartbeat(status(drone, memoryFree: 1 << 30, slotsFree: 10), at: t0 + .seconds(3))
        #expect(reason(choose(registry, gigabyte)).contains("memory free"))
        registry.answered(drone, backend: first, accepted: false, at: t0 + .seconds(3))
        #expect(chosen(choose(registry, gigabyte)) == drone)
        registry.assign(drone, memoryBytes: 1 << 30, backend: second, at: t0 + .seconds(4))
        registry.answered(drone, backend: second, accepted: true, at: t0 + .seconds(4))
        #expect(reason(choose(registry, gigabyte)).contains("memory free"))
    }

    @Test func thePowerOfTwoChoiceStillPrefersTheLessLoadedAmongTheMatching() {
        var registry = DroneRegistry()
        let busy = DroneID.random(), idle = DroneID.random(), other = DroneID.random()
        registry.heartbeat(status(busy, classes: ["a"], running: 50), at: t0)
        registry.heartbeat(status(idle, classes: ["a"], running: 0), at: t0)
        registry.heartbeat(status(other, classes: ["b"], running: 0), at: t0)
        for _ in 0..<50 { #expect(chosen(choose(registry, PlacementRequirements(runtimeClass: "a"))) == idle) }
    }

    @Test func noReadyDroneAndEveryDroneTriedHaveReasons() {
        var registry = DroneRegistry()
        #expect(reason(choose(registry, PlacementRequirements())).contains("no drone of cluster plane.test is ready"))
        let drone = DroneID.random()
        registry.heartbeat(status(drone), at: t0)
        #expect(reason(choose(registry, PlacementRequirements(), excluding: [drone])).contains("every ready drone was tried"))
    }

    @Test func aHugeOptionsSchemaIsNotKept() {
        var registry = DroneRegistry()
        let drone = DroneID.random()
        let huge = JSONValue.object(JSONObject([("description", .string(String(repeating: "x", count: 20_000)))]))
        registry.heartbeat(status(drone, schema: huge), at: t0)
        #expect(registry.record(of: drone)?.optionsSchema == nil)
        guard case .invalidOptions = choose(registry, PlacementRequirements(runtimeOptions: JSONObject([("a", .integer(1))]))) else {
            Issue.record("a drone whose schema was dropped takes no options"); return
        }
    }

    @Test func requirementsComeFromTheRequest() {
        var executable = DockerExecutableConfig(image: "x")
        executable.resourceLimits.memoryLimitBytes = 1 << 30
        let request = ScheduleRequest(cluster: "plane.test", maxIdleSeconds: 30, executable: executable, runtimeClass: "sandbox", pool: "west",
                                      runtimeOptions: JSONObject([("pids_limit", .integer(5))]))
        let requirements = PlacementRequirements(request)
        #expect(requirements == PlacementRequirements(pool: "west", runtimeClass: "sandbox", memoryBytes: 1 << 30, runtimeOptions: JSONObject([("pids_limit", .integer(5))])))
        #expect(request.usesFleetExtensions)
        #expect(!ScheduleRequest(cluster: "plane.test", maxIdleSeconds: 30, executable: executable, lock: "l").usesFleetExtensions)
    }

    @Test func aWarmPoolsSpawnGoesToADroneWithAPreStartedBackendLeft() {
        var registry = DroneRegistry()
        let (cold, warm) = (DroneID.random(), DroneID.random())
        registry.heartbeat(status(cold), at: t0)
        var warmStatus = status(warm, running: 50)
        warmStatus.warmPools = ["editor": 2]
        registry.heartbeat(warmStatus, at: t0)
        let asks = PlacementRequirements(warmPool: "editor")
        // The warm drone, however loaded, while it has one left as this controller sees it.
        for _ in 0..<20 { #expect(chosen(choose(registry, asks)) == warm) }
        registry.assign(warm, warmPool: "editor", at: t0 + .milliseconds(10))
        #expect(chosen(choose(registry, asks)) == warm)
        registry.assign(warm, warmPool: "editor", at: t0 + .milliseconds(20))
        // Both taken: the usual choice by load (the cold drone, less loaded).
        for _ in 0..<20 { #expect(chosen(choose(registry, asks)) == cold) }
        // Another pool's backends do not count; nor does a preference that no drone meets.
        #expect(registry.warmBackends(of: warm, pool: "other") == 0)
        #expect(chosen(choose(registry, PlacementRequirements(warmPool: "other"))) == cold)
    }
}
