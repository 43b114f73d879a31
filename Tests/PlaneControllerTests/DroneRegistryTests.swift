import PlaneCore
import Testing
@testable import PlaneController

/// The scheduler's decisions as a state machine under a manual clock (spec §4.3 unit tests
/// plus the load-aware choice).
struct DroneRegistryTests {
    let t0 = ContinuousClock.now

    func heartbeat(_ drone: DroneID, cluster: ClusterName = "plane.test", ready: Bool = true, running: UInt32? = nil) -> DroneStatusMessage {
        DroneStatusMessage(droneID: drone, cluster: cluster, droneVersion: "0.3.10", ready: ready, state: ready ? .ready : .draining, runningBackends: running)
    }

    func choose(_ registry: DroneRegistry, in cluster: ClusterName = "plane.test", at offset: Duration, excluding: Set<DroneID> = []) -> DroneID? {
        var generator = SystemRandomNumberGenerator()
        return registry.choose(in: cluster, excluding: excluding, at: t0 + offset, using: &generator)
    }

    @Test func noDrones() {
        #expect(choose(DroneRegistry(), at: .zero) == nil)
    }

    @Test func oneDrone() {
        var registry = DroneRegistry()
        let drone = DroneID.random()
        registry.heartbeat(heartbeat(drone), at: t0)
        #expect(choose(registry, at: .seconds(3)) == drone)
    }

    @Test func oneDroneWrongCluster() {
        var registry = DroneRegistry()
        registry.heartbeat(heartbeat(DroneID.random(), cluster: "a.test"), at: t0)
        #expect(choose(registry, in: "b.test", at: .seconds(1)) == nil)
    }

    @Test func oneDroneExpired() {
        var registry = DroneRegistry()
        registry.heartbeat(heartbeat(DroneID.random()), at: t0)
        #expect(choose(registry, at: .seconds(9)) == nil)
        // The window is strict: seen 5 s ago is too old, 4.999 s is fine.
        #expect(choose(registry, at: .seconds(5)) == nil)
        #expect(choose(registry, at: .milliseconds(4999)) != nil)
    }

    @Test func notReadyAndExcludedDronesAreSkipped() {
        var registry = DroneRegistry()
        let draining = DroneID.random()
        let tried = DroneID.random()
        registry.heartbeat(heartbeat(draining, ready: false), at: t0)
        registry.heartbeat(heartbeat(tried), at: t0)
        #expect(choose(registry, at: .seconds(1), excluding: [tried]) == nil)
        #expect(choose(registry, at: .seconds(1)) == tried)
        #expect(registry.all.count == 2 && registry.record(of: draining)?.state == .draining)
    }

    @Test func theLessLoadedOfTwoWins() {
        var registry = DroneRegistry()
        let busy = DroneID.random()
        let idle = DroneID.random()
        registry.heartbeat(heartbeat(busy, running: 50), at: t0)
        registry.heartbeat(heartbeat(idle, running: 2), at: t0)
        // With two candidates both are always compared: the idle one always wins.
        for _ in 0..<50 { #expect(choose(registry, at: .seconds(1)) == idle) }
        // Recent assignments count as load until the window passes.
        for _ in 0..<60 { registry.assign(idle, at: t0 + .seconds(1)) }
        #expect(registry.load(of: idle, at: t0 + .seconds(2)) == 62)
        #expect(choose(registry, at: .seconds(2)) == busy)
        registry.heartbeat(heartbeat(busy, running: 50), at: t0 + .seconds(11))
        registry.heartbeat(heartbeat(idle, running: 2), at: t0 + .seconds(11))
        #expect(registry.load(of: idle, at: t0 + .seconds(12)) == 2)
        #expect(choose(registry, at: .seconds(12)) == idle)
    }

    @Test func loadSpreadsOverManyDrones() {
        var registry = DroneRegistry()
        let drones = (0..<10).map { _ in DroneID.random() }
        for drone in drones { registry.heartbeat(heartbeat(drone), at: t0) }
        var counts: [DroneID: Int] = [:]
        for _ in 0..<1000 {
            let chosen = choose(registry, at: .seconds(1))!
            registry.assign(chosen, at: t0 + .seconds(1))
            counts[chosen, default: 0] += 1
        }
        // Power of two choices keeps the spread tight (pure random would not).
        #expect(counts.values.max()! - counts.values.min()! <= 10, "\(counts.values.sorted())")
    }

    @Test func bearerTokens() {
        let tokens = (0..<100).map { _ in BearerToken.generate() }
        #expect(Set(tokens).count == 100)
        #expect(tokens.allSatisfy { $0.count == 30 && $0.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber) } })
    }
    /// Heartbeats come from anyone who can publish: the registry keeps at most `maxDrones`,
    /// forgets silent ones, and a drone it knows always gets through.
    @Test func theRegistryIsBounded() {
        var registry = DroneRegistry(maxDrones: 3, forgetAfter: .seconds(100))
        let known = (0..<3).map { _ in DroneID.random() }
        for drone in known { registry.heartbeat(heartbeat(drone), at: t0) }
        let fourth = registry.heartbeat(heartbeat(.random()), at: t0 + .seconds(10))
        #expect(!fourth, "a fourth drone while three are live")
        let again = registry.heartbeat(heartbeat(known[0]), at: t0 + .seconds(60))
        #expect(again, "a known drone is always heard")
        // Two of them fall silent long enough to be forgotten: room for new ones.
        let newcomer = DroneID.random()
        let admitted = registry.heartbeat(heartbeat(newcomer), at: t0 + .seconds(150))
        #expect(admitted)
        #expect(registry.all.count == 2 && registry.record(of: known[1]) == nil && registry.record(of: newcomer) != nil)
        #expect(!registry.isAlive(known[1], at: t0 + .seconds(150), within: .seconds(60)))
        let long = DroneStatusMessage(droneID: .random(), cluster: "plane.test", droneVersion: String(repeating: "v", count: 100_000))
        registry.heartbeat(long, at: t0 + .seconds(151))
        #expect(registry.record(of: long.droneID)?.version.count == 64)
    }
}

struct HTTPSpawnRequestTests {
    @Test func emptyBodiesAreDefaults() throws {
        #expect(try HTTPSpawnRequest.parse([]) == HTTPSpawnRequest())
        #expect(try HTTPSpawnRequest.parse(Array(" {} ".utf8)) == HTTPSpawnRequest())
        let wire = try HTTPSpawnRequest.parse(Array("{}".utf8)).scheduleRequest(cluster: "plane.test", service: "img:1", named: "svc")
        #expect(wire.maxIdleSeconds == 60 && wire.executable.image == "img:1" && wire.lock == nil && !wire.requireBearerToken)
    }

    @Test func fieldsAndErrors() throws {
        let full = try HTTPSpawnRequest.parse(Array(#"{"lock":"a b","require_bearer_token":true,"port":9000,"env":{"K":"V"},"grace_period_seconds":5,"volume_mounts":null}"#.utf8))
        #expect(full.lock?.rawValue == "a b" && full.requireBearerToken && full.port == 9000 && full.env == ["K": "V"] && full.gracePeriodSeconds == 5)
        for (body, needle) in [("[]", "JSON object"), ("{\"port\":0}", "'port'"), ("{\"port\":70000}", "'port'"), ("{\"env\":{\"K\":1}}", "'env'"),
                               ("{\"grace_period_seconds\":-1}", "'grace_period_seconds'"), ("{\"x\":1}", "Unknown field 'x'"), ("{", "not valid JSON"),
                               ("{\"lock\":\"\"}", "'lock'")] {
            do {
                _ = try HTTPSpawnRequest.parse(Array(body.utf8))
                Issue.record("\(body) must be rejected")
            } catch {
                #expect(error.code == .invalidRequest && error.message.contains(needle), "\(body): \(error.message)")
            }
        }
    }

}
