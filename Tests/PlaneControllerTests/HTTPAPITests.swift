import Foundation
import NATS
@testable import PlaneController
import PlaneCore
import PlaneMessaging
import PlaneTestSupport
import Synchronization
import Testing

/// What the control routes sent, as a test's listeners saw it.
final class SeenControlMessages: Sendable {
    let value = Mutex<(terminations: [TerminationRequest], drains: [Bool])>(([], []))
}

/// The HTTP API with curl, as the seed README shows it, against a controller on a real
/// nats-server and a drone written as test code.
@Suite(.serialized) struct HTTPAPITests {
    static let curl = SystemProgram("curl", debianPackage: "curl")

    func apiController(_ server: NATSServerProcess, token: String? = nil) async throws -> RunningController {
        try await RunningController(server: server) { configuration in
            var http = HTTPAPIConfiguration(cluster: "plane.test")
            http.port = 0
            http.token = token
            http.services = ["hello-world": HTTPServiceConfiguration(image: "plane-test-server:latest", allowedEnv: ["A"]), "plain": "plane-test-server:latest"]
            configuration.http = http
        }
    }

    /// (status, headers+body) of one curl call.
    func curl(_ controller: RunningController, _ method: String, _ path: String, body: String? = nil, token: String? = nil) async throws -> (Int, String) {
        let port = try #require(controller.controller.httpServer?.address?.port)
        var arguments = ["-s", "-D", "-", "-X", method, "--max-time", "30"]
        if let body { arguments += ["-H", "Content-Type: application/json", "-d", body] }
        if let token { arguments += ["-H", "Authorization: Bearer \(token)"] }
        arguments.append("http://127.0.0.1:\(port)\(path)")
        let output = try await Self.curl.run(arguments)
        let status = Int(output.split(separator: " ").dropFirst().first ?? "") ?? 0
        return (status, output)
    }

    func bodyJSON(_ output: String) throws -> JSONObject {
        let body = try #require(output.components(separatedBy: "\r\n\r\n").last)
        return try #require(try JSONParser.parse(body).objectValue)
    }

    @Test func spawnStatusAndEvents() async throws {
        try await withCluster { server in
            let controller = try await apiController(server)
            let drone = try await FakeDrone(server: server)
            try await drone.startHeartbeats()
            try await Task.sleep(for: .milliseconds(300))
            // The seed README's request.
            let (status, output) = try await curl(controller, "POST", "/service/hello-world/spawn", body: "{}")
            #expect(status == 200, "\(output)")
            let reply = try bodyJSON(output)
            let name = try #require(reply["name"]?.stringValue)
            #expect(reply["url"]?.stringValue == "https://\(name).plane.test")
            #expect(reply["spawned"]?.boolValue == true && reply["bearer_token"] == nil)
            #expect(reply["status_url"]?.stringValue?.hasSuffix("/backend/\(name)/status") == true)
            let spawn = try #require(drone.spawns.withLock { $0.first })
            #expect(spawn.executable.image == "plane-test-server:latest" && spawn.maxIdleSeconds == 60)
            // With fields: lock, token, port, env.
            let (_, locked) = try await curl(controller, "POST", "/service/hello-world/spawn",
                                       body: #"{"lock":"doc-1","require_bearer_token":true,"port":8081,"env":{"A":"b"},"grace_period_seconds":120}"#)
            let first = try bodyJSON(locked)
            #expect(first["bearer_token"]?.stringValue?.count == 30 && first["spawned"]?.boolValue == true)
            let lockedSpawn = try #require(drone.spawns.withLock { $0.last })
            #expect(lockedSpawn.executable.port == 8081 && lockedSpawn.executable.env == ["A": "b"] && lockedSpawn.maxIdleSeconds == 120)
            let (_, again) = try await curl(controller, "POST", "/service/hello-world/spawn", body: #"{"lock":"doc-1"}"#)
            let second = try bodyJSON(again)
            // The backend holding the lock is the answer, but its token is not: without
            // [http] token nobody is authenticated, and naming a lock must not reveal it.
            #expect(second["name"] == first["name"] && second["spawned"]?.boolValue == false && second["bearer_token"] == nil)
            // Status: the latest state, with CORS; then the event stream ends after a terminal state.
            let backend = try BackendID(name)
            let relay = PlaneMessenger(client: try await server.connectedClient())
            for state in [BackendState.loading, .starting, .starting, .ready] {
                let update = UpdateBackendStateMessage(cluster: "plane.test", state: state, backend: backend, time: .now(), drone: drone.id)
                _ = try await relay.request(PlaneSubjects.updateBackendState("plane.test", backend), update, timeout: .seconds(5))
            }
            let history = try await relay.backendStateHistory(of: backend)
            var stored: [String] = []
            for try await entry in history {
                stored.append((try? entry.message.get().state.rawValue) ?? "?")
                if entry.pending == 0 { break }
            }
            history.stop()
            #expect(stored == ["Loading", "Starting", "Starting", "Ready"])
            let (statusCode, statusOutput) = try await curl(controller, "GET", "/backend/\(name)/status")
            #expect(statusCode == 200 && statusOutput.lowercased().contains("access-control-allow-origin: *"))
            let current = try bodyJSON(statusOutput)
            #expect(current["state"]?.stringValue == "Ready" && current["backend"]?.stringValue == name && current["time"]?.stringValue != nil)
            let terminate = Task {
                try await Task.sleep(for: .milliseconds(500))
                let update = UpdateBackendStateMessage(cluster: "plane.test", state: .terminated, backend: backend, time: .now(), drone: drone.id)
                _ = try await relay.request(PlaneSubjects.updateBackendState("plane.test", backend), update, timeout: .seconds(5))
            }
            let (_, events) = try await curl(controller, "GET", "/backend/\(name)/status/stream")
            try await terminate.value
            let states = events.replacingOccurrences(of: "\r\n", with: "\n").components(separatedBy: "\n").filter { $0.hasPrefix("data: ") }.compactMap {
                try? JSONParser.parse(String($0.dropFirst(6))).objectValue?["state"]?.stringValue
            }
            // The stream drops the repeated Starting and ends after Terminated.
            #expect(states == ["Loading", "Starting", "Ready", "Terminated"], "\(events.debugDescription)")
            #expect(events.contains("text/event-stream"))
            await relay.client.close()
            await drone.close()
            await controller.stop()
        }
    }

    @Test func errorsAreJSONWithTheRightStatus() async throws {
        try await withCluster { server in
            let controller = try await apiController(server)
            // No drone: 503.
            let (noDrone, output) = try await curl(controller, "POST", "/service/hello-world/spawn", body: "{}")
            #expect(try noDrone == 503 && bodyJSON(output)["code"]?.stringValue == "NoDroneAvailable")
            // Unknown service: 404 naming the known ones.
            let (unknown, unknownOutput) = try await curl(controller, "POST", "/service/nope/spawn", body: "{}")
            #expect(try unknown == 404 && bodyJSON(unknownOutput)["error"]?.stringValue?.contains("hello-world") == true)
            // Bad JSON and bad fields: 400 naming the problem.
            let (badJSON, badOutput) = try await curl(controller, "POST", "/service/hello-world/spawn", body: "{\"lock\":")
            #expect(try badJSON == 400 && bodyJSON(badOutput)["error"]?.stringValue?.contains("not valid JSON") == true)
            let (badField, fieldOutput) = try await curl(controller, "POST", "/service/hello-world/spawn", body: #"{"port":"eighty"}"#)
            #expect(try badField == 400 && bodyJSON(fieldOutput)["error"]?.stringValue?.contains("'port'") == true)
            let (typo, typoOutput) = try await curl(controller, "POST", "/service/hello-world/spawn", body: #"{"lokc":"x"}"#)
            #expect(try typo == 400 && bodyJSON(typoOutput)["error"]?.stringValue?.contains("lokc") == true)
            // Env and mounts the service does not allow: 403 naming the key that would allow them.
            let (env, envOutput) = try await curl(controller, "POST", "/service/plain/spawn", body: #"{"env":{"A":"b"}}"#)
            #expect(try env == 403 && bodyJSON(envOutput)["error"]?.stringValue?.contains("allowed_env") == true)
            let (mount, mountOutput) = try await curl(controller, "POST", "/service/hello-world/spawn",
                                                      body: #"{"volume_mounts":[{"Type":"bind","Source":"/","Target":"/host"}]}"#)
            #expect(try mount == 403 && bodyJSON(mountOutput)["error"]?.stringValue?.contains("allowed_mount_sources") == true)
            // Unknown backend status: 404; not an id: 400; unknown route: 404; wrong method: 405.
            #expect(try await curl(controller, "GET", "/backend/\(BackendID.random())/status").0 == 404)
            #expect(try await curl(controller, "GET", "/backend/Not.An.Id/status").0 == 400)
            #expect(try await curl(controller, "GET", "/nothing/here").0 == 404)
            #expect(try await curl(controller, "GET", "/service/hello-world/spawn").0 == 405)
            // Health and metrics.
            let (health, healthOutput) = try await curl(controller, "GET", "/healthz")
            #expect(health == 200 && healthOutput.hasSuffix("ok\n"))
            let (_, metrics) = try await curl(controller, "GET", "/metrics")
            #expect(metrics.contains("plane_schedule_requests_total{result=\"no_drone_available\"} 1"))
            let samples = PrometheusSamples(metrics)
            #expect(samples.value("plane_live_drones") == 0 && samples.value("plane_schedule_latency_seconds_count") == 1, "\(metrics)")
            #expect(samples.types["plane_schedule_latency_seconds"] == "histogram" && metrics.contains("# HELP plane_live_drones "))
            await controller.stop()
        }
    }

    /// What one client can hold is bounded: a connection that sends no whole request within
    /// `request_timeout_secs` (silent, or a head sent slowly) is closed; status streams (a
    /// JetStream consumer each, open to anyone) and connections beyond their limits are
    /// answered 503 and counted; once the holders go, the API serves again.
    @Test(.timeLimit(.minutes(2))) func slowClientsAndFloodsAreBounded() async throws {
        try await withCluster { server in
            func controller(requestTimeout: Duration, maxConnections: Int = 1024, maxStatusStreams: Int = 512) async throws -> RunningController {
                try await RunningController(server: server) { configuration in
                    var http = HTTPAPIConfiguration(cluster: "plane.test")
                    http.port = 0
                    http.requestTimeout = requestTimeout
                    http.maxConnections = maxConnections
                    http.maxStatusStreams = maxStatusStreams
                    configuration.http = http
                }
            }
            func probe(_ controller: RunningController, timeout: Duration) throws -> HTTPProbe {
                var probe = HTTPProbe(port: try #require(controller.controller.httpServer?.address?.port))
                probe.timeout = timeout
                return probe
            }
            // Silent: closed after the timeout, not before.
            let timed = try await controller(requestTimeout: .seconds(3))
            let silentStart = ContinuousClock.now
            let silent = try await probe(timed, timeout: .seconds(20)).raw([])
            let silentFor = ContinuousClock.now - silentStart
            #expect(silent.closed && silent.text.isEmpty && silentFor >= .milliseconds(2500) && silentFor < .seconds(15), "\(silent) after \(silentFor)")
            // A head sent slowly: cut off before it is complete, never answered.
            let slow = try await probe(timed, timeout: .seconds(20)).raw([Array("GET /healthz HTTP/1.1\r\n".utf8), Array("Host: x\r\n\r\n".utf8)], pause: .seconds(5))
            #expect(slow.closed && !slow.text.contains("200"), "\(slow)")
            await timed.stop()

            // Limits (with a request timeout longer than the test, so that a silent client
            // holds its connection until the test closes it).
            let limited = try await controller(requestTimeout: .seconds(300), maxConnections: 3, maxStatusStreams: 2)
            let api = try #require(limited.controller.httpServer)
            let stream = "GET /backend/\(BackendID.random())/status/stream HTTP/1.1\r\nHost: x\r\n\r\n"
            var streams: [HeldConnection] = []
            for _ in 0..<2 {
                let held = try await probe(limited, timeout: .seconds(30)).hold(stream)
                streams.append(held)
                let head = try await held.head()
                #expect(head.hasPrefix("HTTP/1.1 200") && head.contains("text/event-stream"), "\(head)")
            }
            #expect(api.statusStreams.count == 2)
            let third = try await probe(limited, timeout: .seconds(10)).raw(stream)
            #expect(third.text.hasPrefix("HTTP/1.1 503") && third.text.contains("max_status_streams") && third.text.contains("Retry-After"), "\(third)")
            // Its place is given back when the server has seen the close, which can come after
            // the client saw it: until then a new connection would be the fourth, and refused.
            #expect(try await eventually(timeout: .seconds(30)) { api.openConnections.count == 2 })
            // A silent client holds the third connection; a fourth is one too many.
            let holder = try await probe(limited, timeout: .seconds(30)).hold()
            #expect(try await eventually(timeout: .seconds(30)) { api.openConnections.count == 3 })
            let fourth = try await probe(limited, timeout: .seconds(10)).raw("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(fourth.text.hasPrefix("HTTP/1.1 503") && fourth.text.contains("max_connections"), "\(fourth)")
            // A refused client that sends nothing is not kept for the (long) request timeout.
            let refusedStart = ContinuousClock.now
            let refusedSilent = try await probe(limited, timeout: .seconds(30)).raw([])
            let refusedFor = ContinuousClock.now - refusedStart
            #expect(refusedSilent.closed && refusedSilent.text.isEmpty && refusedFor < .seconds(20), "\(refusedSilent) after \(refusedFor)")
            #expect(api.openConnections.count == 3, "the holders are still there")

            // Their clients gone, the streams end on the server too (nothing was written to
            // them), the API serves again, and the limits were counted.
            for held in streams + [holder] { held.close() }
            #expect(try await eventually(timeout: .seconds(30)) { api.statusStreams.count == 0 && api.openConnections.count == 0 })
            let again = try await probe(limited, timeout: .seconds(2)).raw(stream)
            #expect(again.text.hasPrefix("HTTP/1.1 200"), "\(again)")
            let (_, metrics) = try await curl(limited, "GET", "/metrics")
            let samples = PrometheusSamples(metrics)
            #expect((samples.value("plane_input_limit_hits_total", ["limit": "http.max_connections"]) ?? 0) >= 1, "\(metrics)")
            #expect((samples.value("plane_input_limit_hits_total", ["limit": "http.max_status_streams"]) ?? 0) >= 1)
            await limited.stop()
        }
    }

    /// With `max_connections_per_address`, one client holding its share is answered 503 while
    /// another is served; and a flood of connections over a limit holds at most
    /// `maxRefusals` sockets for their 503s, closing the rest as they arrive.
    @Test(.timeLimit(.minutes(2))) func oneClientCannotTakeEveryConnection() async throws {
        try await withCluster { server in
            let running = try await RunningController(server: server) { configuration in
                var http = HTTPAPIConfiguration(cluster: "plane.test")
                http.port = 0
                http.requestTimeout = .seconds(300)
                http.maxConnections = 4
                http.maxConnectionsPerAddress = 2
                configuration.http = http
            }
            let api = try #require(running.controller.httpServer)
            let port = try #require(api.address?.port)
            let health = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            func ask(from source: String) async throws -> String {
                try await SystemProgram.offThePool {
                    let connection = try RawTCPConnection(port: port, source: source, timeout: .seconds(10))
                    defer { connection.close() }
                    try connection.send(health)
                    return String(decoding: connection.readUntilClosed().bytes, as: UTF8.self)
                }
            }
            // 127.0.0.1 holds its two places with silent connections.
            let holders = try (0..<2).map { _ in try RawTCPConnection(port: port, source: "127.0.0.1", timeout: .seconds(1)) }
            #expect(try await eventually(timeout: .seconds(30)) { api.openConnections.count == 2 })
            let third = try await ask(from: "127.0.0.1")
            #expect(third.hasPrefix("HTTP/1.1 503") && third.contains("max_connections_per_address") && third.contains("Retry-After"), "\(third)")
            let other = try await ask(from: "127.0.0.2")
            #expect(other.hasPrefix("HTTP/1.1 200"), "\(other)")

            // 127.0.0.2 and 127.0.0.3 take the last places: the API is full for everyone.
            let more = try ["127.0.0.2", "127.0.0.3"].map { try RawTCPConnection(port: port, source: $0, timeout: .seconds(1)) }
            #expect(try await eventually(timeout: .seconds(30)) { api.openConnections.count == 4 })
            let full = try await ask(from: "127.0.0.4")
            #expect(full.hasPrefix("HTTP/1.1 503") && full.contains("[http] max_connections)"), "\(full)")

            // A flood of silent connections: the first `maxRefusals` are given 2 s for their
            // request, the rest are closed as they arrive. All are accepted after `start`, so
            // one closed before start + 1.9 s was closed without waiting.
            let extra = 6
            let start = ContinuousClock.now
            let flood = try (0..<(HTTPAPIServer.maxRefusals + extra)).map { _ in
                try RawTCPConnection(port: port, source: "127.0.0.5", timeout: .seconds(1))
            }
            var closedEarly = Set<Int>()
            let deadline = start + .milliseconds(1900)
            sweeps: while true {
                for (index, connection) in flood.enumerated() where !closedEarly.contains(index) {
                    let closed = connection.peerHasClosed
                    guard ContinuousClock.now < deadline else { break sweeps }
                    if closed { closedEarly.insert(index) }
                }
                try await Task.sleep(for: .milliseconds(10))
            }
            #expect(closedEarly.count == extra, "\(closedEarly.count) of \(flood.count) closed at once")
            #expect(api.refusals.count <= HTTPAPIServer.maxRefusals)
            for connection in flood { connection.close() }
            #expect(try await eventually(timeout: .seconds(30)) { api.refusals.count == 0 })

            // The holders gone, everyone is served again; both limits were counted.
            for connection in holders + more { connection.close() }
            #expect(try await eventually(timeout: .seconds(30)) { api.openConnections.count == 0 })
            let again = try await ask(from: "127.0.0.1")
            #expect(again.hasPrefix("HTTP/1.1 200"), "\(again)")
            let (_, metrics) = try await curl(running, "GET", "/metrics")
            let samples = PrometheusSamples(metrics)
            #expect((samples.value("plane_input_limit_hits_total", ["limit": "http.max_connections_per_address"]) ?? 0) >= 1, "\(metrics)")
            #expect((samples.value("plane_input_limit_hits_total", ["limit": "http.max_connections"]) ?? 0) >= 1)
            await running.stop()
        }
    }

    /// With `[http] token`, everything but health and a backend's state needs the token;
    /// an authenticated caller gets an existing lock's bearer token.
    @Test func aTokenGuardsTheAPI() async throws {
        try await withCluster { server in
            let token = "t0k3n-" + BackendID.random().rawValue
            let controller = try await apiController(server, token: token)
            let drone = try await FakeDrone(server: server)
            try await drone.startHeartbeats()
            try await Task.sleep(for: .milliseconds(300))
            let (missing, missingOutput) = try await curl(controller, "POST", "/service/hello-world/spawn", body: "{}")
            #expect(missing == 401 && missingOutput.lowercased().contains("www-authenticate: bearer"), "\(missingOutput)")
            let (wrong, wrongOutput) = try await curl(controller, "POST", "/service/hello-world/spawn", body: "{}", token: token + "x")
            #expect(try wrong == 401 && bodyJSON(wrongOutput)["error"]?.stringValue == "The token is not valid.")
            #expect(try await curl(controller, "GET", "/metrics", token: String(token.dropLast())).0 == 401)
            #expect(try await curl(controller, "GET", "/", token: nil).0 == 401)
            #expect(drone.spawnCount == 0)
            // Health and a backend's state stay public.
            #expect(try await curl(controller, "GET", "/healthz").0 == 200)
            #expect(try await curl(controller, "GET", "/backend/\(BackendID.random())/status").0 == 404)
            // With the token: spawns, and the lock's holder with its bearer token.
            let (spawned, spawnedOutput) = try await curl(controller, "POST", "/service/hello-world/spawn", body: #"{"lock":"doc","require_bearer_token":true}"#, token: token)
            #expect(spawned == 200, "\(spawnedOutput)")
            let first = try bodyJSON(spawnedOutput)
            let bearer = try #require(first["bearer_token"]?.stringValue)
            let (_, againOutput) = try await curl(controller, "POST", "/service/hello-world/spawn", body: #"{"lock":"doc"}"#, token: token)
            let again = try bodyJSON(againOutput)
            #expect(again["spawned"]?.boolValue == false && again["bearer_token"]?.stringValue == bearer)
            #expect(try await curl(controller, "GET", "/metrics", token: token).0 == 200)
            await drone.close()
            await controller.stop()
        }
    }

    /// Backend and drone control over HTTP, and event streams that resume: `DELETE
    /// /ctrl/backend/{id}[?hard=true]`, `POST /ctrl/drone/{id}/drain[?cancel=true]`, SSE ids
    /// and `Last-Event-ID`.
    @Test func controlRoutesAndResumableEvents() async throws {
        try await withCluster { server in
            let token = "t0k3n-" + BackendID.random().rawValue
            let controller = try await apiController(server, token: token)
            let drone = try await FakeDrone(server: server)
            try await drone.startHeartbeats()
            try await Task.sleep(for: .milliseconds(300))
            let relay = PlaneMessenger(client: try await server.connectedClient())
            let terminations = try await relay.subscribe(PlaneSubjects.terminateAll("plane.test"))
            let drains = try await relay.subscribe(PlaneSubjects.drain("plane.test", drone.id))
            let seen = SeenControlMessages()
            let listeners = [
                Task { for await delivery in terminations { if case .success(let request) = delivery.message { seen.value.withLock { $0.terminations.append(request) } } } },
                Task {
                    for await delivery in drains {
                        if case .success(let request) = delivery.message { seen.value.withLock { $0.drains.append(request.drain) } }
                        _ = try? await delivery.respond(NullReply())
                    }
                },
            ]
            let (_, spawnOutput) = try await curl(controller, "POST", "/service/hello-world/spawn", body: "{}", token: token)
            let name = try #require(try bodyJSON(spawnOutput)["name"]?.stringValue)
            let backend = try BackendID(name)
            func report(_ state: BackendState) async throws {
                let update = UpdateBackendStateMessage(cluster: "plane.test", state: state, backend: backend, time: .now(), drone: drone.id)
                _ = try await relay.request(PlaneSubjects.updateBackendState("plane.test", backend), update, timeout: .seconds(5))
            }
            for state in [BackendState.loading, .starting, .ready] { try await report(state) }

            // The control routes need the token.
            #expect(try await curl(controller, "DELETE", "/ctrl/backend/\(name)").0 == 401)
            #expect(try await curl(controller, "POST", "/ctrl/drone/\(drone.id)/drain").0 == 401)
            let (soft, softOutput) = try await curl(controller, "DELETE", "/ctrl/backend/\(name)", token: token)
            let softBody = try bodyJSON(softOutput)
            #expect(soft == 202 && softBody["state"]?.stringValue == "Ready", "\(softOutput)")
            let (hard, hardOutput) = try await curl(controller, "DELETE", "/ctrl/backend/\(name)?hard=true", token: token)
            let hardBody = try bodyJSON(hardOutput)
            #expect(hard == 202 && hardBody["hard"]?.boolValue == true, "\(hardOutput)")
            #expect(try await eventually { seen.value.withLock { $0.terminations.map(\.hard) } == [false, true] })
            #expect(seen.value.withLock { $0.terminations.allSatisfy { $0.backendID == backend && $0.cluster == "plane.test" } })
            #expect(try await curl(controller, "DELETE", "/ctrl/backend/\(BackendID.random())", token: token).0 == 404)
            #expect(try await curl(controller, "DELETE", "/ctrl/backend/Not_An_ID", token: token).0 == 400)
            #expect(try await curl(controller, "GET", "/ctrl/backend/\(name)", token: token).0 == 405)

            // Drain and undrain; a drone that does not answer is 504.
            let (drained, drainedOutput) = try await curl(controller, "POST", "/ctrl/drone/\(drone.id)/drain", token: token)
            let drainedBody = try bodyJSON(drainedOutput)
            #expect(drained == 200 && drainedBody["draining"]?.boolValue == true, "\(drainedOutput)")
            #expect(try await curl(controller, "POST", "/ctrl/drone/\(drone.id)/drain?cancel=true", token: token).0 == 200)
            #expect(seen.value.withLock { $0.drains } == [true, false])
            #expect(try await curl(controller, "POST", "/ctrl/drone/\(DroneID.random())/drain", token: token).0 == 504)

            // Events carry their stream sequence as id; Last-Event-ID resumes after it.
            try await report(.terminated)
            #expect(try await curl(controller, "DELETE", "/ctrl/backend/\(name)", token: token).0 == 409)
            let port = try #require(controller.controller.httpServer?.address?.port)
            func events(lastEventID: String?) async throws -> [(id: String, state: String)] {
                var arguments = ["-s", "--max-time", "20"]
                if let lastEventID { arguments += ["-H", "Last-Event-ID: \(lastEventID)"] }
                let text = try await Self.curl.run(arguments + ["http://127.0.0.1:\(port)/backend/\(name)/status/stream"])
                var result: [(String, String)] = []
                var id = ""
                for line in text.split(separator: "\n") {
                    if line.hasPrefix("id: ") { id = String(line.dropFirst(4)) }
                    if line.hasPrefix("data: "), let state = try? JSONParser.parse(String(line.dropFirst(6))).objectValue?["state"]?.stringValue { result.append((id, state)) }
                }
                return result
            }
            let all = try await events(lastEventID: nil)
            #expect(all.map(\.state) == ["Loading", "Starting", "Ready", "Terminated"])
            #expect(all.allSatisfy { UInt64($0.id) != nil } && Set(all.map(\.id)).count == 4, "\(all)")
            let resumed = try await events(lastEventID: all[1].id)
            #expect(resumed.map(\.state) == ["Ready", "Terminated"] && resumed.map(\.id) == all.suffix(2).map(\.id))
            // After the terminal event, a reconnect ends at once; a garbled id starts over.
            #expect(try await events(lastEventID: all[3].id).isEmpty)
            #expect(try await events(lastEventID: "not-a-number").map(\.state) == all.map(\.state))
            listeners.forEach { $0.cancel() }
            await relay.client.close()
            await drone.close()
            await controller.stop()
        }
    }

    /// `POST /ctrl/connect`: one key from 20 clients at once through two controllers is one
    /// backend; an ended backend's key gets a new one; without `[http] token` there is no
    /// connect.
    @Test func connectByKeyThroughTwoControllers() async throws {
        try await withCluster { server in
            let token = "t0k3n-" + BackendID.random().rawValue
            let controllers = [try await apiController(server, token: token), try await apiController(server, token: token)]
            let drone = try await FakeDrone(server: server)
            try await drone.startHeartbeats()
            try await Task.sleep(for: .milliseconds(600))
            let body = #"{"key":"doc-42","spawn_config":{"service":"hello-world","env":{"A":"x"},"max_idle_secs":120},"user":"ada"}"#
            let answers = try await withThrowingTaskGroup(of: (Int, String).self) { group in
                for index in 0..<20 { group.addTask { try await self.curl(controllers[index % 2], "POST", "/ctrl/connect", body: body, token: token) } }
                var all: [(Int, String)] = []
                for try await answer in group { all.append(answer) }
                return all
            }
            #expect(answers.allSatisfy { $0.0 == 200 }, "\(answers.map(\.1))")
            let replies = try answers.map { try bodyJSON($0.1) }
            let ids = Set(replies.compactMap { $0["backend_id"]?.stringValue })
            #expect(ids.count == 1, "\(ids)")
            #expect(replies.count { $0["spawned"]?.boolValue == true } == 1)
            // Each connect has its own access token, given to the drone before the answer.
            let id = try #require(ids.first)
            let tokens = Set(replies.compactMap { $0["token"]?.stringValue })
            #expect(tokens.count == 20 && tokens.allSatisfy { $0.hasPrefix(id + ".") && $0.count == id.count + 33 })
            #expect(drone.accessTokens.withLock { $0[try! BackendID(id)] } == tokens)
            // Revoking one: the drone is told; a malformed token is 400.
            let revoked = try #require(tokens.first)
            let (revokeStatus, revokeOutput) = try await curl(controllers[1], "DELETE", "/ctrl/token/\(revoked)", token: token)
            #expect(revokeStatus == 200, "\(revokeOutput)")
            #expect(drone.accessTokens.withLock { $0[try! BackendID(id)] } == tokens.subtracting([revoked]))
            #expect(try await curl(controllers[1], "DELETE", "/ctrl/token/not-a-token", token: token).0 == 400)
            #expect(try await curl(controllers[1], "DELETE", "/ctrl/token/\(revoked)").0 == 401)
            #expect(replies.allSatisfy { $0["url"]?.stringValue == "https://\(id).plane.test" && $0["drone"]?.stringValue == drone.id.rawValue })
            #expect(replies.allSatisfy { $0["status_url"]?.stringValue?.hasSuffix("/backend/\(id)/status") == true })
            #expect(drone.spawnCount == 1)
            let spawn = try #require(drone.spawns.withLock { $0.first })
            #expect(spawn.lock == "doc-42" && spawn.bearerToken != nil && spawn.metadata["user"] == "ada" && spawn.executable.env == ["A": "x"] && spawn.maxIdleSeconds == 120)

            // An ended backend's key gets a new one.
            let relay = PlaneMessenger(client: try await server.connectedClient())
            let backend = try BackendID(id)
            for state in [BackendState.loading, .ready, .terminated] {
                let update = UpdateBackendStateMessage(cluster: "plane.test", state: state, backend: backend, time: .now(), drone: drone.id)
                _ = try await relay.request(PlaneSubjects.updateBackendState("plane.test", backend), update, timeout: .seconds(5))
            }
            let (status, output) = try await curl(controllers[1], "POST", "/ctrl/connect", body: body, token: token)
            let replaced = try bodyJSON(output)
            #expect(status == 200 && replaced["spawned"]?.boolValue == true && replaced["backend_id"]?.stringValue != id, "\(output)")
            // The ended backend's tokens ended with it.
            #expect(try await curl(controllers[0], "DELETE", "/ctrl/token/\(tokens.subtracting([revoked]).first ?? "")", token: token).0 == 404)

            // An image instead of a service; bad bodies; no token.
            let (imageStatus, imageOutput) = try await curl(controllers[0], "POST", "/ctrl/connect",
                                                            body: #"{"key":"nb-1","spawn_config":{"image":"img:1","memory_limit_bytes":268435456,"max_lifetime_secs":60}}"#, token: token)
            #expect(imageStatus == 200, "\(imageOutput)")
            let imageSpawn = try #require(drone.spawns.withLock { $0.last })
            #expect(imageSpawn.executable.image == "img:1" && imageSpawn.executable.resourceLimits.memoryLimitBytes == 268_435_456 && imageSpawn.maxLifetimeSeconds == 60)
            for (bad, expected) in [(#"{"spawn_config":{"service":"hello-world"}}"#, 400), (#"{"key":"k","spawn_config":{}}"#, 400),
                                    (#"{"key":"k","spawn_config":{"service":"nope"}}"#, 404), (#"{"key":"k","spawn_config":{"service":"plain","env":{"A":"b"}}}"#, 403),
                                    (#"{"key":"k","spawn_config":{"image":"i","service":"plain"}}"#, 400), (#"{"key":"k","spawn_config":{"image":"i"},"extra":1}"#, 400)] {
                #expect(try await curl(controllers[0], "POST", "/ctrl/connect", body: bad, token: token).0 == expected, "\(bad)")
            }
            #expect(try await curl(controllers[0], "POST", "/ctrl/connect", body: body).0 == 401)
            await relay.client.close()
            await drone.close()
            for controller in controllers { await controller.stop() }
            // A loopback API without a token has no connect.
            let open = try await apiController(server)
            #expect(try await curl(open, "POST", "/ctrl/connect", body: body).0 == 403)
            await open.stop()
        }
    }

    /// An API reachable from other hosts without a token does not start.
    @Test func anExposedAPIWithoutATokenDoesNotStart() async throws {
        try await withCluster { server in
            do {
                let controller = try await RunningController(server: server) { configuration in
                    var http = HTTPAPIConfiguration(cluster: "plane.test")
                    http.bindHost = "0.0.0.0"
                    http.port = 0
                    configuration.http = http
                }
                await controller.stop()
                Issue.record("the controller started an unauthenticated API on 0.0.0.0")
            } catch let error as ControllerError {
                #expect(error.code == .startupFailed && error.message.contains("token"))
            }
        }
    }
}
