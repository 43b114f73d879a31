import NATS
import PlaneCore
import PlaneMessaging
import PlaneTestSupport
import Synchronization
import Testing
@testable import PlaneController

/// The controllers' side of drone leases on a real nats-server: grants, revocation, a new
/// epoch after it, reconciliation, and when a lock-holding backend is declared lost.
@Suite(.timeLimit(.minutes(3)))
struct DroneLeaseIntegrationTests {
    func controller(_ server: NATSServerProcess) async throws -> RunningController {
        try await RunningController(server: server) {
            $0.scheduler?.lockReassignAfter = .seconds(3)
            $0.scheduler?.leaseMargin = .seconds(1)
            $0.scheduler?.droneLostGrace = .seconds(5)
        }
    }

    @Test func grantsKeepTheirEpochAndBadRequestsGetNoGrant() async throws {
        try await withCluster { server in
            let running = try await controller(server)
            let drone = try await FakeDrone(server: server)
            #expect(try await drone.renewLease(epoch: nil).epoch == 1)
            #expect(try await drone.renewLease(epoch: 1).epoch == 1)
            // lease_hard beyond an hour would keep its locks forever: refused.
            await #expect(throws: NATSError.self) { try await drone.renewLease(epoch: 1, hard: .seconds(7200), timeout: .seconds(1)) }
            // A renewal for another drone than the subject's is not granted.
            let other = DroneLeaseRequest(cluster: "plane.test", drone: .random(), epoch: nil, leaseHardMilliseconds: 2000)
            await #expect(throws: NATSError.self) {
                try await drone.messenger.request(PlaneSubjects.lease("plane.test", drone.id), other, timeout: .seconds(1))
            }
            await drone.close()
            await running.stop()
        }
    }

    /// A drone answers a lock's spawn after the scheduler's timeout (and starts the backend
    /// anyway) while the scheduler places it on the next drone: the late drone cannot speak
    /// for the backend (its states are dropped, the record stays with the placed drone), and
    /// its next renewal listing the backend tells it to stop its copy. Without this, the
    /// late copy took over the record and could run on after the lock moved.
    @Test func aSpawnAnsweredTooLateLeavesNoSecondCopy() async throws {
        try await withCluster { server in
            let running = try await controller(server)
            let late = try await FakeDrone(server: server, policy: .acceptLate(.seconds(3)))
            let prompt = try await FakeDrone(server: server)
            try await late.startHeartbeats()
            try await prompt.startHeartbeats()
            try await Task.sleep(for: .milliseconds(300))
            let client = PlaneMessenger(client: try await server.connectedClient())
            // The choice is random: ask for locks until one went to the late drone first.
            var placed: ScheduledBackend?
            for attempt in 0..<12 where placed == nil {
                let reply = try await client.request(PlaneSubjects.schedule("plane.test"), scheduleRequest(lock: try LockName("late-\(attempt)")), timeout: .seconds(20))
                guard case .scheduled(let backend) = reply else { Issue.record("expected Scheduled, got \(reply)"); return }
                if late.spawns.withLock({ $0.contains { $0.backendID == backend.backendID } }) { placed = backend }
            }
            let backend = try #require(placed, "the late drone was never tried first")
            #expect(backend.drone == prompt.id)
            // The late drone's copy reports: dropped, the record stays the placed drone's.
            let update = UpdateBackendStateMessage(cluster: "plane.test", state: .ready, backend: backend.backendID, time: .now(), drone: late.id)
            _ = try await late.messenger.request(PlaneSubjects.updateBackendState("plane.test", backend.backendID), update, timeout: .seconds(5))
            try await Task.sleep(for: .milliseconds(500))
            #expect(running.controller.directory.record(of: backend.backendID)?.drone == prompt.id)
            // Its renewal lists the backend: it is told to stop it; the placed drone is not.
            let grant = try await late.renewLease(epoch: nil, backends: [backend.backendID])
            #expect(grant.ended == [EndedBackend(backend: backend.backendID, state: .lost)])
            let placedGrant = try await prompt.renewLease(epoch: nil, backends: [backend.backendID])
            #expect(placedGrant.ended.isEmpty)
            await client.client.close()
            await late.close()
            await prompt.close()
            await running.stop()
        }
    }

    /// However a second holder of a lock came about, the lock table names one: a drone that
    /// lists a live backend holding a lock confirmed for another backend is told to stop it;
    /// the confirmed holder, and a backend whose lock is not confirmed yet, go on.
    @Test func aBackendThatIsNotItsLocksConfirmedHolderIsToldToStop() async throws {
        try await withCluster { server in
            let running = try await controller(server)
            let drone = try await FakeDrone(server: server)
            try await drone.startHeartbeats()
            let client = PlaneMessenger(client: try await server.connectedClient())
            let store = try await ControllerStore.open(client.jetStream, replicas: 1)
            let lock: LockName = "duplicated"
            let pending: LockName = "pending"
            let (stale, holder, waiting) = (BackendID.random(), BackendID.random(), BackendID.random())
            for (id, name) in [(stale, lock), (holder, lock), (waiting, pending)] {
                var record = BackendRecord(backendID: id, cluster: "plane.test", drone: drone.id, time: .now(), lock: name, bearerToken: nil, created: .now())
                record.state = .ready
                _ = try await store.backends.put(id.rawValue, value: try ControllerStore.encode(record))
            }
            _ = try await store.locks.put(LockRecord.key(cluster: "plane.test", lock: lock),
                                          value: try ControllerStore.encode(LockRecord(backendID: holder, drone: drone.id, bearerToken: nil, confirmed: true, created: .now(), fencingToken: 7)))
            _ = try await store.locks.put(LockRecord.key(cluster: "plane.test", lock: pending),
                                          value: try ControllerStore.encode(LockRecord(backendID: BackendID.random(), drone: drone.id, bearerToken: nil, confirmed: false, created: .now(), fencingToken: 8)))
            #expect(try await eventually { [stale, holder, waiting].allSatisfy { running.controller.directory.record(of: $0) != nil } })
            let grant = try await drone.renewLease(epoch: nil, backends: [stale, holder, waiting])
            #expect(grant.ended == [EndedBackend(backend: stale, state: .lost)])
            await client.client.close()
            await drone.close()
            await running.stop()
        }
    }

    @Test func aLockHolderIsLostOnlyOnceItsDronesLeaseWentStaleAndWasRevoked() async throws {
        try await withCluster { server in
            let running = try await controller(server)
            let drone = try await FakeDrone(server: server)
            try await drone.startHeartbeats()
            let epoch = try await drone.renewLease(epoch: nil).epoch
            let renewing = Task {
                while !Task.isCancelled {
                    _ = try? await drone.renewLease(epoch: epoch)
                    try? await Task.sleep(for: .milliseconds(500))
                }
            }
            let client = PlaneMessenger(client: try await server.connectedClient())
            try await Task.sleep(for: .milliseconds(300))
            guard case .scheduled(let holder) = try await client.request(PlaneSubjects.schedule("plane.test"), scheduleRequest(lock: "doc"), timeout: .seconds(5)),
                  case .scheduled(let free) = try await client.request(PlaneSubjects.schedule("plane.test"), scheduleRequest(), timeout: .seconds(5)) else {
                Issue.record("expected Scheduled"); return
            }
            #expect(holder.fencingToken != nil && free.fencingToken == nil)
            #expect(drone.spawns.withLock { $0.first?.lock } == "doc")
            // Heartbeats stop, renewals go on: the lockless backend is lost after the drone's
            // grace; the lock holder stays, since its drone still holds the lease.
            drone.stopHeartbeats()
            #expect(try await eventually(timeout: .seconds(30)) { running.controller.directory.record(of: free.backendID)?.state == .lost })
            try await Task.sleep(for: .seconds(4))
            #expect(running.controller.directory.record(of: holder.backendID)?.isLive == true)
            // Renewals stop too: after lock_reassign_after the lease is revoked, the holder is
            // lost, and its lock taken by a new backend with a larger fencing token.
            renewing.cancel()
            _ = await renewing.value
            #expect(try await eventually(timeout: .seconds(30)) { running.controller.directory.record(of: holder.backendID)?.state == .lost })
            let replacement = try await FakeDrone(server: server)
            try await replacement.startHeartbeats()
            try await Task.sleep(for: .milliseconds(300))
            guard case .scheduled(let next) = try await client.request(PlaneSubjects.schedule("plane.test"), scheduleRequest(lock: "doc"), timeout: .seconds(5)) else {
                Issue.record("expected Scheduled"); return
            }
            #expect(next.drone == replacement.id && next.spawned && (next.fencingToken ?? 0) > (holder.fencingToken ?? .max))
            // The drone comes back: a new epoch, and the list of what the cluster ended.
            let grant = try await drone.renewLease(epoch: epoch, backends: [holder.backendID, free.backendID, next.backendID])
            #expect(grant.epoch == epoch + 1)
            // A backend placed on another drone (the replacement's) is not this drone's to run.
            #expect(Set(grant.ended) == [EndedBackend(backend: holder.backendID, state: .lost), EndedBackend(backend: free.backendID, state: .lost),
                                         EndedBackend(backend: next.backendID, state: .lost)])
            renewing.cancel()
            await replacement.close()
            await drone.close()
            await client.client.close()
            await running.stop()
        }
    }

    /// A renewal written between a controller's judgement and its revocation wins: the
    /// revocation is a compare-and-set on the revision that was judged stale.
    @Test func aRenewalRacingTheRevocationWins() async throws {
        try await withCluster { server in
            let client = try await server.connectedClient()
            let store = try await ControllerStore.open(JetStream(client: client), replicas: 1)
            let leases = DroneLeases(bucket: store.leases, logger: .init(label: "test"))
            let drone = DroneID.random()
            let request = DroneLeaseRequest(cluster: "plane.test", drone: drone, epoch: nil, leaseHardMilliseconds: 2000)
            #expect(try await leases.renew(request) == 1)
            let judged = try #require(try await store.leases.get(drone.rawValue)).revision
            leases.table.withLock { $0.observe(try! WireDecoder().decode(DroneLeaseRecord.self, from: [UInt8]("""
                {"drone":"\(drone)","cluster":"plane.test","epoch":1,"revoked":false,"lease_hard_ms":2000,"renewed":"2026-12-05T00:00:00Z"}
                """.utf8)), revision: judged, at: .now) }
            #expect(try await leases.renew(request) == 1)
            #expect(try await leases.revoke(drone, revision: judged) == false, "the renewal came first")
            let current = try #require(try await store.leases.get(drone.rawValue))
            leases.table.withLock { $0.observe(try! WireDecoder().decode(DroneLeaseRecord.self, from: current.value), revision: current.revision, at: .now) }
            #expect(try await leases.revoke(drone, revision: current.revision))
            #expect(try await leases.renew(DroneLeaseRequest(cluster: "plane.test", drone: drone, epoch: 1, leaseHardMilliseconds: 2000)) == 2)
            await client.close()
        }
    }
}

extension RunningController {
    /// A controller that gives up on a spawn after 1 s and one attempt (so resolves a
    /// pending lock after 2 s) and moves locks 3 s after a drone's last renewal.
    static func quickToResolveLocks(_ server: NATSServerProcess) async throws -> RunningController {
        try await RunningController(server: server) {
            $0.scheduler?.spawnTimeout = .seconds(1)
            $0.scheduler?.maxSpawnAttempts = 1
            $0.scheduler?.lockReassignAfter = .seconds(3)
            $0.scheduler?.leaseMargin = .seconds(1)
        }
    }
}

/// A lock's spawn that its drone never answers (the answer lost with a NATS node, or the
/// drone slow): the drone may run the backend all the same, so the lock is not freed when
/// the scheduler gives up. It stays unconfirmed, naming that drone, until the drone reports
/// the backend (then it is the holder) or renews its lease without reporting it (then the
/// record ends and the lock is free) — resolved by the next request or by the sweeper.
@Suite(.timeLimit(.minutes(3)))
struct UnansweredLockSpawnTests {
    enum Outcome { case reported, unreported }

    @Test(arguments: [Outcome.reported, .unreported])
    func anUnansweredSpawnKeepsItsLockUntilResolved(_ outcome: Outcome) async throws {
        try await withCluster { server in
            let running = try await RunningController.quickToResolveLocks(server)
            let client = try await server.connectedClient()
            let messenger = PlaneMessenger(client: client)
            let store = try await ControllerStore.open(JetStream(client: client), replicas: 1)
            let drone = try await FakeDrone(server: server, policy: .silent)
            try await drone.startHeartbeats()
            _ = try await drone.renewLease(epoch: nil)
            let renewing = Task {
                while !Task.isCancelled {
                    _ = try? await drone.renewLease(epoch: 1)
                    try? await Task.sleep(for: .milliseconds(300))
                }
            }
            let terminations = try await messenger.subscribe(PlaneSubjects.terminateAll("plane.test"))
            let lock: LockName = "unanswered"
            let key = LockRecord.key(cluster: "plane.test", lock: lock)
            let first = try await messenger.request(PlaneSubjects.schedule("plane.test"), scheduleRequest(lock: lock), timeout: .seconds(30))
            guard case .noDroneAvailable = first else { Issue.record("expected NoDroneAvailable, got \(first)"); return }
            let sent = try #require(drone.spawns.withLock { $0.first })
            // Not freed: pending, naming the drone that did not answer.
            let kept = try await store.lock(key)?.record
            #expect(kept?.backendID == sent.backendID && kept?.confirmed == false && kept?.drone == drone.id)
            #expect(try await store.backend(sent.backendID)?.record.state == nil)

            switch outcome {
            case .reported:
                // The drone had started it after all, and says so: it is the lock's holder,
                // and asking again gives it (no second spawn).
                let update = UpdateBackendStateMessage(cluster: "plane.test", state: .ready, backend: sent.backendID, time: .now(), drone: drone.id)
                _ = try await drone.messenger.request(PlaneSubjects.updateBackendState("plane.test", sent.backendID), update, timeout: .seconds(5))
                let again = try await messenger.request(PlaneSubjects.schedule("plane.test"), scheduleRequest(lock: lock), timeout: .seconds(30))
                guard case .scheduled(let held) = again else { Issue.record("expected Scheduled, got \(again)"); return }
                #expect(held.backendID == sent.backendID && !held.spawned)
                #expect(try await store.lock(key)?.record.confirmed == true)
                #expect(drone.spawns.withLock { $0.count } == 1)
            case .unreported:
                // A drone that renews without reporting it does not have it: with nobody
                // asking again, the sweeper ends the record, tells the drone to stop it in
                // case, and frees the lock.
                #expect(try await eventually(timeout: .seconds(20)) { try await store.lock(key) == nil })
                #expect(try await store.backend(sent.backendID)?.record.state == .errorLoading)
                var told = false
                for await delivery in terminations {
                    if case .success(let request) = delivery.message, request.backendID == sent.backendID { told = true; break }
                }
                #expect(told)
            }
            renewing.cancel()
            try? terminations.unsubscribe()
            await drone.close()
            await client.close()
            await running.stop()
        }
    }

    /// A backend without a lock whose drone reported it but whose answer never came: the
    /// client is told there is none, the drone is told to terminate it, and its record ends
    /// (the report had moved it first, so the scheduler's first write lost; it stayed live,
    /// naming a backend nobody knew the id of).
    @Test func aSpawnReportedButNotAnsweredIsEnded() async throws {
        try await withCluster { server in
            let running = try await RunningController(server: server)
            let client = try await server.connectedClient()
            let messenger = PlaneMessenger(client: client)
            let store = try await ControllerStore.open(JetStream(client: client), replicas: 1)
            let drone = try await FakeDrone(server: server, policy: .reportUnanswered)
            try await drone.startHeartbeats()
            let terminations = try await messenger.subscribe(PlaneSubjects.terminateAll("plane.test"))
            try await Task.sleep(for: .milliseconds(300))
            let reply = try await messenger.request(PlaneSubjects.schedule("plane.test"), scheduleRequest(), timeout: .seconds(30))
            guard case .noDroneAvailable = reply else { Issue.record("expected NoDroneAvailable, got \(reply)"); return }
            let sent = try #require(drone.spawns.withLock { $0.first })
            #expect(try await store.backend(sent.backendID)?.record.state == .errorLoading)
            var told = false
            for await delivery in terminations {
                if case .success(let request) = delivery.message, request.backendID == sent.backendID { told = true; break }
            }
            #expect(told)
            try? terminations.unsubscribe()
            await drone.close()
            await client.close()
            await running.stop()
        }
    }
}

/// What a controller killed between a drone's `true` and the lock's confirmation leaves
/// behind (a pending lock and a claimed backend), and how the next request resolves it.
@Suite(.timeLimit(.minutes(3)))
struct UnconfirmedLockTests {
    enum Left { case reported, unreported, unreportedOnALapsedDrone }

    @Test(arguments: [Left.reported, .unreported, .unreportedOnALapsedDrone])
    func aLockLeftPendingByACrashedController(_ left: Left) async throws {
        try await withCluster { server in
            let running = try await RunningController.quickToResolveLocks(server)
            let client = try await server.connectedClient()
            let store = try await ControllerStore.open(JetStream(client: client), replicas: 1)
            let owner = try await FakeDrone(server: server)
            try await owner.startHeartbeats()
            _ = try await owner.renewLease(epoch: nil)
            let renewing = Task {
                while !Task.isCancelled, left != .unreportedOnALapsedDrone {
                    _ = try? await owner.renewLease(epoch: 1)
                    try? await Task.sleep(for: .milliseconds(300))
                }
            }
            // What the crashed controller wrote: the lock (pending), the backend's record.
            let lock: LockName = "doc"
            let key = LockRecord.key(cluster: "plane.test", lock: lock)
            let orphan = BackendID.random()
            let token = try await store.locks.create(key, value: try ControllerStore.encode(LockRecord(backendID: orphan, drone: owner.id, created: .now())))
            var record = BackendRecord(backendID: orphan, cluster: "plane.test", drone: owner.id, time: .now(), lock: lock)
            if left == .reported { record.state = .loading }
            _ = try await store.backends.create(orphan.rawValue, value: try ControllerStore.encode(record))
            let terminations = try await PlaneMessenger(client: client).subscribe(PlaneSubjects.terminateAll("plane.test"))

            let messenger = PlaneMessenger(client: client)
            let response = try await messenger.request(PlaneSubjects.schedule("plane.test"), scheduleRequest(lock: lock), timeout: .seconds(30))
            guard case .scheduled(let answer) = response else { Issue.record("\(response)"); return }
            switch left {
            case .reported:
                // Its drone has it: it holds the lock, now confirmed.
                #expect(answer.backendID == orphan && !answer.spawned && answer.fencingToken == nil)
                #expect(try await store.lock(key)?.record.confirmed == true)
            case .unreported:
                // A renewing drone would have reported it: it never started. Its record ends,
                // its drone is told to stop it in case, and the lock goes to a new backend.
                #expect(answer.backendID != orphan && answer.spawned && (answer.fencingToken ?? 0) > token)
                #expect(try await store.backend(orphan)?.record.state == .errorLoading)
                var told = false
                for await delivery in terminations {
                    if case .success(let request) = delivery.message, request.backendID == orphan { told = true; break }
                }
                #expect(told)
            case .unreportedOnALapsedDrone:
                // Its drone may have it and is not renewing: the lock moves only after the
                // drone's lease is revoked and the backend reported Lost.
                #expect(answer.backendID != orphan && answer.spawned)
                #expect(try await store.backend(orphan)?.record.state == .lost)
                let lease = try #require(try await store.leases.get(owner.id.rawValue))
                #expect(try WireDecoder().decode(DroneLeaseRecord.self, from: lease.value).revoked)
            }
            renewing.cancel()
            try? terminations.unsubscribe()
            await owner.close()
            await client.close()
            await running.stop()
        }
    }
}
