import Foundation
import NATS
import PlaneCore
import PlaneMessaging
import PlaneTestSupport
import Synchronization
import Testing

/// docs/nats-permissions.conf as written (its placeholders replaced): a `plane controller`
/// and a `plane drone` run a backend from start to termination with their users' rights
/// alone, a client user schedules and reads states, and what each role must not do is
/// dropped by nats-server: a client cannot publish state updates or spawns, a drone cannot
/// schedule, publish another cluster's DNS records or listen to schedule requests.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct NATSPermissionsTests {
    static let admin = (user: "plane-test-admin", password: "admin-password")

    func authorization(drone: DroneID) throws -> String {
        let documented = try String(contentsOfFile: PythonEnvironment.packageRoot + "/docs/nats-permissions.conf", encoding: .utf8)
        let replaced = documented.replacingOccurrences(of: "plane_example_com", with: "plane_test").replacingOccurrences(of: "drone-1", with: drone.rawValue)
        // The test's own observer, with every right, beside the documented users.
        return replaced.replacingOccurrences(of: "users = [", with: "users = [\n    { user: \"\(Self.admin.user)\", password: \"\(Self.admin.password)\" }")
    }

    func client(_ server: NATSServerProcess, user: String, password: String, inbox: String) async throws -> NATSClient {
        try await server.connectedClient { config in
            config.auth = .userPassword(user: user, password: password)
            config.inboxPrefix = inbox
        }
    }

    /// Messages on `subject` the observer gets within `wait`.
    func observed(_ observer: NATSClient, _ subject: String, while act: () async throws -> Void, wait: Duration = .milliseconds(500)) async throws -> [String] {
        let subscription = try await observer.subscribe(to: subject)
        try await act()
        try await Task.sleep(for: wait)
        try subscription.unsubscribe()
        var subjects: [String] = []
        for await message in subscription { subjects.append(message.subject) }
        return subjects
    }

    @Test func eachRoleCanDoItsPartAndNothingElse() async throws {
        let drone = DroneID.random()
        var options = NATSServerProcess.Options()
        options.authorization = try authorization(drone: drone)
        options.user = Self.admin.user
        options.password = Self.admin.password
        try await withNATSServer(options) { server in
            let directory = try TestEnvironment.temporaryDirectory("nats-permissions")
            let hosts = "hosts = [\"\(server.url)\"]"
            let image = try await DockerTestImage.shared.ensureLoaded()
            // A warm pool too: the controller publishes it, the drone reads it (issue 15).
            try """
                [nats]
                \(hosts)
                auth = { username = "plane-controller", password = "CHANGE-ME-controller" }
                inbox_prefix = "_INBOX_plane_controller"
                [scheduler]
                [http]
                bind_ip = "127.0.0.1"
                port = \(try TestEnvironment.freePort())
                cluster = "plane.test"
                [http.services.warm]
                image = "\(image)"
                warm_pool = 1
                """.write(toFile: directory + "/controller.toml", atomically: true, encoding: .utf8)
            try """
                cluster_domain = "plane.test"
                drone_id = "\(drone)"
                state_dir = "\(directory)/state"
                [nats]
                \(hosts)
                auth = { username = "plane-\(drone)", password = "CHANGE-ME-\(drone)" }
                inbox_prefix = "_INBOX_plane_drone_1"
                [agent]
                ip = "127.0.0.1"
                port_range = "23800-23899"
                stop_grace_secs = 2
                """.write(toFile: directory + "/drone.toml", atomically: true, encoding: .utf8)
            let plane = try TestExecutables.path("plane")
            let controller = try ChildProcess(plane, arguments: ["controller", directory + "/controller.toml"])
            let droneProcess = try ChildProcess(plane, arguments: ["drone", directory + "/drone.toml"])
            defer { controller.signal(SIGKILL); droneProcess.signal(SIGKILL) }
            let observer = try await server.connectedClient()
            let heartbeats = try await PlaneMessenger(client: observer).subscribe(SubjectPattern<DroneStatusMessage, NullReply>(PlaneSubjects.droneStatus(drone).subject))
            let clientConnection = try await client(server, user: "plane-client", password: "CHANGE-ME-client", inbox: "_INBOX_plane_client")
            let client = PlaneMessenger(client: clientConnection)
            let droneUser = try await self.client(server, user: "plane-\(drone)", password: "CHANGE-ME-\(drone)", inbox: "_INBOX_plane_drone_1")

            // The client schedules; the controller places it on the drone; it gets Ready.
            // The client waits longer than the controller's own attempts (3 × 10 s): a reply
            // given up on while the drone still accepts would leave a backend nobody ends.
            let request = ScheduleRequest(cluster: "plane.test", maxIdleSeconds: 300, executable: DockerExecutableConfig(image: image))
            let scheduleTimeout = Duration.seconds(45)
            var scheduled: ScheduledBackend?
            #expect(try await eventually(timeout: .seconds(60)) {
                // Retried only while the controller is not listening or knows no drone yet.
                do {
                    switch try await client.request(PlaneSubjects.schedule("plane.test"), request, timeout: scheduleTimeout) {
                    case .scheduled(let backend): scheduled = backend; return true
                    case .noDroneAvailable, .error: return false
                    }
                } catch let error as NATSError where error.code == .noResponders {
                    return false
                }
            }, "controller: \(controller.output)\ndrone: \(droneProcess.output)")
            let backend = try #require(scheduled).backendID
            #expect(scheduled?.drone == drone)
            func state(of backend: BackendID = backend) async throws -> BackendState? {
                guard let stored = try await client.jetStream.lastMessage(stream: PlaneSubjects.backendStatusStream, subject: PlaneSubjects.backendStatus(backend).subject) else { return nil }
                return try WireDecoder().decode(BackendStateMessage.self, from: stored.payload).state
            }
            #expect(try await eventually(timeout: .seconds(60)) { try await state() == .ready }, "drone: \(droneProcess.output)")

            // A client cannot publish state updates or spawn requests.
            let forged = UpdateBackendStateMessage(cluster: "plane.test", state: .terminated, backend: backend, time: .now(), drone: drone)
            let updates = try await observed(observer, "cluster.*.backend.*.status") {
                try await clientConnection.publish(PlaneSubjects.updateBackendState("plane.test", backend).subject, payload: try WireEncoder().encode(forged))
            }
            #expect(updates.isEmpty, "a client's state update went through")
            let spawns = try await observed(observer, "drone.*.spawn") {
                try await clientConnection.publish(PlaneSubjects.spawn(drone).subject, payload: Array("{}".utf8))
            }
            #expect(spawns.isEmpty)
            #expect(try await state() == .ready)

            // A drone cannot schedule, publish another cluster's records, or listen to
            // schedule requests; its own cluster's records go through.
            let schedules = try await observed(observer, "cluster.*.schedule") {
                try await droneUser.publish("cluster.plane_test.schedule", payload: try WireEncoder().encode(request))
            }
            #expect(schedules.isEmpty, "a drone scheduled")
            let record = SetDnsRecord(cluster: "other.test", kind: .a, name: backend.rawValue, value: "127.0.0.1")
            let records = try await observed(observer, "cluster.*.dns.*") {
                try await droneUser.publish("cluster.other_test.dns.A", payload: try WireEncoder().encode(record))
                try await droneUser.publish("cluster.plane_test.dns.A", payload: try WireEncoder().encode(SetDnsRecord(cluster: "plane.test", kind: .a, name: backend.rawValue, value: "127.0.0.1")))
            }
            #expect(records == ["cluster.plane_test.dns.A"], "only its own cluster's record: \(records)")
            let listening = try await droneUser.subscribe(to: "cluster.plane_test.schedule")
            let another = try await client.request(PlaneSubjects.schedule("plane.test"), request, timeout: scheduleTimeout)
            try await Task.sleep(for: .milliseconds(300))
            try listening.unsubscribe()
            var overheard = 0
            for await _ in listening { overheard += 1 }
            #expect(overheard == 0, "a drone read a client's schedule request")

            // The client terminates the backends; the drone stops them and says so.
            var backends = [backend]
            if case .scheduled(let second) = another { backends.append(second.backendID) }
            for id in backends {
                try await clientConnection.publish(PlaneSubjects.terminate("plane.test", id).subject,
                                                  payload: try WireEncoder().encode(TerminationRequest(cluster: "plane.test", backendID: id)))
            }
            // Every one of them: a backend still running when the drone stops keeps running
            // (no drain_on_shutdown), as it should.
            for id in backends {
                #expect(try await eventually(timeout: .seconds(60)) { try await state(of: id) == .terminated }, "drone: \(droneProcess.output)")
            }
            // The drone read the warm pool's definition with its rights alone and keeps its backend.
            let warmSeen = Flag()
            let reader = Task {
                for await delivery in heartbeats {
                    if case .success(let status) = delivery.message, status.warmPools["warm"] == 1 { warmSeen.value.withLock { $0 = true } }
                }
            }
            #expect(try await eventually(timeout: .seconds(60)) { warmSeen.value.withLock { $0 } }, "drone: \(droneProcess.output.suffix(2000))")
            reader.cancel()
            try heartbeats.unsubscribe()
            controller.signal(SIGTERM)
            droneProcess.signal(SIGTERM)
            _ = await controller.waitForExit(timeout: .seconds(20))
            _ = await droneProcess.waitForExit(timeout: .seconds(20))
            // Its backends and its warm one are gone.
            let docker = SystemProgram("docker", debianPackage: "docker.io")
            let listing = ["ps", "-a", "--filter", "label=dev.plane.drone=\(drone)", "--format", "{{.ID}} {{.Status}} {{.Label \"dev.plane.backend\"}}"]
            let gone = try await eventually(timeout: .seconds(60)) { try await docker.run(listing).isEmpty }
            let left = gone ? "" : try await docker.run(listing)
            #expect(gone, "left: \(left) (scheduled \(backends))\ndrone: \(droneProcess.output.suffix(6000))")
            for connection in [observer, clientConnection, droneUser] { await connection.close() }
        }
    }
}

/// A flag a reading task sets and a test polls.
final class Flag: Sendable {
    let value = Mutex(false)
}
