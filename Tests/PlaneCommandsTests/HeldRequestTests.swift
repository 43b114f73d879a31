import Foundation
import PlaneCore
import PlaneTestSupport
import Testing

/// Requests held while a backend starts, with real processes: nats-server, `plane
/// controller` with its HTTP API, a `plane drone` on the process plugin with its proxy, and
/// backends that take seconds to listen (`START_DELAY_MS`). A client uses the URL the moment
/// connect answers: a WebSocket and a GET are held until Ready, then served; a backend that
/// does not become Ready within the hold, or is terminated while starting, gets 503 with
/// `Retry-After`. The drone's `/metrics` shows that each was held, not retried.
struct HeldRequestTests {
    @Test(.timeLimit(.minutes(5))) func requestsWaitForTheirBackendToBeReady() async throws {
        try await withNATSServer { server in
            let directory = try TestEnvironment.temporaryDirectory("held-requests")
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let (httpPort, proxyPort, metricsPort) = (try TestEnvironment.freePort(), try TestEnvironment.freePort(), try TestEnvironment.freePort())
            let token = "held-" + BackendID.random().rawValue
            let image = try TestExecutables.path("plane-test-server")
            let controllerConfig = try ControllerConfigFile.write(in: directory, nats: server.url, httpPort: httpPort, token: token, extra: """
                [http.services.slow]
                image = "\(image)"
                env = { START_DELAY_MS = "8000" }
                [http.services.stuck]
                image = "\(image)"
                env = { START_DELAY_MS = "600000" }
                """)
            let plane = try TestExecutables.path("plane")
            let controller = try ChildProcess(plane, arguments: ["controller", controllerConfig])
            let config = try DroneConfigFile.write(in: directory, drone: DroneID.random().rawValue, nats: server.url, ports: "25500-25599", extra: """
                runtime = "process"
                runtimes_dir = "\(PythonEnvironment.packageRoot)/runtimes"
                [proxy]
                bind_ip = "127.0.0.1"
                https_port = \(proxyPort)
                hold_while_starting_secs = 15
                [metrics]
                bind_ip = "127.0.0.1"
                port = \(metricsPort)
                """)
            let drone = try ChildProcess(plane, arguments: ["drone", config])
            defer {
                drone.signal(SIGTERM)
                controller.signal(SIGTERM)
            }
            _ = try await HTTPProbe(port: httpPort).waitUntilAnswering("/healthz", within: .seconds(30))
            let curl = SystemProgram("curl", debianPackage: "curl")
            /// Nil (with the answer) when no backend was given, e.g. before the drone's first heartbeat.
            func tryConnect(_ key: String, service: String) async throws -> (backend: String, token: String, spawned: Bool)? {
                let output = try await curl.run(["-s", "-X", "POST", "-H", "Authorization: Bearer \(token)", "-H", "Content-Type: application/json",
                                                 "-d", #"{"key":"\#(key)","spawn_config":{"service":"\#(service)"}}"#, "http://127.0.0.1:\(httpPort)/ctrl/connect"])
                guard let reply = try? JSONParser.parse(output).objectValue, let backend = reply["backend_id"]?.stringValue,
                      let token = reply["token"]?.stringValue else { return nil }
                return (backend, token, reply["spawned"] == .bool(true))
            }
            func connect(_ key: String, service: String) async throws -> (backend: String, token: String, spawned: Bool) {
                try #require(try await tryConnect(key, service: service))
            }
            func held(_ outcome: String) async throws -> Int {
                let metrics = try await HTTPProbe(port: metricsPort).get("/metrics").body
                let line = metrics.split(separator: "\n").first { $0.hasPrefix("plane_proxy_held_requests_total{outcome=\"\(outcome)\"}") }
                return line.flatMap { Int($0.split(separator: " ").last ?? "") } ?? -1
            }
            func get(_ backend: String, _ accessToken: String) async throws -> (response: HTTPProbe.Response, seconds: Double) {
                var probe = HTTPProbe(port: proxyPort, hostHeader: "\(backend).plane.test")
                probe.timeout = .seconds(30)
                let started = ContinuousClock.now
                let response = try await probe.get("/", headers: ["Authorization": "Bearer \(accessToken)"])
                let elapsed = ContinuousClock.now - started
                return (response, Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
            }

            // The Python client is ready before the connect (its first preparation can take seconds).
            let python = try await PythonEnvironment.python()
            // The drone is a candidate once its heartbeat arrived: retry the first connect.
            var first: (backend: String, token: String, spawned: Bool)?
            #expect(try await eventually(timeout: .seconds(60)) {
                first = try await tryConnect("held-ws", service: "slow")
                return first != nil
            }, "\(controller.output.suffix(2000))")
            let socket = try #require(first)
            #expect(socket.spawned)
            // At once: a WebSocket through the URL, held until Ready, then echoing.
            let (status, output) = try await SystemProgram.run(executable: python, [
                PythonEnvironment.packageRoot + "/Tests/PlaneProxyTests/python/ws_peer.py", "echo",
                "--url", "ws://\(socket.backend).plane.test:\(proxyPort)/", "--port", String(proxyPort),
                "--header", "Authorization: Bearer \(socket.token)", "--open-timeout", "30"])
            #expect(status == 0 && output.contains("ok 6"), "\(output)\n\(drone.output.suffix(2000))")
            #expect(try await held("ready") == 1, "the WebSocket was held")

            // A GET right after connect: held, then the backend's answer.
            let plain = try await connect("held-get", service: "slow")
            let (answer, waited) = try await get(plain.backend, plain.token)
            #expect(answer.status == 200 && answer.body == "Hello World!", "\(answer)")
            #expect(waited > 1.0, "held while the backend started (\(waited) s)")
            #expect(try await held("ready") == 2)

            // A backend that does not listen within the hold: 503 with Retry-After after it.
            let stuck = try await connect("held-stuck", service: "stuck")
            let (refused, waitedOut) = try await get(stuck.backend, stuck.token)
            #expect(refused.status == 503 && refused.headers["retry-after"] == "1", "\(refused)")
            #expect(waitedOut >= 14.5, "\(waitedOut)")
            #expect(try await held("timed_out") == 1)

            // Terminated while a request waits for it: that request gets 503 at once.
            async let whileTerminated = get(stuck.backend, stuck.token)
            try await Task.sleep(for: .milliseconds(800))
            let terminate = try await curl.run(["-s", "-X", "DELETE", "-H", "Authorization: Bearer \(token)",
                                                "http://127.0.0.1:\(httpPort)/ctrl/backend/\(stuck.backend)?hard=true"])
            let (ended, endedAfter) = try await whileTerminated
            #expect(ended.status == 503 && ended.headers["retry-after"] == "1" && ended.body.contains("ended"), "\(ended) \(terminate)")
            #expect(endedAfter < 14.5, "let go when the backend ended, not when the hold ran out (\(endedAfter) s)")
            #expect(try await held("ended") == 1)

            for backend in [socket.backend, plain.backend] {
                _ = try await curl.run(["-s", "-X", "DELETE", "-H", "Authorization: Bearer \(token)", "http://127.0.0.1:\(httpPort)/ctrl/backend/\(backend)?hard=true"])
            }
            #expect(try await eventually(timeout: .seconds(30)) {
                let listing = try await curl.run(["-s", "-H", "Authorization: Bearer \(token)", "http://127.0.0.1:\(httpPort)/backend/\(plain.backend)/status"])
                return listing.contains("Terminated")
            })
            drone.signal(SIGTERM)
            controller.signal(SIGTERM)
            #expect(await drone.waitForExit(timeout: .seconds(30)) != nil)
            #expect(await controller.waitForExit(timeout: .seconds(30)) != nil)
        }
    }
}
