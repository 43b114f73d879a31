import Foundation
import PlaneCore
import PlaneTestSupport
import Testing

/// The controller's dashboard in a real browser: nats-server, `plane controller` with a token,
/// a `plane drone` on the process plugin, and headless Chromium (Debian's package) driven
/// over the DevTools protocol on loopback. The page asks for the token, then shows the
/// drone and a spawned backend reach `Ready` (with its idle time from the drone's stats)
/// and later `Terminated`; a hostile lock name stays text. A screenshot is written to
/// `.build/dashboard.png` (the one in docs/ is a copy).
struct DashboardTests {
    /// Chromium with nothing of its own on the network: no background services, every
    /// host name unresolvable (the page is addressed by IP), a profile in `directory`.
    static func startChromium(directory: String, port: Int) throws -> ChildProcess {
        let chromium = try SystemProgram("chromium", debianPackage: "chromium").path()
        return try ChildProcess(chromium, arguments: [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
            "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-default-apps",
            "--disable-domain-reliability", "--disable-client-side-phishing-detection", "--disable-breakpad",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=127.0.0.1",
            "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=\(port)",
            "--user-data-dir=\(directory)/chromium-profile", "about:blank",
        ])
    }

    @Test(.timeLimit(.minutes(5))) func thePageShowsABackendReachReadyAndTerminated() async throws {
        try await withNATSServer { server in
            let directory = try TestEnvironment.temporaryDirectory("dashboard")
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let (httpPort, debugPort) = (try TestEnvironment.freePort(), try TestEnvironment.freePort())
            let token = "dash-" + BackendID.random().rawValue
            let controllerConfig = try ControllerConfigFile.write(in: directory, nats: server.url, httpPort: httpPort, token: token, extra: """
                [http.services.editor]
                image = "\(try TestExecutables.path("plane-test-server"))"
                memory_limit_bytes = 268435456
                """)
            let plane = try TestExecutables.path("plane")
            let controller = try ChildProcess(plane, arguments: ["controller", controllerConfig])
            let droneID = DroneID.random().rawValue
            let droneConfig = try DroneConfigFile.write(in: directory, drone: droneID, nats: server.url, ports: "25800-25899", extra: """
                runtime = "process"
                runtimes_dir = "\(PythonEnvironment.packageRoot)/runtimes"
                drain_on_shutdown = true
                """)
            let drone = try ChildProcess(plane, arguments: ["drone", droneConfig])
            let browser = try Self.startChromium(directory: directory, port: debugPort)
            defer {
                // Chromium's own processes are in its process group.
                kill(-browser.pid, SIGKILL)
                drone.signal(SIGTERM)
                controller.signal(SIGTERM)
            }
            let python = try await PythonEnvironment.python()
            let script = PythonEnvironment.packageRoot + "/Tests/PlaneCommandsTests/python/cdp.py"
            func cdp(_ arguments: String...) async throws -> String {
                let (status, output) = try await SystemProgram.run(executable: python, [script, String(debugPort)] + arguments)
                guard status == 0 else { throw TestSupportError("cdp.py \(arguments.joined(separator: " ")): \(output)") }
                return output.trimmingCharacters(in: .whitespacesAndNewlines)
            }
            let curl = SystemProgram("curl", debianPackage: "curl")
            let base = "http://127.0.0.1:\(httpPort)"

            // The page is public and locked down; its data needs the token.
            #expect(try await eventually(timeout: .seconds(60)) { (try? await curl.run(["-sf", "\(base)/healthz"])) == "ok\n" }, "\(controller.output.suffix(2000))")
            let headers = try await curl.run(["-s", "-D", "-", "-o", "/dev/null", "\(base)/dashboard"])
            #expect(headers.hasPrefix("HTTP/1.1 200") && headers.contains("Content-Security-Policy: default-src 'none'; script-src 'self'"), "\(headers)")
            #expect(try await curl.run(["-s", "-o", "/dev/null", "-w", "%{http_code}", "\(base)/dashboard/state"]) == "401")
            #expect(try await curl.run(["-s", "-o", "/dev/null", "-w", "%{http_code}", "\(base)/dashboard/events"]) == "401")
            let state = try await curl.run(["-sf", "-H", "Authorization: Bearer \(token)", "\(base)/dashboard/state"])
            #expect((try JSONParser.parse(state).objectValue?["cluster"]?.stringValue) == "plane.test", "\(state)")

            // Without the token the page asks for it.
            #expect(try await eventually(timeout: .seconds(30)) { (try? await cdp("eval", "1")) == "1" })
            _ = try await cdp("navigate", "\(base)/dashboard")
            _ = try await cdp("wait", "!document.getElementById('token-form').hidden", "20")
            // With it (in the address's fragment, which the browser never sends), live.
            _ = try await cdp("navigate", "\(base)/dashboard?view=1#token=\(token)")
            _ = try await cdp("wait", "document.getElementById('connection').dataset.connection === 'live'", "20")
            _ = try await cdp("wait", "document.querySelector('#drones tr[data-drone=\"\(droneID)\"]') !== null", "60")
            let droneRow = try await cdp("eval", "document.querySelector('#drones tr[data-drone=\"\(droneID)\"]').textContent")
            #expect(droneRow.contains("process") && droneRow.contains("Ready"), "\(droneRow)")
            #expect(try await cdp("eval", "location.hash") == "\"\"", "the token is taken out of the address")

            // A backend with a hostile lock name: Ready on the page, the lock as text.
            let lock = #"<img id=\"injected\" src=x onerror=\"window.pwned=1\">"#
            let spawned = try await curl.run(["-s", "-X", "POST", "-H", "Authorization: Bearer \(token)", "-H", "Content-Type: application/json",
                                              "-d", #"{"lock":"\#(lock)","grace_period_seconds":600}"#, "\(base)/service/editor/spawn"])
            let backend = try #require(try JSONParser.parse(spawned).objectValue?["name"]?.stringValue, "\(spawned)")
            let row = "document.querySelector('#backends tr[data-backend=\"\(backend)\"]')"
            _ = try await cdp("wait", "\(row) !== null && \(row).dataset.state === 'Ready'", "60")
            // Its idle time comes from the drone's stats (every 10 s).
            _ = try await cdp("wait", "\(row).children[5].textContent !== ''", "40")
            #expect(try await cdp("eval", "document.getElementById('injected') === null && window.pwned === undefined") == "true")
            #expect(try await cdp("eval", "\(row).children[6].textContent").contains("<img id="))
            #expect(try await cdp("eval", "\(row).children[2].textContent") == "\"\(droneID)\"")
            let screenshot = PythonEnvironment.packageRoot + "/.build/dashboard.png"
            _ = try await cdp("screenshot", screenshot)
            let png = try Data(contentsOf: URL(fileURLWithPath: screenshot))
            #expect(png.starts(with: [0x89, 0x50, 0x4E, 0x47]) && png.count > 10_000)

            // Terminated: the page follows without a reload.
            _ = try await curl.run(["-sf", "-X", "DELETE", "-H", "Authorization: Bearer \(token)", "\(base)/ctrl/backend/\(backend)"])
            _ = try await cdp("wait", "\(row) !== null && \(row).dataset.state === 'Terminated'", "60")
            #expect(try await cdp("eval", "document.getElementById('connection').dataset.connection") == "\"live\"")

            kill(-browser.pid, SIGKILL)
            _ = await browser.waitForExit(timeout: .seconds(10))
            drone.signal(SIGTERM)
            controller.signal(SIGTERM)
            #expect(await drone.waitForExit(timeout: .seconds(30)) != nil)
            #expect(await controller.waitForExit(timeout: .seconds(30)) != nil)
        }
    }
}
