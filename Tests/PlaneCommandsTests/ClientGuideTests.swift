import Foundation
import PlaneCore
import PlaneTestSupport
import Testing

/// docs/client-guide.md's Python example (docs/examples/connect.py), run against a real
/// cluster: nats-server, `plane controller` with its HTTP API and a token, and a `plane drone`
/// on the process plugin with its proxy. Connect twice with one key (one backend), wait for
/// Ready over the event stream, a request with and without the token, terminate.
struct ClientGuideTests {
    @Test(.timeLimit(.minutes(5))) func thePythonExampleWorks() async throws {
        try await withNATSServer { server in
            let directory = try TestEnvironment.temporaryDirectory("client-guide")
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let (httpPort, proxyPort) = (try TestEnvironment.freePort(), try TestEnvironment.freePort())
            let token = "guide-" + BackendID.random().rawValue
            let image = try TestExecutables.path("plane-test-server")
            let controllerConfig = try ControllerConfigFile.write(in: directory, nats: server.url, httpPort: httpPort, token: token, extra: """
                [http.services.editor]
                image = "\(image)"
                """)
            let plane = try TestExecutables.path("plane")
            let controller = try ChildProcess(plane, arguments: ["controller", controllerConfig])
            let drone = DroneID.random()
            let config = try DroneConfigFile.write(in: directory, drone: drone.rawValue, nats: server.url, ports: "25400-25499", extra: """
                runtime = "process"
                runtimes_dir = "\(PythonEnvironment.packageRoot)/runtimes"
                [proxy]
                bind_ip = "127.0.0.1"
                https_port = \(proxyPort)
                """)
            var droneProcess = try ChildProcess(plane, arguments: ["drone", config])
            _ = try await HTTPProbe(port: httpPort).waitUntilAnswering("/healthz", within: .seconds(30))
            let script = PythonEnvironment.packageRoot + "/docs/examples/connect.py"
            func run(_ extra: [String]) async throws -> (Int32, [JSONObject]) {
                let (status, output) = try await SystemProgram.run(executable: "/usr/bin/python3", [script, "--api", "http://127.0.0.1:\(httpPort)", "--token", token,
                                                                                                  "--key", "doc-42", "--service", "editor", "--user", "ada",
                                                                                                  "--proxy", "127.0.0.1:\(proxyPort)"] + extra)
                return (status, output.split(separator: "\n").compactMap { try? JSONParser.parse(String($0)).objectValue })
            }
            // The drone is a candidate once its heartbeat arrived: the first connect may find none.
            var first: (Int32, [JSONObject]) = (1, [])
            #expect(try await eventually(timeout: .seconds(60)) {
                first = try await run([])
                return first.0 == 0
            }, "\(first)\n\(controller.output.suffix(2000))\n\(droneProcess.output.suffix(2000))")
            let steps = first.1
            #expect(steps.first?["spawned"] == .bool(true))
            #expect(steps.contains { $0["step"] == .string("state") && $0["state"] == .string("Ready") })
            #expect(steps.contains { $0["step"] == .string("request") && $0["status"] == .integer(200) && $0["body"] == .string("Hello World!") }, "\(steps)")
            #expect(steps.contains { $0["step"] == .string("request_without_token") && $0["status"] == .integer(401) }, "\(steps)")
            let backendID = steps.first?["backend_id"]

            // Per-connect tokens through the real proxy: each connect its own; a revoked one
            // stops working at once, the others go on, also after the drone restarts.
            let curl = SystemProgram("curl", debianPackage: "curl")
            func connect() async throws -> (backend: String, token: String) {
                let output = try await curl.run(["-s", "-X", "POST", "-H", "Authorization: Bearer \(token)", "-H", "Content-Type: application/json",
                                                 "-d", #"{"key":"doc-42","spawn_config":{"service":"editor"}}"#, "http://127.0.0.1:\(httpPort)/ctrl/connect"])
                let reply = try #require(try JSONParser.parse(output).objectValue, "\(output)")
                return (try #require(reply["backend_id"]?.stringValue), try #require(reply["token"]?.stringValue))
            }
            func status(_ backend: String, _ accessToken: String?) async throws -> Int {
                try await HTTPProbe(port: proxyPort, hostHeader: "\(backend).plane.test").get("/", headers: accessToken.map { ["Authorization": "Bearer \($0)"] } ?? [:]).status
            }
            let (a, b) = (try await connect(), try await connect())
            #expect(a.backend == b.backend && a.token != b.token && .string(a.backend) == backendID)
            #expect(try await status(a.backend, a.token) == 200)
            #expect(try await status(b.backend, b.token) == 200)
            let revoke = try await curl.run(["-s", "-X", "DELETE", "-H", "Authorization: Bearer \(token)", "http://127.0.0.1:\(httpPort)/ctrl/token/\(a.token)"])
            #expect(revoke.contains(#""revoked":true"#), "\(revoke)")
            #expect(try await status(a.backend, a.token) == 403)
            #expect(try await status(b.backend, b.token) == 200)
            // The drone restarts (its backends go on); the route comes back with its tokens.
            droneProcess.signal(SIGTERM)
            #expect(await droneProcess.waitForExit(timeout: .seconds(30)) == 0)
            droneProcess = try ChildProcess(plane, arguments: ["drone", config])
            #expect(try await eventually(timeout: .seconds(30)) { (try? await status(b.backend, b.token)) == 200 }, "\(droneProcess.output.suffix(2000))")
            #expect(try await status(a.backend, a.token) == 403)
            #expect(try await status(a.backend, nil) == 401)
            // The same key again: the same backend, not spawned; then it is terminated.
            let (status, again) = try await run(["--terminate"])
            #expect(status == 0 && again.first?["backend_id"] == backendID && again.first?["spawned"] == .bool(false), "\(again)")
            #expect(again.contains { $0["step"] == .string("terminate") && $0["status"] == .integer(202) })
            #expect(again.last?["state"] == .string("Terminated"), "\(again)")
            droneProcess.signal(SIGTERM)
            controller.signal(SIGTERM)
            #expect(await droneProcess.waitForExit(timeout: .seconds(30)) != nil)
            #expect(await controller.waitForExit(timeout: .seconds(30)) != nil)
        }
    }
}
