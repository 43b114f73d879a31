import Foundation
import ContainerRuntime
import NATS
import PlaneCore
@testable import PlaneDrone
import PlaneMessaging
import PlaneTestSupport
import ScriptedRuntime
import Testing

/// Faults that a real daemon cannot be made to show on demand, scripted on the in-memory
/// runtime: a lost exit event, a dead runtime, a slow pull, a broken image, crashes while
/// the drone is away. The agent, its store and NATS are the real ones.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct DroneAgentFaultTests {
    func withScriptedCluster(_ body: (NATSServerProcess, TestRelay, DroneObserver, TestRuntimes) async throws -> Void) async throws {
        try await withDroneCluster(.scripted, body)
    }

    /// A drone on ports no other suite uses (suites run in parallel; a port reserved for a
    /// backend that never binds it would look free to another suite's drone).
    func startDrone(_ server: NATSServerProcess, _ runtimes: TestRuntimes, id: DroneID = .random(), statePath: String? = nil, stats: Bool = true,
                    adjust: (inout AgentConfiguration) -> Void = { _ in }) async throws -> RunningDrone {
        try await RunningDrone(server: server, runtimes: runtimes, id: id, statePath: statePath, stats: stats) {
            $0.portRange = 24000...24499
            adjust(&$0)
        }
    }

    func terminate(_ backend: BackendID, via client: NATSClient) async throws {
        _ = try await PlaneMessenger(client: client).request(PlaneSubjects.terminate("plane.test", backend),
                                                             TerminationRequest(cluster: "plane.test", backendID: backend), timeout: .seconds(2))
    }

    @Test func aMissedExitEventIsCaughtByTheStatusCheck() async throws {
        try await withScriptedCluster { server, relay, _, runtimes in
            let drone = try await startDrone(server, runtimes)
            let request = spawnRequest(drone: drone.id, image: runtimes.image, idle: 1000)
            #expect(try await spawn(request, via: drone.client))
            #expect(try await eventually { relay.states(of: request.backendID).last == .ready })
            runtimes.host.update { $0.dropsEvents = true }
            runtimes.host.crash(request.backendID, code: 3)
            #expect(try await eventually(timeout: .seconds(10)) { relay.states(of: request.backendID).last == .failed })
            #expect(try await drone.store.backend(request.backendID)?.exitCode == 3)
            #expect(try await eventually { runtimes.host.backendIDs.isEmpty })
            await drone.stop()
        }
    }

    /// A runtime without host networking (the OCI runtime's `network = "namespace"`) gets
    /// a `bridge` plan; the probe, the route and the store use the address it returns.
    @Test func aRuntimeWithoutHostNetworkingIsReachedAtTheAddressItReturns() async throws {
        try await withScriptedCluster { server, relay, _, runtimes in
            var runtimes = runtimes
            runtimes.ownAddress = "127.0.0.2"
            let drone = try await startDrone(server, runtimes)
            let request = spawnRequest(drone: drone.id, image: runtimes.image, idle: 1000)
            #expect(try await spawn(request, via: drone.client))
            #expect(try await eventually { relay.states(of: request.backendID) == [.loading, .starting, .ready] })
            let route = try #require(drone.agent.routes.route(for: request.backendID.rawValue))
            #expect(route.address.hasPrefix("127.0.0.2:"), "\(route.address)")
            let port = try #require(Int(route.address.split(separator: ":").last ?? ""))
            #expect(try await HTTPProbe(host: "127.0.0.2", port: port).get("/").body == "Hello World!")
            #expect(try await drone.store.backend(request.backendID)?.address == route.address)
            await drone.stop()
        }
    }

    /// A full disk under the drone's state (a backend writing to the same file system can
    /// cause one): the state changes its store cannot record still reach the cluster, a
    /// spawn it cannot record is refused, heartbeats go on, and once there is room again it
    /// records and spawns as before.
    @Test func aFullDiskDoesNotSilenceTheDrone() async throws {
        try await withScriptedCluster { server, relay, observer, runtimes in
            let statePath = try TestEnvironment.temporaryDirectory("drone-full-disk")
            _ = try await SystemProgram("mount", debianPackage: "mount").run(["-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", statePath])
            defer { umount2(statePath, Int32(MNT_DETACH)) }
            let drone = try await startDrone(server, runtimes, statePath: statePath)
            let running = spawnRequest(drone: drone.id, image: runtimes.image, idle: 1000)
            #expect(try await spawn(running, via: drone.client))
            #expect(try await eventually { relay.states(of: running.backendID).last == .ready })
            #expect(try await eventually { await drone.agent.context.outbox.pendingCount == 0 })

            // Every page of the file system taken.
            let filler = statePath + "/filler"
            let fd = open(filler, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
            #expect(fd >= 0)
            for size in [65536, 4096, 512, 1] {
                let chunk = [UInt8](repeating: 0xAB, count: size)
                while write(fd, chunk, size) == size {}
            }
            close(fd)

            // Its end is told although the store cannot record it.
            let heartbeatsBefore = observer.heartbeats.withLock { $0.filter { $0.droneID == drone.id }.count }
            try await terminate(running.backendID, via: drone.client)
            #expect(try await eventually(timeout: .seconds(20)) { relay.states(of: running.backendID).last == .terminated })
            #expect(try await drone.store.backend(running.backendID)?.state == .ready, "the store could not record it (or the test did not fill the disk)")
            #expect(try await eventually { runtimes.host.backendIDs.isEmpty })
            // A spawn it cannot record is refused; the drone still runs and beats.
            let refused = spawnRequest(drone: drone.id, image: runtimes.image, idle: 1000)
            #expect(try await spawn(refused, via: drone.client) == false)
            #expect(relay.states(of: refused.backendID).isEmpty)
            #expect(try await eventually { observer.heartbeats.withLock { $0.filter { $0.droneID == drone.id }.count } >= heartbeatsBefore + 2 })

            // Room again: business as usual.
            try FileManager.default.removeItem(atPath: filler)
            let next = spawnRequest(drone: drone.id, image: runtimes.image, idle: 1000)
            #expect(try await spawn(next, via: drone.client))
            #expect(try await eventually { relay.states(of: next.backendID).last == .ready })
            #expect(try await drone.store.backend(next.backendID)?.state == .ready)
            try await terminate(next.backendID, via: drone.client)
            #expect(try await eventually { relay.states(of: next.backendID).last == .terminated })
            await drone.stop()
        }
    }

    @Test func crashesAfterReadyAreFailedAndBrokenImagesErrorLoading() async throws {
        try await withScriptedCluster { server, relay, _, runtimes in
            runtimes.host.update { $0.images["broken"] = .failsToStart("exec /server: exec format error") }
            let drone = try await startDrone(server, runtimes)
            let crashing = spawnRequest(drone: drone.id, image: runtimes.image, idle: 1000)
            let broken = spawnRequest(drone: drone.id, image: "broken")
            #expect(try await spawn(crashing, via: drone.client))
            #expect(try await spawn(broken, via: drone.client))
            #expect(try await eventually { relay.states(of: broken.backendID) == [.loading, .errorLoading] })
            #expect(try await eventually { relay.states(of: crashing.backendID).last == .ready })
            runtimes.host.crash(crashing.backendID, code: 137)
            #expect(try await eventually { relay.states(of: crashing.backendID) == [.loading, .starting, .ready, .failed] })
            #expect(try await drone.store.backend(crashing.backendID)?.exitCode == 137)
            #expect(drone.agent.routes.route(for: crashing.backendID.rawValue) == nil)
            #expect(try await eventually { runtimes.host.backendIDs.isEmpty })
            #expect(try await eventually { drone.agent.supervisedBackends.isEmpty })
            await drone.stop()
        }
    }

    @Test func aDeadRuntimeEndsTheSpawnInErrorLoadingAndTheDroneGoesOn() async throws {
        try await withScriptedCluster { server, relay, _, runtimes in
            let drone = try await startDrone(server, runtimes)
            runtimes.host.update { $0.available = false }
            let lost = spawnRequest(drone: drone.id, image: runtimes.image)
            #expect(try await spawn(lost, via: drone.client))
            #expect(try await eventually { relay.states(of: lost.backendID) == [.loading, .errorLoading] })
            // The runtime comes back: the next spawn works.
            runtimes.host.update { $0.available = true }
            let next = spawnRequest(drone: drone.id, image: runtimes.image)
            #expect(try await spawn(next, via: drone.client))
            #expect(try await eventually { relay.states(of: next.backendID).last == .ready })
            try await terminate(next.backendID, via: drone.client)
            #expect(try await eventually { relay.states(of: next.backendID).last == .terminated })
            await drone.stop()
        }
    }

    @Test func aCleanupThatFailsIsRetriedUntilTheRuntimeAnswers() async throws {
        try await withScriptedCluster { server, relay, observer, runtimes in
            let drone = try await startDrone(server, runtimes)
            let request = spawnRequest(drone: drone.id, image: runtimes.image, idle: 1000)
            #expect(try await spawn(request, via: drone.client))
            #expect(try await eventually { relay.states(of: request.backendID).last == .ready })
            runtimes.host.update { $0.available = false }
            try await terminate(request.backendID, via: drone.client)
            // Terminated is reported at once; the container stays while the runtime is down.
            #expect(try await eventually { relay.states(of: request.backendID).last == .terminated })
            #expect(drone.agent.routes.route(for: request.backendID.rawValue) == nil)
            try await Task.sleep(for: .seconds(2))
            #expect(runtimes.host.backendIDs == [request.backendID])
            #expect(runtimes.host.callCount("stop") >= 2, "the cleanup is retried")
            #expect(observer.lastHeartbeat(of: drone.id)?.runningBackends == 0)
            runtimes.host.update { $0.available = true }
            #expect(try await eventually(timeout: .seconds(10)) { runtimes.host.backendIDs.isEmpty })
            #expect(try await eventually { drone.agent.supervisedBackends.isEmpty })
            await drone.stop()
        }
    }

    @Test func terminationDuringASlowPullNeverStartsTheBackend() async throws {
        try await withScriptedCluster { server, relay, _, runtimes in
            runtimes.host.update { $0.prepareDelay = .seconds(2) }
            let drone = try await startDrone(server, runtimes)
            let request = spawnRequest(drone: drone.id, image: runtimes.image, idle: 1000)
            #expect(try await spawn(request, via: drone.client))
            try await terminate(request.backendID, via: drone.client)
            #expect(try await eventually { relay.states(of: request.backendID) == [.loading, .terminated] })
            try await Task.sleep(for: .seconds(3))
            #expect(runtimes.host.callCount("start") == 0)
            #expect(runtimes.host.backendIDs.isEmpty)
            #expect(relay.states(of: request.backendID) == [.loading, .terminated])
            await drone.stop()
        }
    }

    /// The runtime finishes a start it was inside when the termination came (as dockerd
    /// finishes a create): the cleanup waits for it, so nothing is left running.
    @Test func terminationDuringASlowStartLeavesNothingBehind() async throws {
        try await withScriptedCluster { server, relay, _, runtimes in
            runtimes.host.update { $0.startDelay = .seconds(2) }
            let drone = try await startDrone(server, runtimes)
            let request = spawnRequest(drone: drone.id, image: runtimes.image, idle: 1000)
            #expect(try await spawn(request, via: drone.client))
            #expect(try await eventually { runtimes.host.callCount("start") == 1 })
            try await terminate(request.backendID, via: drone.client)
            #expect(try await eventually { relay.states(of: request.backendID) == [.loading, .terminated] })
            // Past the start's end: what it made is removed, not left running.
            try await Task.sleep(for: .seconds(3))
            #expect(try await eventually(timeout: .seconds(10)) { runtimes.host.backendIDs.isEmpty }, "the backend the runtime finished starting is removed")
            #expect(runtimes.host.callCount("start") == 1)
            #expect(relay.states(of: request.backendID) == [.loading, .terminated])
            #expect(try await eventually { drone.agent.supervisedBackends.isEmpty })
            await drone.stop()
        }
    }

    @Test func concurrentDuplicateSpawnsStartOneBackend() async throws {
        try await withScriptedCluster { server, relay, _, runtimes in
            let drone = try await startDrone(server, runtimes)
            let request = spawnRequest(drone: drone.id, image: runtimes.image, idle: 1000)
            let answers = try await withThrowingTaskGroup(of: Bool.self) { group in
                for _ in 0..<5 { group.addTask { try await spawn(request, via: drone.client) } }
                return try await group.reduce(into: [Bool]()) { $0.append($1) }
            }
            // Each is answered as the first was (the backend is the drone's); one starts.
            #expect(answers == [true, true, true, true, true], "\(answers)")
            #expect(try await eventually { relay.states(of: request.backendID).last == .ready })
            #expect(runtimes.host.callCount("start") == 1)
            #expect(relay.states(of: request.backendID) == [.loading, .starting, .ready])
            try await terminate(request.backendID, via: drone.client)
            #expect(try await eventually { relay.states(of: request.backendID).last == .terminated })
            await drone.stop()
        }
    }

    /// The proxy knows a backend before its spawn is answered: a client told of it at once
    /// (a connect answers as soon as the spawn is) is held until Ready, never answered 404.
    /// The drone used to tell the proxy only when it reported `Loading`, after the answer.
    @Test func theProxyHoldsRequestsForABackendBeforeItsSpawnIsAnswered() async throws {
        try await withScriptedCluster { server, relay, _, runtimes in
            let drone = try await startDrone(server, runtimes)
            var unknown: [BackendID] = []
            for _ in 0..<20 {
                let request = spawnRequest(drone: drone.id, image: runtimes.image, idle: 1000)
                #expect(try await spawn(request, via: drone.client))
                let id = request.backendID
                if !drone.agent.routes.isStarting(id), drone.agent.routes.route(for: id.rawValue) == nil { unknown.append(id) }
            }
            #expect(unknown.isEmpty, "unknown to the proxy when their spawns were answered: \(unknown)")
            await drone.stop()
        }
    }

    @Test func aRuntimeWithoutStatsStillRunsBackendsAndSendsNoStats() async throws {
        try await withScriptedCluster { server, relay, observer, runtimes in
            let drone = try await startDrone(server, runtimes, stats: false)
            let request = spawnRequest(drone: drone.id, image: runtimes.image, idle: 1000)
            #expect(try await spawn(request, via: drone.client))
            #expect(try await eventually { relay.states(of: request.backendID).last == .ready })
            #expect(try await eventually { observer.logs.withLock { $0.contains { $0.backendID == request.backendID } } })
            try await Task.sleep(for: .seconds(3))
            #expect(observer.stats.withLock { $0.isEmpty })
            #expect(runtimes.host.callCount("stats") == 0)
            try await terminate(request.backendID, via: drone.client)
            #expect(try await eventually { relay.states(of: request.backendID).last == .terminated })
            await drone.stop()
        }
    }

    /// While the drone is away one backend exits, one disappears, and a container the
    /// store never knew appears: on start each is reconciled, the survivor re-attached.
    @Test func restartReconcilesWhatHappenedWhileAway() async throws {
        try await withScriptedCluster { server, relay, _, runtimes in
            let first = try await startDrone(server, runtimes)
            let survivor = spawnRequest(drone: first.id, image: runtimes.image, idle: 1000)
            let exited = spawnRequest(drone: first.id, image: runtimes.image, idle: 1000)
            let vanished = spawnRequest(drone: first.id, image: runtimes.image, idle: 1000)
            for request in [survivor, exited, vanished] { #expect(try await spawn(request, via: first.client)) }
            for request in [survivor, exited, vanished] { #expect(try await eventually { relay.states(of: request.backendID).last == .ready }) }
            await first.stop()
            runtimes.host.crash(exited.backendID, code: 0)
            try await first.runtime.remove(vanished.backendID)
            let stranger = BackendSpec(backendID: .random(), droneID: first.id, image: runtimes.image, port: UInt16(try TestEnvironment.freePort()),
                                       network: .host(address: "127.0.0.1"))
            _ = try await first.runtime.start(stranger)

            let again = try await startDrone(server, runtimes, id: first.id, statePath: first.statePath)
            #expect(try await eventually { relay.states(of: exited.backendID).last == .exited })
            #expect(try await eventually { relay.states(of: vanished.backendID).last == .failed })
            #expect(try await again.runtime.status(of: stranger.backendID) == .unknown)
            #expect(try await again.runtime.status(of: survivor.backendID).isRunning)
            #expect(again.agent.routes.route(for: survivor.backendID.rawValue) != nil)
            #expect(again.agent.supervisedBackends == [survivor.backendID])
            #expect(Set(runtimes.host.backendIDs) == [survivor.backendID])
            try await terminate(survivor.backendID, via: again.client)
            #expect(try await eventually { relay.states(of: survivor.backendID) == [.loading, .starting, .ready, .terminated] })
            await again.stop()
        }
    }

    @Test func drainOnShutdownEndsEveryBackend() async throws {
        try await withScriptedCluster { server, relay, observer, runtimes in
            let drone = try await startDrone(server, runtimes) { $0.drainOnShutdown = true }
            let requests = (0..<3).map { _ in spawnRequest(drone: drone.id, image: runtimes.image, idle: 1000) }
            for request in requests { #expect(try await spawn(request, via: drone.client)) }
            for request in requests { #expect(try await eventually { relay.states(of: request.backendID).last == .ready }) }
            await drone.stop()
            // Shutdown flushed the outbox: every Terminated is already delivered.
            for request in requests { #expect(relay.states(of: request.backendID).last == .terminated) }
            #expect(runtimes.host.backendIDs.isEmpty)
            // Its last heartbeat says so (delivered to the observer a moment later on a busy machine).
            #expect(try await eventually { observer.lastHeartbeat(of: drone.id).map { !$0.ready && $0.state == .stopped } ?? false })
        }
    }
}
