import AsyncHTTPClient
import ContainerRuntime
import ExternalRuntime
import Foundation
import Logging
import NATS
import PlaneCore
import PlaneDrone
import PlaneMessaging
import PlaneProxy
import PlaneTestSupport
import ScriptedRuntime
import Testing

/// Spec §11.2 scenarios and the issue's own, on a real nats-server with a test relay
/// answering the state updates. Every scenario runs three times: on the real dockerd with the
/// plane-test-server image, on runc through the OCI runtime with its OCI layout, and on the
/// scripted in-memory runtime (fast coverage of the
/// agent and its state machine; faults only it can script are in `DroneAgentFaultTests`).
@Suite(.serialized, .timeLimit(.minutes(10)))
struct DroneAgentTests {
    /// The drone's proxy (plain HTTP) for `routes` on `host:port`.
    func startProxy(_ routes: RouteTable, host: String, port: Int) async throws -> ProxyServer {
        var configuration = ProxyConfiguration()
        configuration.bindHost = host
        configuration.httpsPort = port
        var logger = Logger(label: "test.proxy")
        logger.logLevel = .warning
        let proxy = ProxyServer(cluster: "plane.test", configuration: configuration, routes: routes, logger: logger)
        try await proxy.start()
        return proxy
    }

    func get(_ address: String, _ path: String = "/") async throws -> String {
        let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: "http://\(address)\(path)"), timeout: .seconds(5))
        return String(buffer: try await response.body.collect(upTo: 1 << 20))
    }

    @Test(arguments: AgentRuntimeKind.allCases) func statusMessagesAndDraining(_ kind: AgentRuntimeKind) async throws {
        try await withDroneCluster(kind) { server, _, observer, runtimes in
            let drone = try await RunningDrone(server: server, runtimes: runtimes)
            #expect(try await eventually { observer.registrations.withLock { $0.contains { $0.droneID == drone.id && $0.ip == "127.0.0.1" && $0.cluster == "plane.test" } } })
            #expect(try await eventually { observer.heartbeats.withLock { $0.count { $0.droneID == drone.id && $0.ready && $0.runningBackends == 0 } } >= 3 })
            let client = PlaneMessenger(client: drone.client)
            _ = try await client.request(PlaneSubjects.drain("plane.test", drone.id), DrainDrone(drone: drone.id, cluster: "plane.test", drain: true), timeout: .seconds(10))
            #expect(try await eventually { observer.lastHeartbeat(of: drone.id).map { !$0.ready && $0.state == .draining } ?? false })
            // A draining drone refuses spawns.
            #expect(try await spawn(spawnRequest(drone: drone.id, image: "x"), via: drone.client) == false)
            await drone.stop()
        }
    }

    @Test(arguments: AgentRuntimeKind.allCases) func spawnToReadyToSweptWithDNSLogsAndStats(_ kind: AgentRuntimeKind) async throws {
        try await withDroneCluster(kind) { server, relay, observer, runtimes in
            let image = runtimes.image
            let drone = try await RunningDrone(server: server, runtimes: runtimes)
            let request = spawnRequest(drone: drone.id, image: image, idle: 4)
            let id = request.backendID
            #expect(try await spawn(request, via: drone.client))
            // A safety net, not a measurement: CI's busy machine once took longer than 20 s
            // to start the Docker container (the states are printed should it fail again).
            #expect(try await eventually(timeout: .seconds(60)) { relay.states(of: id).last.map { $0 == .ready || $0.isTerminal } ?? false }, "\(relay.states(of: id))")
            #expect(relay.states(of: id) == [.loading, .starting, .ready])
            // At once (the backend is swept 4 s after Ready without a request).
            let route = try #require(drone.agent.routes.route(for: id.rawValue))
            #expect(try await get(route.address) == "Hello World!")
            // DNS records are published by the backend's monitor, beside (not before) the state updates.
            #expect(try await eventually { observer.dns.withLock { $0.contains { $0.name == id.rawValue } } })
            #expect(observer.dns.withLock { $0.first { $0.name == id.rawValue } } == SetDnsRecord(cluster: "plane.test", kind: .a, name: id.rawValue, value: "127.0.0.1"))
            // Some heartbeat counted it (not necessarily the last: the sweep may have come).
            #expect(try await eventually { observer.heartbeats.withLock { $0.contains { $0.droneID == drone.id && $0.runningBackends == 1 } } })
            #expect(try await eventually { observer.logs.withLock { $0.contains { $0.backendID == id } } })
            #expect(try await eventually { observer.stats.withLock { $0.contains { $0.backendID == id && $0.cpuUsePercent >= 0 && $0.memUsePercent >= 0 } } })
            // Idle for 4 s: swept, route gone, container removed, count back to 0.
            #expect(try await eventually(timeout: .seconds(30)) { relay.states(of: id).last == .swept })
            #expect(drone.agent.routes.route(for: id.rawValue) == nil)
            #expect(try await eventually { (try await drone.runtime.status(of: id)) == .unknown })
            #expect(try await eventually { observer.lastHeartbeat(of: drone.id)?.runningBackends == 0 })
            // Each log line once: the start line once (v0.3.10 re-sent the whole log when its
            // monitor restarted at Ready), one per request: the probe's (more than one when a
            // probe timed out under load) and ours, and the last, printed on the sweep's SIGTERM.
            func lines() -> [String] { observer.logs.withLock { $0.filter { $0.backendID == id }.map(\.text) } }
            #expect(try await eventually { lines().contains { $0.contains("SIGTERM, exiting") } }, "\(lines())")
            let all = lines()
            #expect(all.count { $0.contains("listening on") } == 1 && all.first?.contains("listening on") == true, "\(all)")
            #expect(all.count { $0.contains("SIGTERM, exiting") } == 1 && all.last?.contains("SIGTERM, exiting") == true, "\(all)")
            #expect(all.count { $0.contains("GET /") } == all.count - 2 && all.count >= 4, "\(all)")
            await drone.stop()
        }
    }

    @Test(arguments: AgentRuntimeKind.allCases) func failuresEndTerminalAndRemoveTheContainer(_ kind: AgentRuntimeKind) async throws {
        try await withDroneCluster(kind) { server, relay, observer, runtimes in
            let image = runtimes.image
            let drone = try await RunningDrone(server: server, runtimes: runtimes) { $0.startupTimeout = .seconds(8) }
            // Exits while starting.
            let early = spawnRequest(drone: drone.id, image: image, env: ["EXIT_CODE": "1", "EXIT_TIMEOUT": "100"])
            // Never answers: TimedOutBeforeReady.
            let silent = spawnRequest(drone: drone.id, image: image, env: ["EXIT_CODE": "0", "EXIT_TIMEOUT": "60000"])
            // Ready, then exits 1 and 0.
            let failing = spawnRequest(drone: drone.id, image: image)
            let exiting = spawnRequest(drone: drone.id, image: image)
            let terminated = spawnRequest(drone: drone.id, image: image, idle: 1000)
            // An image no one has: ErrorLoading.
            let missing = spawnRequest(drone: drone.id, image: runtimes.missingImage)
            for request in [early, silent, failing, exiting, terminated, missing] { #expect(try await spawn(request, via: drone.client)) }
            #expect(try await eventually { relay.states(of: missing.backendID) == [.loading, .errorLoading] })
            #expect(try await eventually { relay.states(of: early.backendID) == [.loading, .starting, .errorStarting] }, "\(relay.states(of: early.backendID))")
            for request in [failing, exiting, terminated] {
                #expect(try await eventually { relay.states(of: request.backendID).last == .ready })
            }
            _ = try? await get(try #require(drone.agent.routes.route(for: failing.backendID.rawValue)).address, "/exit/1")
            _ = try? await get(try #require(drone.agent.routes.route(for: exiting.backendID.rawValue)).address, "/exit/0")
            let messenger = PlaneMessenger(client: drone.client)
            _ = try await messenger.request(PlaneSubjects.terminate("plane.test", terminated.backendID),
                                            TerminationRequest(cluster: "plane.test", backendID: terminated.backendID), timeout: .seconds(2))
            #expect(try await eventually { relay.states(of: failing.backendID).last == .failed })
            #expect(try await eventually { relay.states(of: exiting.backendID).last == .exited })
            #expect(try await eventually { relay.states(of: terminated.backendID).last == .terminated })
            #expect(try await eventually { relay.states(of: silent.backendID) == [.loading, .starting, .timedOutBeforeReady] }, "\(relay.states(of: silent.backendID))")
            #expect(try await drone.store.backend(failing.backendID)?.exitCode == 1)
            // The last lines a backend printed before it ended are published.
            func published(_ backend: BackendID, _ text: String) -> Bool {
                observer.logs.withLock { $0.contains { $0.backendID == backend && $0.text.contains(text) } }
            }
            #expect(try await eventually { published(failing.backendID, "GET /exit/1 200") })
            #expect(try await eventually { published(exiting.backendID, "GET /exit/0 200") })
            #expect(try await eventually { published(early.backendID, "exiting with code 1") })
            for request in [early, silent, failing, exiting, terminated, missing] {
                #expect(try await eventually { (try await drone.runtime.status(of: request.backendID)) == .unknown }, "\(request.backendID)")
            }
            await drone.stop()
        }
    }

    /// `TerminationRequest.hard` kills at once, also a backend already waiting out a graceful
    /// stop, on real runtimes; a graceful stop of a backend that ignores SIGTERM takes the
    /// drone's grace period.
    @Test(arguments: [AgentRuntimeKind.scripted, .docker, .oci]) func aHardTerminationKillsAtOnce(_ kind: AgentRuntimeKind) async throws {
        try await withDroneCluster(kind) { server, relay, _, runtimes in
            let drone = try await RunningDrone(server: server, runtimes: runtimes) { $0.stopGrace = .seconds(30) }
            let messenger = PlaneMessenger(client: drone.client)
            let stubborn = (0..<2).map { _ in spawnRequest(drone: drone.id, image: runtimes.image, idle: 1000, env: ["IGNORE_SIGTERM": "1"]) }
            for request in stubborn { #expect(try await spawn(request, via: drone.client)) }
            for request in stubborn { #expect(try await eventually { relay.states(of: request.backendID).last == .ready }) }
            func terminate(_ request: SpawnRequest, hard: Bool) async throws {
                _ = try await messenger.request(PlaneSubjects.terminate("plane.test", request.backendID),
                                                TerminationRequest(cluster: "plane.test", backendID: request.backendID, hard: hard), timeout: .seconds(5))
            }
            let started = ContinuousClock.now
            try await terminate(stubborn[0], hard: true)
            #expect(try await eventually(timeout: .seconds(10)) { (try await drone.runtime.status(of: stubborn[0].backendID)) == .unknown })
            #expect(ContinuousClock.now - started < .seconds(15))
            // The state reaches the relay over NATS, possibly after the runtime let go.
            #expect(try await eventually { relay.states(of: stubborn[0].backendID).last == .terminated })
            // Gracefully: still running while the grace lasts; a hard termination then kills it.
            try await terminate(stubborn[1], hard: false)
            #expect(try await eventually { relay.states(of: stubborn[1].backendID).last == .terminated })
            try await Task.sleep(for: .seconds(2))
            #expect((try await drone.runtime.status(of: stubborn[1].backendID)).isRunning, "SIGTERM is ignored until the grace period ends")
            try await terminate(stubborn[1], hard: true)
            #expect(try await eventually(timeout: .seconds(10)) { (try await drone.runtime.status(of: stubborn[1].backendID)) == .unknown })
            #expect(ContinuousClock.now - started < .seconds(25))
            await drone.stop()
        }
    }

    @Test(arguments: AgentRuntimeKind.allCases) func terminationWhileLoadingAndBadSpawns(_ kind: AgentRuntimeKind) async throws {
        try await withDroneCluster(kind) { server, relay, _, runtimes in
            let image = runtimes.image
            let drone = try await RunningDrone(server: server, runtimes: runtimes)
            // The scripted runtime loads in no time, so a terminate could arrive after Ready;
            // a slow pull keeps the backend loading (dockerd's create is slow enough itself).
            runtimes.host.update { $0.prepareDelay = .seconds(2) }
            let request = spawnRequest(drone: drone.id, image: image, idle: 1000)
            let messenger = PlaneMessenger(client: drone.client)
            #expect(try await spawn(request, via: drone.client))
            _ = try await messenger.request(PlaneSubjects.terminate("plane.test", request.backendID),
                                            TerminationRequest(cluster: "plane.test", backendID: request.backendID), timeout: .seconds(2))
            #expect(try await eventually { relay.states(of: request.backendID).last == .terminated })
            #expect(!relay.states(of: request.backendID).contains(.ready))
            runtimes.host.update { $0.prepareDelay = .zero }
            let removed = try await eventually { (try await drone.runtime.status(of: request.backendID)) == .unknown }
            let left = try? await drone.runtime.status(of: request.backendID)
            #expect(removed, "\(String(describing: left)) \(relay.states(of: request.backendID))")
            // The same id again, a mount on a drone that forbids them, another drone's request: refused.
            #expect(try await spawn(request, via: drone.client) == false)
            #expect(try await spawn(spawnRequest(drone: drone.id, image: image, mounts: [VolumeMount(type: "bind", source: "/foo", target: "/bar")]), via: drone.client) == false)
            var tooSmall = spawnRequest(drone: drone.id, image: image)
            tooSmall.executable.resourceLimits = ResourceLimits(memoryLimitBytes: 1 << 20)
            #expect(try await spawn(tooSmall, via: drone.client) == false)
            if kind != .scripted {
                // Reference syntax is the runtime's to check (a plugin may take paths).
                #expect(try await spawn(spawnRequest(drone: drone.id, image: "Not A Valid/Reference"), via: drone.client) == false)
            }
            var wrongDrone = spawnRequest(drone: drone.id, image: image)
            wrongDrone.droneID = .random()
            #expect(try await PlaneMessenger(client: drone.client).request(PlaneSubjects.spawn(drone.id), wrongDrone, timeout: .seconds(5)) == false)
            await drone.stop()
        }
    }

    /// A termination sent the moment its spawn is answered is handled while the drone still
    /// records `Loading` (the actor awaits the store): nothing of the backend may be started
    /// after its cleanup ran, and no route or held-request entry may outlive it.
    @Test(arguments: [AgentRuntimeKind.scripted, .process]) func aTerminationRightAfterTheSpawnAnswerLeavesNothing(_ kind: AgentRuntimeKind) async throws {
        try await withDroneCluster(kind) { server, relay, _, runtimes in
            let drone = try await RunningDrone(server: server, runtimes: runtimes)
            let client = drone.client
            let requests = (0..<16).map { _ in spawnRequest(drone: drone.id, image: runtimes.image, idle: 1000) }
            try await withThrowingTaskGroup(of: Bool.self) { group in
                for request in requests {
                    group.addTask {
                        guard try await spawn(request, via: client) else { return false }
                        try await client.publish(PlaneSubjects.terminate("plane.test", request.backendID).subject,
                                                 payload: try WireEncoder().encode(TerminationRequest(cluster: "plane.test", backendID: request.backendID)))
                        return true
                    }
                }
                for try await accepted in group { #expect(accepted) }
            }
            for request in requests {
                #expect(try await eventually { relay.states(of: request.backendID).last == .terminated }, "\(relay.states(of: request.backendID))")
            }
            for request in requests {
                #expect(try await eventually { (try await drone.runtime.status(of: request.backendID)) == .unknown })
            }
            // And it stays so: no start comes after the cleanup.
            try await Task.sleep(for: .seconds(1))
            for request in requests {
                let status = try await drone.runtime.status(of: request.backendID)
                #expect(status == .unknown, "\(request.backendID) \(relay.states(of: request.backendID))")
                #expect(drone.agent.routes.route(for: request.backendID.rawValue) == nil)
            }
            await drone.stop()
        }
    }

    @Test(arguments: AgentRuntimeKind.allCases) func allowedMountsWork(_ kind: AgentRuntimeKind) async throws {
        try await withDroneCluster(kind) { server, relay, _, runtimes in
            let image = runtimes.image
            let drone = try await RunningDrone(server: server, runtimes: runtimes) { $0.allowVolumeMounts = true }
            let request = spawnRequest(drone: drone.id, image: image, idle: 2, mounts: [VolumeMount(json: JSONObject([("Type", .string("tmpfs")), ("Target", .string("/bar"))]))])
            if kind == .process {
                // The process runtime declares no mounts: the spawn is refused before anything starts.
                #expect(try await spawn(request, via: drone.client) == false)
            } else {
                #expect(try await spawn(request, via: drone.client))
                #expect(try await eventually(timeout: .seconds(40)) { relay.states(of: request.backendID) == [.loading, .starting, .ready, .swept] })
            }
            await drone.stop()
        }
    }

    @Test(arguments: AgentRuntimeKind.allCases) func restartReattachesAndTwoDronesShareADaemon(_ kind: AgentRuntimeKind) async throws {
        try await withDroneCluster(kind) { server, relay, observer, runtimes in
            let image = runtimes.image
            // Drones on one host need disjoint port ranges.
            let first = try await RunningDrone(server: server, runtimes: runtimes) { $0.portRange = 22000...22099 }
            let other = try await RunningDrone(server: server, runtimes: runtimes) { $0.portRange = 22100...22199 }
            let mine = (0..<3).map { _ in spawnRequest(drone: first.id, image: image, idle: 20) }
            let theirs = spawnRequest(drone: other.id, image: image, idle: 1000)
            for request in mine { #expect(try await spawn(request, via: first.client)) }
            #expect(try await spawn(theirs, via: other.client))
            for request in mine + [theirs] { #expect(try await eventually { relay.states(of: request.backendID).last == .ready }) }
            // Each drone's proxy on its own loopback address, the same port: each serves only
            // its own drone's backends.
            let proxyPort = try TestEnvironment.freePort()
            let firstProxy = try await startProxy(first.agent.routes, host: "127.0.0.11", port: proxyPort)
            let otherProxy = try await startProxy(other.agent.routes, host: "127.0.0.12", port: proxyPort)
            func through(_ host: String, _ backend: BackendID) async throws -> HTTPProbe.Response {
                try await HTTPProbe(host: host, port: proxyPort, hostHeader: "\(backend).plane.test").get("/")
            }
            #expect(try await through("127.0.0.11", mine[0].backendID).body == "Hello World!")
            #expect(try await through("127.0.0.11", theirs.backendID).status == 404)
            #expect(try await through("127.0.0.12", theirs.backendID).body == "Hello World!")
            // The first drone (and its proxy) stops, backends keep running, and it starts again
            // with its store.
            await firstProxy.stop()
            await first.stop()
            let again = try await RunningDrone(server: server, runtimes: runtimes, id: first.id, statePath: first.statePath) { $0.portRange = 22000...22099 }
            let againProxy = try await startProxy(again.agent.routes, host: "127.0.0.11", port: proxyPort)
            for request in mine {
                #expect(try await again.runtime.status(of: request.backendID).isRunning)
                #expect(again.agent.routes.route(for: request.backendID.rawValue) != nil)
                #expect(try await through("127.0.0.11", request.backendID).body == "Hello World!")
            }
            // The other drone's backend was never touched.
            #expect(try await other.runtime.status(of: theirs.backendID).isRunning)
            // Re-attached backends keep their idle clock and are swept later.
            for request in mine {
                #expect(try await eventually(timeout: .seconds(40)) { relay.states(of: request.backendID).last == .swept })
                #expect(relay.states(of: request.backendID) == [.loading, .starting, .ready, .swept])
                // The restarted drone's monitor went on after the last line the first one
                // published: the start line once, the request through the new proxy, the
                // sweep's SIGTERM.
                func lines() -> [String] { observer.logs.withLock { $0.filter { $0.backendID == request.backendID }.map(\.text) } }
                #expect(try await eventually { lines().contains { $0.contains("SIGTERM, exiting") } }, "\(lines())")
                #expect(lines().count { $0.contains("listening on") } == 1, "\(lines())")
                #expect(lines().count { $0.contains("GET / 200") } >= 2, "\(lines())")
            }
            #expect(try await other.runtime.status(of: theirs.backendID).isRunning)
            let messenger = PlaneMessenger(client: other.client)
            _ = try await messenger.request(PlaneSubjects.terminate("plane.test", theirs.backendID), TerminationRequest(cluster: "plane.test", backendID: theirs.backendID), timeout: .seconds(10))
            #expect(try await eventually { relay.states(of: theirs.backendID).last == .terminated })
            await againProxy.stop()
            await otherProxy.stop()
            await again.stop()
            await other.stop()
        }
    }

    @Test(arguments: AgentRuntimeKind.allCases) func manyConcurrentSpawnsReachReady(_ kind: AgentRuntimeKind) async throws {
        try await withDroneCluster(kind) { server, relay, _, runtimes in
            let image = runtimes.image
            let drone = try await RunningDrone(server: server, runtimes: runtimes)
            let requests = (0..<50).map { _ in spawnRequest(drone: drone.id, image: image, idle: 1000) }
            let answers = try await withThrowingTaskGroup(of: Bool.self) { group in
                for request in requests { group.addTask { try await spawn(request, via: drone.client) } }
                return try await group.reduce(into: [Bool]()) { $0.append($1) }
            }
            #expect(answers.allSatisfy { $0 })
            for request in requests {
                #expect(try await eventually(timeout: .seconds(60)) { relay.states(of: request.backendID).last == .ready }, "\(relay.states(of: request.backendID))")
            }
            // Every backend got its own port.
            let addresses = requests.compactMap { drone.agent.routes.route(for: $0.backendID.rawValue)?.address }
            #expect(Set(addresses).count == requests.count)
            let messenger = PlaneMessenger(client: drone.client)
            for request in requests {
                _ = try await messenger.request(PlaneSubjects.terminate("plane.test", request.backendID), TerminationRequest(cluster: "plane.test", backendID: request.backendID), timeout: .seconds(10))
            }
            for request in requests { #expect(try await eventually(timeout: .seconds(60)) { relay.states(of: request.backendID).last == .terminated }) }
            // Stopping the agent lets the removals in flight finish.
            await drone.stop()
            for request in requests { #expect(try await drone.runtime.status(of: request.backendID) == .unknown) }
        }
    }

    /// The process runtime plugin killed while three backends run: the drone restarts it,
    /// the backends keep running and serving (no state changes), and they are swept when
    /// idle, as if nothing had happened.
    @Test func aKilledRuntimePluginIsRestartedAndItsBackendsAreSweptLater() async throws {
        try await withDroneCluster(.process) { server, relay, _, runtimes in
            let drone = try await RunningDrone(server: server, runtimes: runtimes)
            let requests = (0..<3).map { _ in spawnRequest(drone: drone.id, image: runtimes.image, idle: 6) }
            for request in requests { #expect(try await spawn(request, via: drone.client)) }
            for request in requests { #expect(try await eventually { relay.states(of: request.backendID).last == .ready }) }
            let plugin = try #require(drone.runtime as? ExternalRuntime)
            let killed = try #require(plugin.pluginProcessID)
            kill(killed, SIGKILL)
            #expect(try await eventually { plugin.restarts == 1 && plugin.pluginProcessID.map { $0 != killed } == true })
            for request in requests {
                let route = try #require(drone.agent.routes.route(for: request.backendID.rawValue))
                #expect(try await get(route.address) == "Hello World!")
            }
            // A few of the agent's status checks pass through the new plugin process.
            try await Task.sleep(for: .seconds(3))
            for request in requests { #expect(relay.states(of: request.backendID) == [.loading, .starting, .ready]) }
            for request in requests {
                #expect(try await eventually(timeout: .seconds(40)) { relay.states(of: request.backendID).last == .swept }, "\(relay.states(of: request.backendID))")
                #expect(try await eventually { (try await drone.runtime.status(of: request.backendID)) == .unknown })
            }
            await drone.stop()
        }
    }
}
