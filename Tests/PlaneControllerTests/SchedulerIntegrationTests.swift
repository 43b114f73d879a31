import NATS
import PlaneController
import PlaneCore
import PlaneMessaging
import PlaneTestSupport
import Testing

/// Spec §11.6 and the issue's scheduler scenarios, against a real nats-server with drones
/// written as test code.
@Suite(.serialized) struct SchedulerIntegrationTests {
    @Test func noDroneAvailable() async throws {
        try await withCluster { server in
            let controller = try await RunningController(server: server)
            let client = PlaneMessenger(client: try await server.connectedClient())
            // Answered at once (not left to time out), and without spending a backend id:
            // a request no drone can take writes nothing to JetStream.
            #expect(try await client.request(PlaneSubjects.schedule("plane.test"), scheduleRequest(), timeout: .seconds(10)) == .noDroneAvailable)
            let store = try await ControllerStore.open(client.jetStream, replicas: 1)
            #expect(try await store.backends.keys().isEmpty)
            await client.client.close()
            await controller.stop()
        }
    }

    @Test func oneDroneAvailableAndBearerToken() async throws {
        try await withCluster { server in
            let controller = try await RunningController(server: server)
            let drone = try await FakeDrone(server: server)
            try await drone.startHeartbeats()
            let client = PlaneMessenger(client: try await server.connectedClient())
            try await Task.sleep(for: .milliseconds(200))
            let reply = try await client.request(PlaneSubjects.schedule("plane.test"), scheduleRequest(token: true), timeout: .seconds(5))
            guard case .scheduled(let backend) = reply else { Issue.record("expected Scheduled, got \(reply)"); return }
            #expect(backend.drone == drone.id && backend.spawned)
            let token = try #require(backend.bearerToken)
            #expect(token.count == 30 && token.utf8.allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 >= 65 && $0 <= 90) || ($0 >= 97 && $0 <= 122) })
            let spawn = try #require(drone.spawns.withLock { $0.first })
            #expect(spawn.droneID == drone.id && spawn.backendID == backend.backendID && spawn.cluster == "plane.test" && spawn.bearerToken == token)
            // An explicit backend id that is live gets the same backend, not a second spawn.
            let again = try await client.request(PlaneSubjects.schedule("plane.test"), scheduleRequest(backend: backend.backendID), timeout: .seconds(5))
            #expect(again == .scheduled(ScheduledBackend(drone: drone.id, backendID: backend.backendID, bearerToken: token, spawned: false)))
            #expect(drone.spawnCount == 1)
            // The drone drains: no new backend can start, but the live one is still the
            // answer for its id (and would be for its lock).
            drone.ready.withLock { $0 = false }
            try await drone.heartbeat()
            try await Task.sleep(for: .milliseconds(200))
            let whileDraining = try await client.request(PlaneSubjects.schedule("plane.test"), scheduleRequest(backend: backend.backendID), timeout: .seconds(5))
            #expect(whileDraining == .scheduled(ScheduledBackend(drone: drone.id, backendID: backend.backendID, bearerToken: token, spawned: false)))
            #expect(try await client.request(PlaneSubjects.schedule("plane.test"), scheduleRequest(), timeout: .seconds(5)) == .noDroneAvailable)
            await drone.close()
            await client.client.close()
            await controller.stop()
        }
    }

    @Test func drainingDronesAreNotChosenAndStaleDronesDropOut() async throws {
        try await withCluster { server in
            let controller = try await RunningController(server: server) { $0.scheduler?.droneTimeout = .seconds(5) }
            let drone = try await FakeDrone(server: server)
            drone.ready.withLock { $0 = false }
            try await drone.heartbeat()
            let client = PlaneMessenger(client: try await server.connectedClient())
            try await Task.sleep(for: .milliseconds(200))
            #expect(try await client.request(PlaneSubjects.schedule("plane.test"), scheduleRequest(), timeout: .seconds(5)) == .noDroneAvailable)
            // Ready again: chosen. Then it stops heartbeating: after 5 s it is no longer chosen.
            drone.ready.withLock { $0 = true }
            try await drone.heartbeat()
            try await Task.sleep(for: .milliseconds(200))
            guard case .scheduled = try await client.request(PlaneSubjects.schedule("plane.test"), scheduleRequest(), timeout: .seconds(5)) else {
                Issue.record("a ready drone must be chosen"); return
            }
            try await Task.sleep(for: .seconds(5.2))
            #expect(try await client.request(PlaneSubjects.schedule("plane.test"), scheduleRequest(), timeout: .seconds(5)) == .noDroneAvailable)
            // Another cluster's drone is never chosen.
            let other = try await FakeDrone(server: server, cluster: "other.test")
            try await other.heartbeat()
            try await Task.sleep(for: .milliseconds(200))
            #expect(try await client.request(PlaneSubjects.schedule("plane.test"), scheduleRequest(), timeout: .seconds(5)) == .noDroneAvailable)
            await other.close()
            await drone.close()
            await client.client.close()
            await controller.stop()
        }
    }

    @Test func aRefusingOrSilentDroneIsSkipped() async throws {
        try await withCluster { server in
            let controller = try await RunningController(server: server) { $0.scheduler?.spawnTimeout = .seconds(1) }
            let refusing = try await FakeDrone(server: server, policy: .refuse)
            let silent = try await FakeDrone(server: server, policy: .silent)
            let good = try await FakeDrone(server: server)
            for drone in [refusing, silent, good] { try await drone.startHeartbeats() }
            let client = PlaneMessenger(client: try await server.connectedClient())
            try await Task.sleep(for: .milliseconds(300))
            for _ in 0..<6 {
                let reply = try await client.request(PlaneSubjects.schedule("plane.test"), scheduleRequest(), timeout: .seconds(10))
                guard case .scheduled(let backend) = reply else { Issue.record("expected Scheduled, got \(reply)"); continue }
                #expect(backend.drone == good.id)
            }
            // Only refusing drones: NoDroneAvailable after trying them.
            good.policy.withLock { $0 = .refuse }
            #expect(try await client.request(PlaneSubjects.schedule("plane.test"), scheduleRequest(), timeout: .seconds(10)) == .noDroneAvailable)
            for drone in [refusing, silent, good] { await drone.close() }
            await client.client.close()
            await controller.stop()
        }
    }

    @Test func badRequestsGetAnErrorAndNothingIsSpawned() async throws {
        try await withCluster { server in
            let controller = try await RunningController(server: server)
            let drone = try await FakeDrone(server: server)
            try await drone.startHeartbeats()
            let client = try await server.connectedClient()
            try await Task.sleep(for: .milliseconds(200))
            for body in ["{not json", #"{"cluster":"plane.test","max_idle_secs":30,"executable":{"image":"x","env":{}},"backend_id":"Bad.ID"}"#,
                         #"{"cluster":"bad cluster!","max_idle_secs":30,"executable":{"image":"x","env":{}}}"#] {
                let reply = try await client.request("cluster.plane_test.schedule", payload: Array(body.utf8), timeout: .seconds(5))
                let text = String(decoding: reply.payload.readableBytesView, as: UTF8.self)
                let error = try #require(try JSONParser.parse(text).objectValue?["Error"]?.objectValue)
                #expect(["malformed_json", "invalid_backend_id", "invalid_cluster_name"].contains(error["code"]?.stringValue ?? ""), "\(text)")
                #expect(error["message"]?.stringValue?.isEmpty == false)
                // An old client decoding it as a ScheduleResponse gets neither Scheduled nor NoDroneAvailable.
                #expect(!text.contains("Scheduled"))
            }
            // No reply subject: logged and dropped, nothing spawned, the controller keeps serving.
            try await client.publish("cluster.plane_test.schedule", payload: try WireEncoder().encode(scheduleRequest()))
            try await client.flush()
            try await Task.sleep(for: .milliseconds(300))
            #expect(drone.spawnCount == 0)
            let messenger = PlaneMessenger(client: client)
            guard case .scheduled = try await messenger.request(PlaneSubjects.schedule("plane.test"), scheduleRequest(), timeout: .seconds(5)) else {
                Issue.record("the controller must still serve"); return
            }
            #expect(drone.spawnCount == 1)
            await drone.close()
            await client.close()
            await controller.stop()
        }
    }

    @Test func twoControllersAnswerEachRequestOnce() async throws {
        try await withCluster { server in
            let first = try await RunningController(server: server)
            let second = try await RunningController(server: server)
            let drones = try await FakeDrone.heartbeating(4, server: server)
            let client = PlaneMessenger(client: try await server.connectedClient())
            try await Task.sleep(for: .milliseconds(300))
            let replies = try await concurrentRequests(200, client: client, scheduleRequest())
            let scheduled = replies.compactMap { reply -> BackendID? in if case .scheduled(let b) = reply { b.backendID } else { nil } }
            #expect(scheduled.count == 200 && Set(scheduled).count == 200)
            try await Task.sleep(for: .milliseconds(300))
            #expect(drones.map(\.spawnCount).reduce(0, +) == 200)
            // Power of two choices spreads the load.
            #expect(drones.allSatisfy { $0.spawnCount >= 20 }, "\(drones.map(\.spawnCount))")
            let answered = [first, second].map { ($0.controller.metrics.scheduleResults["scheduled"] ?? 0) }
            #expect(answered.reduce(0, +) == 200 && answered.allSatisfy { $0 > 0 }, "\(answered)")
            for drone in drones { await drone.close() }
            await client.client.close()
            await first.stop()
            await second.stop()
        }
    }

    @Test func oneLiveBackendPerLockUnderARace() async throws {
        try await withCluster { server in
            let first = try await RunningController(server: server)
            let second = try await RunningController(server: server)
            let drones = try await FakeDrone.heartbeating(3, server: server)
            let client = PlaneMessenger(client: try await server.connectedClient())
            try await Task.sleep(for: .milliseconds(300))
            let replies = try await concurrentRequests(100, client: client, scheduleRequest(lock: "doc-42", token: true))
            let backends = replies.compactMap { reply -> ScheduledBackend? in if case .scheduled(let b) = reply { b } else { nil } }
            #expect(backends.count == 100)
            #expect(Set(backends.map(\.backendID)).count == 1 && Set(backends.map(\.bearerToken)).count == 1)
            #expect(backends.count { $0.spawned } == 1)
            #expect(drones.map(\.spawnCount).reduce(0, +) == 1)
            // With every drone draining, the lock's live backend is still the answer.
            for drone in drones { drone.ready.withLock { $0 = false }; try await drone.heartbeat() }
            try await Task.sleep(for: .milliseconds(200))
            let draining = try await client.request(PlaneSubjects.schedule("plane.test"), scheduleRequest(lock: "doc-42"), timeout: .seconds(5))
            guard case .scheduled(let held) = draining else { Issue.record("expected the lock's backend, got \(draining)"); return }
            #expect(!held.spawned && held.backendID == backends[0].backendID)
            for drone in drones { drone.ready.withLock { $0 = true }; try await drone.heartbeat() }
            try await Task.sleep(for: .milliseconds(200))
            // The backend ends: the lock is free and the next request spawns a new backend.
            let holder = try #require(backends.first { $0.spawned })
            let update = UpdateBackendStateMessage(cluster: "plane.test", state: .terminated, backend: holder.backendID, time: .now(), drone: holder.drone)
            _ = try await client.request(PlaneSubjects.updateBackendState("plane.test", holder.backendID), update, timeout: .seconds(5))
            let next = try await client.request(PlaneSubjects.schedule("plane.test"), scheduleRequest(lock: "doc-42"), timeout: .seconds(10))
            guard case .scheduled(let fresh) = next else { Issue.record("expected Scheduled, got \(next)"); return }
            #expect(fresh.spawned && fresh.backendID != holder.backendID)
            // Another lock name is independent.
            guard case .scheduled(let other) = try await client.request(PlaneSubjects.schedule("plane.test"), scheduleRequest(lock: "doc-43"), timeout: .seconds(10)) else {
                Issue.record("expected Scheduled"); return
            }
            #expect(other.spawned && other.backendID != fresh.backendID)
            for drone in drones { await drone.close() }
            await client.client.close()
            await first.stop()
            await second.stop()
        }
    }

    @Test func relayStoresStatesWithTheirExactTime() async throws {
        try await withCluster { server in
            let controller = try await RunningController(server: server)
            let client = PlaneMessenger(client: try await server.connectedClient())
            let backend = BackendID.random()
            let time = Timestamp(secondsSinceEpoch: 1_700_000_000, nanoseconds: 123_456_789)
            let update = UpdateBackendStateMessage(cluster: "plane.test", state: .ready, backend: backend, time: time, drone: DroneID.random())
            _ = try await client.request(PlaneSubjects.updateBackendState("plane.test", backend), update, timeout: .seconds(5))
            // The same update again (a drone retrying) is stored once.
            _ = try await client.request(PlaneSubjects.updateBackendState("plane.test", backend), update, timeout: .seconds(5))
            let history = try await client.backendStateHistory(of: backend)
            #expect(history.initialPending == 1)
            var iterator = history.makeAsyncIterator()
            let stored = try #require(try await iterator.next())
            #expect(try stored.message.get() == BackendStateMessage(cluster: "plane.test", state: .ready, backend: backend, time: time))
            history.stop()
            // The directory knows where it is.
            #expect(try await eventually { controller.controller.directory.record(of: backend)?.state == .ready })
            // A malformed update is answered (so a sender stops retrying) and stores nothing.
            let raw = try await client.client.request("cluster.plane_test.backend.\(backend).status", payload: Array("{}".utf8), timeout: .seconds(5))
            #expect(String(decoding: raw.payload.readableBytesView, as: UTF8.self) == "null")
            await client.client.close()
            await controller.stop()
        }
    }

    /// A peer that may publish on one cluster's subjects cannot reach another cluster by
    /// naming it in the payload, nor change another cluster's backends.
    @Test func payloadsThatDoNotMatchTheirSubjectsAreRefused() async throws {
        try await withCluster { server in
            let controller = try await RunningController(server: server)
            let drone = try await FakeDrone(server: server)
            try await drone.startHeartbeats()
            let client = PlaneMessenger(client: try await server.connectedClient())
            try await Task.sleep(for: .milliseconds(200))
            // A schedule request for plane.test sent on another cluster's subject: refused,
            // nothing spawned.
            let crossed = try await client.client.request("cluster.other_test.schedule", payload: try WireEncoder().encode(scheduleRequest()), timeout: .seconds(5))
            let answer = try WireDecoder().decode(ScheduleResponse.self, from: Array(crossed.payload.readableBytesView))
            guard case .error(let error) = answer else { Issue.record("expected an error, got \(answer)"); return }
            #expect(error.code == "cluster_mismatch" && drone.spawnCount == 0)
            // A backend of plane.test.
            let reply = try await client.request(PlaneSubjects.schedule("plane.test"), scheduleRequest(), timeout: .seconds(5))
            guard case .scheduled(let backend) = reply else { Issue.record("expected Scheduled, got \(reply)"); return }
            let id = backend.backendID
            // Updates that name another backend than their subject, or come from another
            // cluster, are answered (so a sender stops retrying) and change nothing.
            let other = BackendID.random()
            let mismatched = UpdateBackendStateMessage(cluster: "plane.test", state: .terminated, backend: id, time: .now(), drone: drone.id)
            _ = try await client.client.request("cluster.plane_test.backend.\(other).status", payload: try WireEncoder().encode(mismatched), timeout: .seconds(5))
            let foreign = UpdateBackendStateMessage(cluster: "other.test", state: .terminated, backend: id, time: .now(), drone: DroneID.random())
            _ = try await client.request(PlaneSubjects.updateBackendState("other.test", id), foreign, timeout: .seconds(5))
            // Another drone of the cluster running a copy (a spawn it answered too late, the
            // backend placed on this drone instead) does not speak for it.
            let otherDrone = DroneID.random()
            let copy = UpdateBackendStateMessage(cluster: "plane.test", state: .terminated, backend: id, time: .now(), drone: otherDrone)
            _ = try await client.request(PlaneSubjects.updateBackendState("plane.test", id), copy, timeout: .seconds(5))
            // The drone's own update is stored; the earlier ones were not.
            let ready = UpdateBackendStateMessage(cluster: "plane.test", state: .ready, backend: id, time: .now(), drone: drone.id)
            _ = try await client.request(PlaneSubjects.updateBackendState("plane.test", id), ready, timeout: .seconds(5))
            let history = try await client.backendStateHistory(of: id)
            var states: [BackendState] = []
            for try await entry in history {
                states.append(try entry.message.get().state)
                if entry.pending == 0 { break }
            }
            history.stop()
            #expect(states == [.ready])
            #expect(try await eventually { controller.controller.directory.record(of: id)?.state == .ready })
            let store = try await ControllerStore.open(client.jetStream, replicas: 1)
            #expect(try await store.backend(other) == nil)
            #expect(controller.controller.metrics.render(liveDrones: 0, backendsByState: [:], dnsQueries: [:]).contains("plane_state_updates_rejected_total 3"))
            // When that other drone reconciles, it is told to stop its copy; this one is not.
            #expect(controller.controller.directory.ended(among: [id], for: otherDrone) == [EndedBackend(backend: id, state: .lost)])
            #expect(controller.controller.directory.ended(among: [id], for: drone.id).isEmpty)
            await drone.close()
            await client.client.close()
            await controller.stop()
        }
    }

    @Test func backendsOfAVanishedDroneAreLostAndTheirLocksFreed() async throws {
        try await withCluster { server in
            let controller = try await RunningController(server: server) { $0.scheduler?.droneLostGrace = .seconds(5) }
            let drone = try await FakeDrone(server: server)
            try await drone.startHeartbeats()
            let client = PlaneMessenger(client: try await server.connectedClient())
            try await Task.sleep(for: .milliseconds(300))
            guard case .scheduled(let backend) = try await client.request(PlaneSubjects.schedule("plane.test"), scheduleRequest(lock: "session-1"), timeout: .seconds(5)) else {
                Issue.record("expected Scheduled"); return
            }
            let ready = UpdateBackendStateMessage(cluster: "plane.test", state: .ready, backend: backend.backendID, time: .now(), drone: drone.id)
            _ = try await client.request(PlaneSubjects.updateBackendState("plane.test", backend.backendID), ready, timeout: .seconds(5))
            drone.stopHeartbeats()
            #expect(try await eventually(timeout: .seconds(30)) { controller.controller.directory.record(of: backend.backendID)?.state == .lost })
            let history = try await client.backendStateHistory(of: backend.backendID)
            var states: [BackendState] = []
            for try await stored in history {
                if case .success(let message) = stored.message { states.append(message.state) }
                if stored.pending == 0 { break }
            }
            history.stop()
            #expect(states == [.ready, .lost])
            // The lock is free again: a new drone gets a new backend for it.
            let replacement = try await FakeDrone(server: server)
            try await replacement.startHeartbeats()
            try await Task.sleep(for: .milliseconds(300))
            guard case .scheduled(let fresh) = try await client.request(PlaneSubjects.schedule("plane.test"), scheduleRequest(lock: "session-1"), timeout: .seconds(5)) else {
                Issue.record("expected Scheduled"); return
            }
            #expect(fresh.spawned && fresh.drone == replacement.id)
            await replacement.close()
            await drone.close()
            await client.client.close()
            await controller.stop()
        }
    }
}
