import Foundation
import PlaneCore
import PlaneTestSupport
import Testing

/// Warm pools with real processes: nats-server, `plane controller` with a service of
/// `warm_pool = 2`, a `plane drone` on the process plugin. The drone keeps two backends of
/// the service started; two connects take them (no start: their first output line is from
/// before the connects), the pool refills, a connect asking for something else starts one
/// (a miss), and a terminated key gets a new backend from the pool again.
struct WarmPoolTests {
    @Test(.timeLimit(.minutes(5))) func connectsTakePreStartedBackendsAndThePoolRefills() async throws {
        try await withNATSServer { server in
            let directory = try TestEnvironment.temporaryDirectory("warm-pool")
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let (httpPort, proxyPort, metricsPort) = (try TestEnvironment.freePort(), try TestEnvironment.freePort(), try TestEnvironment.freePort())
            let token = "warm-" + BackendID.random().rawValue
            let controllerConfig = try ControllerConfigFile.write(in: directory, nats: server.url, httpPort: httpPort, token: token, extra: """
                [http.services.editor]
                image = "\(try TestExecutables.path("plane-test-server"))"
                memory_limit_bytes = 268435456
                warm_pool = 2
                """)
            let plane = try TestExecutables.path("plane")
            let controller = try ChildProcess(plane, arguments: ["controller", controllerConfig])
            let config = try DroneConfigFile.write(in: directory, drone: DroneID.random().rawValue, nats: server.url, ports: "25700-25799", extra: """
                runtime = "process"
                runtimes_dir = "\(PythonEnvironment.packageRoot)/runtimes"
                drain_on_shutdown = true
                [proxy]
                bind_ip = "127.0.0.1"
                https_port = \(proxyPort)
                [metrics]
                bind_ip = "127.0.0.1"
                port = \(metricsPort)
                """)
            let drone = try ChildProcess(plane, arguments: ["drone", config])
            defer {
                drone.signal(SIGTERM)
                controller.signal(SIGTERM)
            }
            func metric(_ name: String) async -> Int {
                guard let text = try? await HTTPProbe(port: metricsPort).get("/metrics").body else { return -1 }
                return PrometheusSamples(text).value(name, ["pool": "editor"]).map { Int($0) } ?? 0
            }
            let curl = SystemProgram("curl", debianPackage: "curl")
            func connect(_ key: String, memory: Int? = nil) async throws -> (backend: String, token: String)? {
                let extra = memory.map { #","memory_limit_bytes":\#($0)"# } ?? ""
                let output = try await curl.run(["-s", "-X", "POST", "-H", "Authorization: Bearer \(token)", "-H", "Content-Type: application/json",
                                                 "-d", #"{"key":"\#(key)","spawn_config":{"service":"editor"\#(extra)}}"#, "http://127.0.0.1:\(httpPort)/ctrl/connect"])
                guard let reply = try? JSONParser.parse(output).objectValue, let backend = reply["backend_id"]?.stringValue,
                      let accessToken = reply["token"]?.stringValue else { return nil }
                return (backend, accessToken)
            }
            func get(_ backend: String, _ accessToken: String) async throws -> HTTPProbe.Response {
                var probe = HTTPProbe(port: proxyPort, hostHeader: "\(backend).plane.test")
                probe.timeout = .seconds(30)
                return try await probe.get("/", headers: ["Authorization": "Bearer \(accessToken)"])
            }
            /// The backend's environment (plane-test-server's `/env`). A backend taken from the
            /// pool was started before its connect took the lock, so it has no
            /// `PLANE_FENCING_TOKEN`; one started for its connect has it.
            func environment(_ backend: String, _ accessToken: String) async throws -> [String: String] {
                var probe = HTTPProbe(port: proxyPort, hostHeader: "\(backend).plane.test")
                probe.timeout = .seconds(30)
                let body = try await probe.get("/env", headers: ["Authorization": "Bearer \(accessToken)"]).body
                return (try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: String]) ?? [:]
            }

            #expect(try await eventually(timeout: .seconds(60)) { await metric("plane_warm_pool_backends") == 2 },
                    "\(controller.output.suffix(2000))\n\(drone.output.suffix(3000))")
            var first: (backend: String, token: String)?
            #expect(try await eventually(timeout: .seconds(30)) {
                first = try await connect("doc-1")
                return first != nil
            })
            let one = try #require(first)
            let two = try #require(try await connect("doc-2"))
            for taken in [one, two] {
                let answer = try await get(taken.backend, taken.token)
                #expect(answer.status == 200 && answer.body == "Hello World!", "\(answer)")
                let env = try await environment(taken.backend, taken.token)
                #expect(!env.isEmpty && env["PLANE_FENCING_TOKEN"] == nil, "\(taken.backend) was started for its connect, not taken from the pool: \(env)")
            }
            // Read until two scrapes agree (a scrape of a busy drone can time out: -1).
            var counts = (hits: -1, misses: -1)
            let counted = try await eventually(timeout: .seconds(20)) {
                counts = (await metric("plane_warm_pool_hits_total"), await metric("plane_warm_pool_misses_total"))
                return counts == (2, 0)
            }
            #expect(counted, "hits and misses \(counts); the drone's takes: \(drone.output.split(separator: "\n").filter { $0.contains("warm_pool.") }.suffix(20))")
            // The pool refills.
            #expect(try await eventually(timeout: .seconds(60)) { await metric("plane_warm_pool_backends") == 2 }, "\(drone.output.suffix(2000))")

            // Asking for less memory than the pool's backends have: a start of its own.
            let other = try #require(try await connect("doc-3", memory: 134_217_728))
            #expect(try await get(other.backend, other.token).status == 200)
            #expect(await metric("plane_warm_pool_misses_total") == 1)
            let otherEnv = try await environment(other.backend, other.token)
            #expect(otherEnv["PLANE_FENCING_TOKEN"] != nil, "\(otherEnv)")

            // The same key again is the same backend; terminated, the key gets a warm one.
            let same = try await connect("doc-1")
            #expect(same?.backend == one.backend)
            _ = try await curl.run(["-s", "-X", "DELETE", "-H", "Authorization: Bearer \(token)", "http://127.0.0.1:\(httpPort)/ctrl/backend/\(one.backend)?hard=true"])
            var replaced: (backend: String, token: String)?
            #expect(try await eventually(timeout: .seconds(30)) {
                replaced = try await connect("doc-1")
                return replaced.map { $0.backend != one.backend } ?? false
            })
            let again = try #require(replaced)
            let answer = try await get(again.backend, again.token)
            #expect(answer.status == 200, "\(answer) \(drone.output.suffix(3000))")
            var hits = -1
            #expect(try await eventually(timeout: .seconds(20)) { hits = await metric("plane_warm_pool_hits_total"); return hits == 3 },
                    "hits \(hits); the drone's takes: \(drone.output.split(separator: "\n").filter { $0.contains("warm_pool.") }.suffix(20))")
            drone.signal(SIGTERM)
            controller.signal(SIGTERM)
            #expect(await drone.waitForExit(timeout: .seconds(30)) != nil)
            #expect(await controller.waitForExit(timeout: .seconds(30)) != nil)
            // The drone stopped its warm backends (no process of the pool is left).
            let left = try FileManager.default.contentsOfDirectory(atPath: "/proc").filter { Int($0) != nil }.filter { pid in
                (BoundedFile.generatedText("/proc/\(pid)/cmdline") ?? "").contains(directory)
            }
            #expect(left.isEmpty, "processes left: \(left)")
        }
    }
}
