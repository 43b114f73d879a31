import Logging
import NATS
import PlaneCore
import PlaneMessaging
import PlaneTestSupport
import Synchronization
import Testing
@testable import PlaneDrone

/// A stand-in for the controllers' relay: answers `null` and records what it got, except
/// for backends it is told to ignore.
final class TestRelay: Sendable {
    let received = Mutex<[UpdateBackendStateMessage]>([])
    let ignoring = Mutex<Set<BackendID>>([])
    let task = Mutex<Task<Void, Never>?>(nil)
    let client: NATSClient

    init(server: NATSServerProcess) async throws {
        client = try await server.connectedClient()
        let subscription = try await PlaneMessenger(client: client).subscribe(PlaneSubjects.updateBackendStateAll)
        let relayTask = Task { [weak self] in
            for await delivery in subscription {
                guard let self, case .success(let update) = delivery.message else { continue }
                if self.ignoring.withLock({ $0.contains(update.backend) }) { continue }
                // Delivery is at least once (a reply that comes after the outbox's request
                // timeout is followed by a resend); a repeat is stored once, as the
                // controller's relay does by message id.
                self.received.withLock { received in
                    if received.last(where: { $0.backend == update.backend })?.state != update.state { received.append(update) }
                }
                _ = try? await delivery.respond(NullReply())
            }
        }
        task.withLock { $0 = relayTask }
    }

    func states(of backend: BackendID) -> [BackendState] {
        received.withLock { $0.filter { $0.backend == backend }.map(\.state) }
    }

    func close() async {
        task.withLock { $0?.cancel() }
        await client.close()
    }
}

@Suite(.serialized) struct StateOutboxTests {
    let drone = DroneID.random()

    func makeStore() throws -> DroneStore {
        try DroneStore(path: try TestEnvironment.temporaryDirectory("outbox") + "/drone.sqlite3")
    }

    func spawn() -> SpawnRequest {
        SpawnRequest(cluster: "plane.test", droneID: drone, maxIdleSeconds: 30, backendID: .random(), executable: DockerExecutableConfig(image: "x"))
    }

    /// Records `states` for a new backend and queues them.
    func record(_ states: [BackendState], in store: DroneStore, outbox: StateOutbox) async throws -> BackendID {
        let request = spawn()
        await outbox.enqueue(try await store.insert(request, cluster: "plane.test", runtime: "test", drone: drone, time: .now()))
        for state in states {
            let update = UpdateBackendStateMessage(cluster: "plane.test", state: state, backend: request.backendID, time: .now(), drone: drone)
            await outbox.enqueue(try await store.recordState(update))
        }
        return request.backendID
    }

    func outbox(_ store: DroneStore, _ client: NATSClient) -> StateOutbox {
        StateOutbox(store: store, messenger: PlaneMessenger(client: client), logger: Logger(label: "test.outbox"),
                    requestTimeout: .seconds(2), initialBackoff: .milliseconds(20), maxBackoff: .milliseconds(200))
    }

    @Test func updatesArriveInOrderAndLeaveTheStore() async throws {
        try await withNATSServer { server in
            let relay = try await TestRelay(server: server)
            let store = try makeStore()
            let client = try await server.connectedClient()
            let outbox = outbox(store, client)
            let id = try await record([.starting, .ready, .swept], in: store, outbox: outbox)
            #expect(await outbox.flush(timeout: .seconds(30)))
            #expect(relay.states(of: id) == [.loading, .starting, .ready, .swept])
            #expect(try await store.pendingUpdates().isEmpty)
            await client.close()
            await relay.close()
        }
    }

    /// An update the store could not record goes out from memory, in its backend's order
    /// between recorded ones, and leaves nothing in (or missing from) the store.
    @Test func unrecordedUpdatesAreSentInOrder() async throws {
        try await withNATSServer { server in
            let relay = try await TestRelay(server: server)
            let store = try makeStore()
            let client = try await server.connectedClient()
            let outbox = outbox(store, client)
            let id = try await record([.starting], in: store, outbox: outbox)
            func update(_ state: BackendState) -> UpdateBackendStateMessage {
                UpdateBackendStateMessage(cluster: "plane.test", state: state, backend: id, time: .now(), drone: drone)
            }
            await outbox.enqueueUnrecorded(update(.ready))
            await outbox.enqueueUnrecorded(update(.swept))
            await outbox.enqueue(try await store.recordState(update(.terminated)))
            #expect(await outbox.flush(timeout: .seconds(30)))
            #expect(relay.states(of: id) == [.loading, .starting, .ready, .swept, .terminated])
            #expect(try await store.pendingUpdates().isEmpty)
            #expect(try await store.backend(id)?.state == .terminated)
            await client.close()
            await relay.close()
        }
    }

    @Test func withoutAControllerUpdatesWaitAndNothingIsLost() async throws {
        try await withNATSServer { server in
            let store = try makeStore()
            let client = try await server.connectedClient()
            var sender = outbox(store, client)
            let id = try await record([.starting], in: store, outbox: sender)
            // No relay: nothing is acknowledged; the drone "restarts" with a new outbox.
            #expect(await sender.flush(timeout: .milliseconds(600)) == false)
            await sender.stop()
            #expect(try await store.pendingUpdates().count == 2)
            sender = outbox(store, client)
            try await sender.resume()
            let relay = try await TestRelay(server: server)
            #expect(await sender.flush(timeout: .seconds(30)))
            #expect(relay.states(of: id) == [.loading, .starting])
            await client.close()
            await relay.close()
        }
    }

    @Test func aNATSRestartLosesNoUpdate() async throws {
        try await withNATSServer { server in
            let store = try makeStore()
            let client = try await server.connectedClient()
            let sender = outbox(store, client)
            let relay = try await TestRelay(server: server)
            let first = try await record([.starting], in: store, outbox: sender)
            #expect(await sender.flush(timeout: .seconds(30)))
            await server.kill9()
            let second = try await record([.starting, .ready], in: store, outbox: sender)
            try await Task.sleep(for: .milliseconds(300))
            try await server.startAgain()
            // The relay's and the drone's clients reconnect on their own.
            #expect(await sender.flush(timeout: .seconds(40)))
            // Delivery is at least once: a request sent just before the outage may have
            // reached the relay although its answer was lost, and is sent again (the
            // controller's relay stores such a repeat once). Nothing is lost or reordered.
            func collapsed(_ states: [BackendState]) -> [BackendState] {
                states.reduce(into: []) { if $0.last != $1 { $0.append($1) } }
            }
            #expect(collapsed(relay.states(of: first)) == [.loading, .starting])
            #expect(collapsed(relay.states(of: second)) == [.loading, .starting, .ready])
            #expect(try await store.pendingUpdates().isEmpty)
            await client.close()
            await relay.close()
        }
    }

    @Test func oneStuckBackendDoesNotBlockTheOthers() async throws {
        try await withNATSServer { server in
            let store = try makeStore()
            let client = try await server.connectedClient()
            let sender = outbox(store, client)
            let relay = try await TestRelay(server: server)
            let stuck = spawn().backendID
            relay.ignoring.withLock { _ = $0.insert(stuck) }
            let request = SpawnRequest(cluster: "plane.test", droneID: drone, maxIdleSeconds: 30, backendID: stuck, executable: DockerExecutableConfig(image: "x"))
            await sender.enqueue(try await store.insert(request, cluster: "plane.test", runtime: "test", drone: drone, time: .now()))
            let other = try await record([.starting, .ready], in: store, outbox: sender)
            #expect(try await eventually { relay.states(of: other) == [.loading, .starting, .ready] })
            // The relay records an update before it answers, so the outbox drops the other
            // backend's last update a moment later; only the stuck one stays.
            #expect(try await eventually { await sender.pendingCount == 1 })
            #expect(relay.states(of: stuck).isEmpty)
            // Once the relay answers again, the stuck one goes through too.
            relay.ignoring.withLock { $0 = [] }
            #expect(await sender.flush(timeout: .seconds(30)))
            #expect(relay.states(of: stuck) == [.loading])
            await client.close()
            await relay.close()
        }
    }
}
