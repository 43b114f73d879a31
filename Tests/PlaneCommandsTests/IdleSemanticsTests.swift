import Foundation
import NATS
import PlaneCore
import PlaneMessaging
import PlaneTestSupport
import Synchronization
import Testing

/// Plane's promise, tried as users meet it: a backend keeps running while a connection to
/// it is open, whatever the transport, and is swept `max_idle_secs` after the last one
/// ends. Real `plane drone` with its TLS proxy on nats-server, backends on the `process`
/// runtime plugin, clients curl and python-socketio; `max_idle_secs` is 3, every exchange
/// lasts three times that or more.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct IdleSemanticsTests {
    static let maxIdle: UInt64 = 3
    static let scripts = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("PlaneProxyTests/python").path

    /// A running drone with a TLS proxy for `*.plane.test`.
    struct Bed {
        let drone: DroneID
        let child: ChildProcess
        let client: NATSClient
        let relay: DroneProcessTests.Relay
        let messenger: PlaneMessenger
        let proxyPort: Int
        let metricsPort: Int
        let ca: String
        let directory: String
        /// Every backend spawned: those still running when the test ends are terminated
        /// (a drone that stops leaves its backends running, for the next start to reattach).
        let spawned = Spawned()

        final class Spawned: Sendable {
            let backends = Mutex<[BackendID]>([])
        }

        /// Spawns `executable` (an absolute path, for the process runtime) and waits for Ready.
        func spawn(_ executable: String) async throws -> BackendID {
            let backend = try await spawnAccepted(executable)
            #expect(try await eventually(timeout: .seconds(60)) { relay.of(backend).last == .ready }, "\(relay.of(backend)) \(child.output)")
            return backend
        }

        /// Spawns `executable` and returns once the drone has accepted it, before Ready.
        func spawnAccepted(_ executable: String, env: [String: String] = [:]) async throws -> BackendID {
            let request = SpawnRequest(cluster: "plane.test", droneID: drone, maxIdleSeconds: DurationSeconds(IdleSemanticsTests.maxIdle),
                                       backendID: .random(), executable: DockerExecutableConfig(image: executable, env: env))
            spawned.backends.withLock { $0.append(request.backendID) }
            #expect(try await eventually { (try? await messenger.request(PlaneSubjects.spawn(drone), request, timeout: .seconds(2))) == true }, "\(child.output)")
            return request.backendID
        }

        /// A backend (`plane-test-server`) that listens, and so becomes Ready, only once the
        /// test opens its gate (`open(_:of:)`). An exchange started before that is held by the
        /// proxy and forwarded the moment the backend is Ready, so the backend is never idle
        /// before its exchange reaches it. (Exchanges used to start once the test saw Ready; on
        /// a busy CI machine the client then took longer than `max_idle_secs` to arrive, and
        /// the backend was rightly swept first.)
        func spawnGated() async throws -> (backend: BackendID, gate: String) {
            let gate = directory + "/gate-" + BackendID.random().rawValue
            let backend = try await spawnAccepted(try TestExecutables.path("plane-test-server"), env: ["START_AFTER_FILE": gate])
            return (backend, gate)
        }

        /// Requests the proxy holds now (`plane_proxy_held_requests`).
        func heldNow() async throws -> Int? {
            let metrics = try await HTTPProbe(port: metricsPort).get("/metrics").body
            let line = metrics.split(separator: "\n").first { $0.hasPrefix("plane_proxy_held_requests ") }
            return line.flatMap { Double($0.split(separator: " ").last ?? "") }.map { Int($0) }
        }

        /// Opens `gate` once the exchange just started for `backend` is held by the proxy
        /// (the only one held), then waits until the backend is Ready and the request has
        /// been let go of (forwarded).
        func open(_ gate: String, of backend: BackendID) async throws {
            var held: Int?
            #expect(try await eventually {
                held = try await heldNow()
                return held == 1
            }, "held: \(String(describing: held)) \(child.output)")
            #expect(FileManager.default.createFile(atPath: gate, contents: nil))
            #expect(try await eventually { relay.of(backend).last == .ready }, "\(relay.of(backend)) \(child.output)")
            #expect(try await eventually { try await heldNow() == 0 })
        }

        /// `curl` through the proxy to `https://{backend}.plane.test/{path}`: its exit status,
        /// then its output.
        func curl(_ backend: BackendID, _ path: String, _ arguments: [String] = [], stdin: String? = nil) async throws -> (status: Int32, output: String) {
            let host = "\(backend).plane.test"
            let curl = try SystemProgram("curl", debianPackage: "curl").path()
            let call = ["-sS", "--max-time", "60", "--cacert", ca, "--resolve", "\(host):\(proxyPort):127.0.0.1"] + arguments + ["https://\(host):\(proxyPort)\(path)"]
            guard let stdin else { return try await SystemProgram.run(executable: curl, call) }
            // The body comes from a shell pipeline that writes it slowly.
            let quoted = ([curl] + call).map { "'\($0.replacingOccurrences(of: "'", with: "'\\''"))'" }.joined(separator: " ")
            return try await SystemProgram.run(executable: "/bin/sh", ["-c", "(\(stdin)) | \(quoted)"])
        }

        /// The states reported so far are those of a backend that is still running.
        func isRunning(_ backend: BackendID) -> Bool { relay.of(backend) == [.loading, .starting, .ready] }

        /// Waits for the sweep; returns how long after `since` the drone reported it.
        func sweptAfter(_ backend: BackendID, since: ContinuousClock.Instant) async throws -> Duration {
            #expect(try await eventually(timeout: .seconds(30)) { relay.of(backend).last == .swept }, "\(relay.of(backend)) \(child.output)")
            #expect(relay.of(backend) == [.loading, .starting, .ready, .swept])
            return .now - since
        }

        func stop() async {
            for backend in spawned.backends.withLock({ $0 }) where relay.of(backend).last?.isTerminal != true {
                _ = try? await messenger.request(PlaneSubjects.terminate("plane.test", backend), TerminationRequest(cluster: "plane.test", backendID: backend),
                                                 timeout: .seconds(5))
                _ = try? await eventually(timeout: .seconds(15)) { relay.of(backend).last?.isTerminal == true }
            }
            child.signal(SIGTERM)
            #expect(await child.waitForExit(timeout: .seconds(20)) == 0, "\(child.output)")
            relay.stop()
            await client.close()
        }
    }

    func withDrone(_ body: (Bed) async throws -> Void) async throws {
        try await withNATSServer { server in
            let directory = try TestEnvironment.temporaryDirectory("idle-semantics")
            let certificates = try await TestCertificates.generate(in: directory, names: ["DNS:*.plane.test", "DNS:plane.test"])
            let drone = DroneID.random()
            let proxyPort = try TestEnvironment.freePort()
            let metricsPort = try TestEnvironment.freePort()
            let config = try DroneConfigFile.write(in: directory, drone: drone.rawValue, nats: server.url, ports: "23900-23999", extra: """
                runtime = "process"
                runtimes_dir = "\(PythonEnvironment.packageRoot)/runtimes"
                [proxy]
                bind_ip = "127.0.0.1"
                https_port = \(proxyPort)
                [cert]
                key_path = "\(certificates.serverKey)"
                cert_path = "\(certificates.serverCertificate)"
                [metrics]
                bind_ip = "127.0.0.1"
                port = \(metricsPort)
                """)
            let child = try ChildProcess(try TestExecutables.path("plane"), arguments: ["drone", config])
            let client = try await server.connectedClient()
            let relay = try await DroneProcessTests.Relay(client: client)
            let bed = Bed(drone: drone, child: child, client: client, relay: relay, messenger: PlaneMessenger(client: client),
                          proxyPort: proxyPort, metricsPort: metricsPort, ca: certificates.caCertificate, directory: directory)
            do {
                try await body(bed)
            } catch {
                await bed.stop()
                throw error
            }
            await bed.stop()
        }
    }

    /// A server-sent event stream, a slow response and a slow upload, each three times
    /// `max_idle_secs` long and each on a backend of its own (so that none keeps another's
    /// backend busy), arrive whole; each backend is swept `max_idle_secs` after its
    /// exchange ended, not earlier.
    @Test func longExchangesKeepTheirBackends() async throws {
        try await withDrone { bed in
            let seconds = Int(3 * Self.maxIdle)
            // Each exchange starts before its backend is Ready, is held by the proxy and
            // forwarded at Ready (`spawnGated`).
            // Each backend's states are looked at the moment its own exchange ends: the
            // exchanges end at different times, and a backend whose exchange ended first is
            // rightly swept while the others still run (CI saw exactly that when the check
            // came after all three).
            func exchange(_ backend: BackendID, _ path: String, _ arguments: [String] = [], stdin: String? = nil) async throws -> (status: Int32, output: String) {
                let result = try await bed.curl(backend, path, arguments, stdin: stdin)
                #expect(bed.isRunning(backend), "swept while its exchange was open: \(bed.relay.of(backend))")
                return result
            }
            let (streamed, streamedGate) = try await bed.spawnGated()
            async let events = exchange(streamed, "/sse/\(seconds)/1000", ["-N"])
            // None of the exchanges can end before this (a lower bound: the sweep is timed
            // from it, so a busy machine that notices the ends late cannot fail the test).
            let earliestEnd = ContinuousClock.now + .seconds(seconds)
            try await bed.open(streamedGate, of: streamed)
            let (slow, slowGate) = try await bed.spawnGated()
            async let answer = exchange(slow, "/slow/\(seconds * 1000)")
            try await bed.open(slowGate, of: slow)
            let (uploaded, uploadedGate) = try await bed.spawnGated()
            // A chunked body of `seconds` ten-byte pieces, one a second.
            async let upload = exchange(uploaded, "/upload", ["-T", "-", "-X", "POST"],
                                        stdin: "i=0; while [ $i -lt \(seconds) ]; do printf 0123456789; sleep 1; i=$((i+1)); done")
            try await bed.open(uploadedGate, of: uploaded)
            let (e, a, u) = try await (events, answer, upload)
            let expectedEvents = (1...seconds).map { "data: \($0)\n\n" }.joined()
            #expect(e.status == 0 && e.output == expectedEvents, "\(e.output)\n\(bed.child.output)")
            #expect(a.status == 0 && a.output == "slept \(seconds * 1000) ms", "\(a.output)\n\(bed.child.output)")
            #expect(u.status == 0 && u.output == "received \(seconds * 10)", "\(u.output)\n\(bed.child.output)")
            for backend in [streamed, slow, uploaded] {
                let after = try await bed.sweptAfter(backend, since: earliestEnd)
                #expect(after >= .milliseconds(Int64(Self.maxIdle) * 1000 - 500), "swept \(after) after its exchange ended")
            }
        }
    }

    /// Clients killed in the middle of an exchange (a server-sent event stream, a slow
    /// upload): their exchanges end with their connections, so the backends do not stay
    /// busy; each is swept `max_idle_secs` after its client died.
    @Test func aClientKilledMidExchangeDoesNotKeepItsBackend() async throws {
        try await withDrone { bed in
            let curl = try SystemProgram("curl", debianPackage: "curl").path()
            func call(_ backend: BackendID, _ path: String, _ arguments: [String]) -> [String] {
                let host = "\(backend).plane.test"
                return ["-sS", "--cacert", bed.ca, "--resolve", "\(host):\(bed.proxyPort):127.0.0.1"] + arguments + ["https://\(host):\(bed.proxyPort)\(path)"]
            }
            // Each exchange starts before its backend is Ready (`spawnGated`).
            let (streamed, streamedGate) = try await bed.spawnGated()
            let stream = try ChildProcess(curl, arguments: call(streamed, "/sse/600/1000", ["-N"]))
            try await bed.open(streamedGate, of: streamed)
            let (uploaded, uploadedGate) = try await bed.spawnGated()
            // A body without end at 1 KiB/s.
            let upload = try ChildProcess(curl, arguments: call(uploaded, "/upload", ["-T", "/dev/zero", "-X", "POST", "--limit-rate", "1K"]))
            try await bed.open(uploadedGate, of: uploaded)
            try await Task.sleep(for: .seconds(Int(2 * Self.maxIdle)))
            for backend in [streamed, uploaded] {
                #expect(bed.isRunning(backend), "swept while its exchange was open: \(bed.relay.of(backend))")
            }
            let killed = ContinuousClock.now  // before the connections close
            stream.signal(SIGKILL)
            upload.signal(SIGKILL)
            _ = await stream.waitForExit()
            _ = await upload.waitForExit()
            for backend in [streamed, uploaded] {
                let after = try await bed.sweptAfter(backend, since: killed)
                #expect(after >= .milliseconds(Int64(Self.maxIdle) * 1000 - 500), "swept \(after) after its client was killed")
            }
        }
    }

    /// python-socketio through the TLS proxy, the server's ping interval (8 s) longer than
    /// `max_idle_secs`, so a polling client's long-poll GET outlasts the idle time: polling
    /// with upgrade, polling only and WebSocket only on one backend, each connected for 10 s
    /// with an event and its acknowledgement at both ends. Each connects 6 s after the one
    /// before, so a client is alone on the backend for about 6 s (twice `max_idle_secs`)
    /// while the next one's start overlaps its end. The clients' interpreters start before the
    /// backend and wait for its URL (`--url-file`): a Python that starts slowly on a busy
    /// machine once left the new backend idle for longer than `max_idle_secs` before the first
    /// client connected, and it was rightly swept. The backend is never swept while a client
    /// is connected, and is swept after the last one leaves.
    @Test func socketIOClientsOfEveryTransportKeepTheBackend() async throws {
        try await withDrone { bed in
            // The process runtime executes a path: a script that starts the socket.io server.
            let launcher = bed.directory + "/socketio-backend.sh"
            let python = try await PythonEnvironment.python()
            try "#!/bin/sh\nexec '\(python)' '\(Self.scripts)/socketio_server.py' \"$PORT\" 8\n".write(toFile: launcher, atomically: true, encoding: .utf8)
            try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: launcher)
            let urlFile = bed.directory + "/socketio-url"
            let runs = [("polling,websocket", "ok websocket websocket"), ("polling", "ok polling polling"), ("websocket", "ok websocket websocket")]
            let ca = bed.ca
            let backendID = SpawnedBackend()
            let lastStart = try await withThrowingTaskGroup(of: ContinuousClock.Instant?.self) { group in
                for (index, (transports, expected)) in runs.enumerated() {
                    group.addTask {
                        let (status, output) = try await SystemProgram.run(executable: python, ["\(Self.scripts)/socketio_client.py", "--url-file", urlFile,
                                                                                               "--ready-file", urlFile + ".ready-\(index)",
                                                                                               "--delay", String(6 * index), "--ca", ca,
                                                                                               "--transports", transports, "--hold", "10"])
                        #expect(status == 0 && output.contains(expected), "\(transports): \(output)\n\(bed.child.output)")
                        if let backend = backendID.value.withLock({ $0 }) {
                            #expect(bed.isRunning(backend), "swept while a \(transports) client was connected: \(bed.relay.of(backend))")
                        }
                        return nil
                    }
                }
                // The clients have started (their interpreters and imports, which take seconds
                // on a busy machine); then the backend is spawned and its URL handed over.
                let started = try await eventually(timeout: .seconds(120)) {
                    runs.indices.allSatisfy { FileManager.default.fileExists(atPath: urlFile + ".ready-\($0)") }
                }
                #expect(started, "the socket.io clients did not start")
                let backend = try await bed.spawn(launcher)
                backendID.value.withLock { $0 = backend }
                try "https://\(backend).plane.test:\(bed.proxyPort)".write(toFile: urlFile + ".tmp", atomically: false, encoding: .utf8)
                try FileManager.default.moveItem(atPath: urlFile + ".tmp", toPath: urlFile)
                let go = ContinuousClock.now
                for try await _ in group {}
                // The last client connects 12 s after the URL appeared and stays 10 s.
                return go + .seconds(6 * (runs.count - 1))
            }
            let backend = try #require(backendID.value.withLock { $0 })
            // The last client stayed 10 s: it cannot have left before (a lower bound for the sweep's timing).
            let after = try await bed.sweptAfter(backend, since: lastStart + .seconds(10))
            #expect(after >= .milliseconds(Int64(Self.maxIdle) * 1000 - 500), "swept \(after) after the last client left")
        }
    }
}

/// The backend a test's concurrent clients learn of once it is spawned.
final class SpawnedBackend: Sendable {
    let value = Mutex<BackendID?>(nil)
}
