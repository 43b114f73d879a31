import Foundation
import NATS
import PlaneCore
import PlaneMessaging
import PlaneTestSupport
import Synchronization
import Testing

/// Real processes under hostile input (docs/security.md, "The hostile suite"): a `plane
/// controller` and a `plane drone` (on Docker, or on the `oci` runtime with crun and a local
/// registry) get crafted and garbage NATS messages on every subject they read, DNS packets,
/// proxy framing attacks and crafted images. After each attack both processes still run,
/// heartbeats go on, a backend started before keeps serving through the proxy and keeps its
/// stored state, and the refusal shows where an operator looks.
@Suite(.serialized, .timeLimit(.minutes(15)))
struct HostileInputTests {
    enum Runtime: String, CaseIterable, Sendable {
        case docker
        case oci
    }

    /// A controller and a drone as operators run them, with a backend that must keep serving.
    final class Cluster: Sendable {
        let server: NATSServerProcess
        let controller: ChildProcess
        let drone: ChildProcess
        let droneID: DroneID
        let messenger: PlaneMessenger
        let httpPort: Int
        let dnsPort: Int
        let proxyPort: Int
        let metricsPort: Int
        let backend: BackendID
        let heartbeats = Mutex<[ContinuousClock.Instant]>([])
        let heartbeatTask = Mutex<Task<Void, Never>?>(nil)

        init(server: NATSServerProcess, controller: ChildProcess, drone: ChildProcess, droneID: DroneID, messenger: PlaneMessenger,
             httpPort: Int, dnsPort: Int, proxyPort: Int, metricsPort: Int, backend: BackendID) {
            self.server = server
            self.controller = controller
            self.drone = drone
            self.droneID = droneID
            self.messenger = messenger
            self.httpPort = httpPort
            self.dnsPort = dnsPort
            self.proxyPort = proxyPort
            self.metricsPort = metricsPort
            self.backend = backend
        }

        var logs: String { "controller:\n\(controller.output.suffix(3000))\ndrone:\n\(drone.output.suffix(3000))" }

        func stop() async {
            heartbeatTask.withLock { $0?.cancel() }
            // The backend goes before the drone: a drone that stops leaves its backends
            // running (for the next start to reattach), and nothing would end it.
            _ = try? await messenger.request(PlaneSubjects.terminate(HostileInputTests.cluster, backend),
                                             TerminationRequest(cluster: HostileInputTests.cluster, backendID: backend), timeout: .seconds(10))
            _ = try? await eventually(timeout: .seconds(30)) { await state(of: backend) == "Terminated" }
            await drone.stop(grace: .seconds(20))
            await controller.stop()
            await messenger.client.close()
        }

        func state(of backend: BackendID) async -> String? {
            guard let response = try? await HTTPProbe(port: httpPort).get("/backend/\(backend)/status"), response.status == 200,
                  let json = try? JSONParser.parse(response.body).objectValue else { return nil }
            return json["state"]?.stringValue
        }

        func metrics(controller: Bool) async -> String {
            (try? await HTTPProbe(port: controller ? httpPort : metricsPort).get("/metrics").body) ?? ""
        }
    }

    static let cluster: ClusterName = "plane.test"

    /// Starts nats-server's companions: the controller, the drone (`droneExtra` inside
    /// `[agent]`), waits for the drone's heartbeat, and starts one backend through the
    /// scheduler, ready and answering through the proxy.
    func withCluster(_ runtime: Runtime, image: String, droneExtra: String = "", _ body: (Cluster) async throws -> Void) async throws {
        try await withNATSServer { server in
            let directory = try TestEnvironment.temporaryDirectory("hostile")
            let (httpPort, dnsPort, proxyPort, metricsPort) = (try TestEnvironment.freePort(), try TestEnvironment.freePort(),
                                                              try TestEnvironment.freePort(), try TestEnvironment.freePort())
            try """
                [nats]
                hosts = ["\(server.url)"]
                [scheduler]
                [dns]
                port = \(dnsPort)
                bind_ip = "127.0.0.1"
                zones = ["plane.test"]
                max_txt_per_name = 255
                max_txt_bytes = 16384
                max_zones = 8
                tcp_timeout_secs = 2
                rate_limit = 50
                [http]
                bind_ip = "127.0.0.1"
                port = \(httpPort)
                cluster = "plane.test"
                """.write(toFile: directory + "/controller.toml", atomically: true, encoding: .utf8)
            let droneID = DroneID.random()
            var extra = droneExtra
            if runtime == .oci { extra = "runtime = \"oci\"\n" + extra }
            extra += """

                [proxy]
                bind_ip = "127.0.0.1"
                https_port = \(proxyPort)
                [metrics]
                bind_ip = "127.0.0.1"
                port = \(metricsPort)
                """
            let droneConfig = try DroneConfigFile.write(in: directory, drone: droneID.rawValue, nats: server.url,
                                                        ports: runtime == .docker ? "24000-24099" : "24100-24199", extra: extra)
            let plane = try TestExecutables.path("plane")
            let controller = try ChildProcess(plane, arguments: ["controller", directory + "/controller.toml"])
            let drone = try ChildProcess(plane, arguments: ["drone", droneConfig])
            let client = try await server.connectedClient()
            let messenger = PlaneMessenger(client: client)
            _ = try await HTTPProbe(port: httpPort).waitUntilAnswering("/healthz", within: .seconds(30))
            // The drone is a candidate once the scheduler has its heartbeat.
            let request = ScheduleRequest(cluster: Self.cluster, maxIdleSeconds: 600, executable: DockerExecutableConfig(image: image))
            var response: ScheduleResponse?
            #expect(try await eventually(timeout: .seconds(60)) {
                response = try? await messenger.request(PlaneSubjects.schedule(Self.cluster), request, timeout: .seconds(20))
                if case .scheduled = response { return true }
                return false
            }, "\(controller.output)\n\(drone.output)")
            guard case .scheduled(let scheduled) = response else {
                await drone.stop()
                await controller.stop()
                throw TestSupportError("no backend was scheduled: \(String(describing: response))")
            }
            let cluster = Cluster(server: server, controller: controller, drone: drone, droneID: droneID, messenger: messenger, httpPort: httpPort,
                                  dnsPort: dnsPort, proxyPort: proxyPort, metricsPort: metricsPort, backend: scheduled.backendID)
            let heartbeats = try await messenger.subscribe(SubjectPattern<DroneStatusMessage, NullReply>(PlaneSubjects.droneStatus(droneID).subject))
            cluster.heartbeatTask.withLock { task in
                task = Task {
                    for await delivery in heartbeats where (try? delivery.message.get()) != nil {
                        cluster.heartbeats.withLock { $0.append(.now) }
                    }
                }
            }
            do {
                #expect(try await eventually(timeout: .seconds(90)) { await cluster.state(of: scheduled.backendID) == "Ready" }, "\(cluster.logs)")
                try await body(cluster)
            } catch {
                await cluster.stop()
                throw error
            }
            await cluster.stop()
        }
    }

    /// Both processes run, a heartbeat arrives after `since`, the backend answers through
    /// the proxy and its stored state is still `Ready`.
    func expectHealthy(_ cluster: Cluster, after stage: String, since: ContinuousClock.Instant) async throws {
        #expect(cluster.controller.isRunning, "the controller stopped after \(stage):\n\(cluster.logs)")
        #expect(cluster.drone.isRunning, "the drone stopped after \(stage):\n\(cluster.logs)")
        #expect(try await eventually(timeout: .seconds(12)) { cluster.heartbeats.withLock { $0.contains { $0 > since } } },
                "no heartbeat after \(stage)")
        let answer = try? await HTTPProbe(port: cluster.proxyPort, hostHeader: "\(cluster.backend).plane.test").get("/")
        #expect(answer?.status == 200 && answer?.body == "Hello World!", "the backend does not answer after \(stage): \(String(describing: answer))")
        #expect(await cluster.state(of: cluster.backend) == "Ready", "the backend's stored state changed after \(stage)")
    }

    func image(for runtime: Runtime) async throws -> String {
        switch runtime {
        case .docker: try await DockerTestImage.shared.ensureLoaded()
        case .oci: try await OCITestImage.shared.reference()
        }
    }

    // MARK: Messages, packets, requests

    @Test(arguments: Runtime.allCases)
    func hostileMessagesPacketsAndRequestsLeaveTheClusterServing(_ runtime: Runtime) async throws {
        let image = try await image(for: runtime)
        let droneExtra = runtime == .oci ? "[agent.oci]\nruntime = \"crun\"\n" : ""
        try await withCluster(runtime, image: image, droneExtra: droneExtra) { cluster in
            let messenger = cluster.messenger
            let client = messenger.client
            var since = ContinuousClock.now

            // 1. The reported trap: a cpu_period of 2^63-1 s. The controller names the field;
            // offered straight to the drone, the spawn is refused.
            let huge = #"{"cluster":"plane.test","max_idle_secs":30,"metadata":{},"executable":{"image":"\#(image)","env":{},"#
                + #""resource_limits":{"cpu_period":9223372036854775807,"cpu_period_percent":255,"cpu_time_limit":null,"memory_limit_bytes":null}}}"#
            let answer = try await client.request(PlaneSubjects.schedule(Self.cluster).subject, payload: Array(huge.utf8), timeout: .seconds(10))
            let decoded = try WireDecoder().decode(ScheduleResponse.self, from: answer.payload.readableBytesView)
            guard case .error(let error) = decoded else { Issue.record("expected an Error, got \(decoded)"); return }
            #expect(error.code == "invalid_message" && error.message.contains("cpu_period"), "\(error)")
            let spawn = #"{"cluster":"plane.test","drone_id":"\#(cluster.droneID)","max_idle_secs":30,"backend_id":"\#(BackendID.random())","metadata":{},"#
                + #""executable":{"image":"\#(image)","env":{},"resource_limits":{"cpu_period":18446744073709551615,"cpu_period_percent":null,"cpu_time_limit":18446744073709551615,"memory_limit_bytes":-1}},"bearer_token":null}"#
            let spawnAnswer = try await client.request(PlaneSubjects.spawn(cluster.droneID).subject, payload: Array(spawn.utf8), timeout: .seconds(10))
            #expect(String(buffer: spawnAnswer.payload) == "false")
            let bigEnvironment = try WireEncoder().encode(SpawnRequest(cluster: Self.cluster, droneID: cluster.droneID, maxIdleSeconds: 30, backendID: .random(),
                                                                       executable: DockerExecutableConfig(image: image, env: ["BIG": String(repeating: "x", count: 70_000)])))
            let envAnswer = try await client.request(PlaneSubjects.spawn(cluster.droneID).subject, payload: bigEnvironment, timeout: .seconds(10))
            #expect(String(buffer: envAnswer.payload) == "false")
            try await expectHealthy(cluster, after: "huge resource limits and environment", since: since)
            #expect(await cluster.metrics(controller: false).contains(#"plane_input_limit_hits_total{limit="limits.max_env_bytes"}"#))

            // 2. Garbage and oversized payloads on every subject the processes read.
            since = .now
            let other = BackendID.random()
            let subjects = [
                PlaneSubjects.schedule(Self.cluster).subject, PlaneSubjects.spawn(cluster.droneID).subject,
                PlaneSubjects.updateBackendState(Self.cluster, other).subject, PlaneSubjects.updateBackendState(Self.cluster, cluster.backend).subject,
                PlaneSubjects.terminate(Self.cluster, cluster.backend).subject, PlaneSubjects.drain(Self.cluster, cluster.droneID).subject,
                PlaneSubjects.dns(Self.cluster, .a).subject, PlaneSubjects.dns(Self.cluster, .txt).subject, PlaneSubjects.acmeSetDnsRecord.subject,
                PlaneSubjects.droneStatus(cluster.droneID).subject, PlaneSubjects.droneStatus(.random()).subject, PlaneSubjects.droneRegister.subject,
                PlaneSubjects.backendLogHistory(cluster.backend).subject,
                PlaneSubjects.accessToken(Self.cluster, cluster.backend).subject, PlaneSubjects.lease(Self.cluster, cluster.droneID).subject,
                PlaneSubjects.lease(Self.cluster, .random()).subject, PlaneSubjects.backendStats(cluster.backend).subject,
            ]
            var random = SystemRandomNumberGenerator()
            let payloads: [[UInt8]] = [
                [], (0..<1024).map { _ in UInt8.random(in: 0...255, using: &random) }, Array("{".utf8), Array("null".utf8), Array("[]".utf8),
                Array((String(repeating: "[", count: 500) + String(repeating: "]", count: 500)).utf8),
                Array(("{\"cluster\":\"" + String(repeating: "a", count: 900_000) + "\"}").utf8),
                Array(("{" + (0..<60_000).map { "\"k\($0)\":1" }.joined(separator: ",") + "}").utf8),
                Array(#"{"cluster":"plane.test","max_idle_secs":1e400,"metadata":{},"executable":{"image":"x","env":{}}}"#.utf8),
                Array(#"{"cluster":"plane.test","state":"Ready","backend":"\#(other)","time":"9999-12-31T23:59:59.999999999+23:59","drone":"d"}"#.utf8),
                Array(#"{"cluster":"plane.test","kind":"A","name":"\#(other)","value":"\u0000\ud800"}"#.utf8),
                [0xFF, 0xFE] + Array(#"{"drone":"x"}"#.utf8),
            ]
            for subject in subjects {
                for payload in payloads {
                    // Requests get an answer or time out; either way the next one goes.
                    _ = try? await client.request(subject, payload: payload, timeout: .milliseconds(300))
                }
            }
            try await client.flush()
            try await Task.sleep(for: .seconds(3))  // the lost-backend sweeper (every 2 s) reads what was stored
            try await expectHealthy(cluster, after: "garbage on every subject", since: since)
            #expect(await cluster.metrics(controller: true).contains(#"plane_input_limit_hits_total{limit="limits.max_json_string_bytes"}"#))
            #expect(await cluster.metrics(controller: false).contains(#"plane_input_limit_hits_total{limit="limits.max_json_depth"}"#))

            // 3. DNS: the store's bounds, and answers larger than DNS can frame.
            since = .now
            let txt = PlaneSubjects.dns(Self.cluster, .txt)
            for index in 0..<260 {
                try await messenger.publish(txt, SetDnsRecord(cluster: Self.cluster, kind: .txt, name: "big", value: String(repeating: "t", count: 16_000) + "\(index)"))
            }
            try await messenger.publish(txt, SetDnsRecord(cluster: Self.cluster, kind: .txt, name: "long", value: String(repeating: "v", count: 20_000)))
            for index in 0..<12 {
                let zone = try ClusterName("zone\(index).test")
                try await messenger.publish(PlaneSubjects.dns(zone, .a), SetDnsRecord(cluster: zone, kind: .a, name: "x", value: "10.0.0.\(index)"))
            }
            try await client.flush()
            let dig = SystemProgram.dig
            let port = "\(cluster.dnsPort)"
            #expect(try await eventually {
                try await dig.run(["@127.0.0.1", "-p", port, "+tcp", "+time=3", "+tries=1", "TXT", "big.plane.test"]).contains("flags: qr aa tc")
            }, "an answer larger than 64 KiB is truncated over TCP")
            let udp = try await dig.run(["@127.0.0.1", "-p", port, "+notcp", "+ignore", "+time=3", "+tries=1", "TXT", "big.plane.test"])
            #expect(udp.contains("flags: qr aa tc"), "\(udp)")
            // Garbage over UDP and TCP; a TCP frame announcing 65535 bytes that never come.
            for packet in ["ff" + String(repeating: "ee", count: 600), "000100000001000000000000c00c", "12"] {
                let send = "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(bytes.fromhex('\(packet)'), ('127.0.0.1', \(port)))"
                try await SystemProgram("python3", debianPackage: "python3").run(["-c", send])
            }
            // The unfinished frame's connection is cut after tcp_timeout_secs (2 s here).
            var slowClient = HTTPProbe(port: cluster.dnsPort)
            slowClient.timeout = .seconds(30)
            let (_, cut) = try await slowClient.raw([[0xFF, 0xFF, 1, 2, 3]])
            #expect(cut, "a TCP query that never arrives whole is cut")
            #expect(try await dig.run(["@127.0.0.1", "-p", port, "+short", "A", "\(cluster.backend).plane.test"]) == "127.0.0.1\n")
            // A flood of queries from one network (rate_limit = 50 here): its burst is
            // answered, then every second query gets an empty truncated answer and the others
            // none; another network is answered meanwhile.
            let name = "\(cluster.backend).plane.test"
            let flood = try await DNSQueryBurst(port: cluster.dnsPort, name: name, count: 400).run()
            #expect(flood.answers >= 50 && flood.answers <= 150 && flood.truncated >= 100 && flood.unanswered >= 100, "\(flood)")
            let neighbour = try await DNSQueryBurst(port: cluster.dnsPort, name: name, count: 10, source: "127.0.1.1").run()
            #expect(neighbour.answers == 10, "\(neighbour)")
            try await expectHealthy(cluster, after: "DNS floods and packets", since: since)
            let controllerMetrics = await cluster.metrics(controller: true)
            for limit in ["dns.max_txt_per_name", "dns.max_txt_bytes", "dns.max_zones", "dns.tcp_timeout_secs", "dns.rate_limit"] {
                #expect(controllerMetrics.contains("plane_input_limit_hits_total{limit=\"\(limit)\"}"), "\(limit) is counted")
            }

            // 4. Framing attacks on the proxy: each refused with 400 and a close, never forwarded.
            since = .now
            let host = "\(cluster.backend).plane.test"
            let attacks = [
                "POST / HTTP/1.1\r\nHost: \(host)\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: \(host)\r\n\r\n",
                "POST / HTTP/1.1\r\nHost: \(host)\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
                "POST / HTTP/1.1\r\nHost: \(host)\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
                "GET / HTTP/1.1\nHost: \(host)\r\n\r\n",
                "POST / HTTP/1.1\r\nHost: \(host)\r\nContent-Length: 5\r\nConnection: Content-Length\r\n\r\nhello",
                "GET / HTTP/1.1\r\nHost: \(host)\r\nHost: other.plane.test\r\n\r\n",
                "GET http://other.plane.test/ HTTP/1.1\r\nHost: \(host)\r\n\r\n",
                "POST / HTTP/1.1\r\nHost: \(host)\r\nTransfer-Encoding: chunked\r\n\r\n" + (0..<40).map { _ in "1;e=\(String(repeating: "x", count: 500))\r\na\r\n" }.joined(),
            ]
            for attack in attacks {
                let (text, closed) = try await HTTPProbe(port: cluster.proxyPort).raw(attack)
                #expect(text.hasPrefix("HTTP/1.1 400 ") && closed, "\(attack.prefix(80)): \(text.prefix(200))")
            }
            // The drone's metrics listener: 400 and a close at once (it kept the connection,
            // dropping what came, for its 30 s request timeout).
            let notHTTP = try await HTTPProbe(port: cluster.metricsPort).raw("\u{1}\u{2}GARBAGE\r\n\r\n")
            #expect(notHTTP.text.hasPrefix("HTTP/1.1 400 ") && notHTTP.closed, "\(notHTTP)")
            let many = "GET / HTTP/1.1\r\nHost: \(host)\r\n" + String(repeating: "X-A: b\r\n", count: 150) + "\r\n"
            let (tooMany, closed) = try await HTTPProbe(port: cluster.proxyPort).raw(many)
            #expect(tooMany.hasPrefix("HTTP/1.1 431 ") && closed, "\(tooMany.prefix(200))")
            try await expectHealthy(cluster, after: "framing attacks", since: since)
            #expect(await cluster.metrics(controller: false).contains(#"plane_input_limit_hits_total{limit="proxy.max_header_count"}"#))
        }
    }

    // MARK: Crafted images

    /// Images with the layers of a hostile author, pushed to a local registry: each pull ends
    /// the backend in `ErrorLoading` within seconds (never a hang, never a trap), with the
    /// reason in the drone's log; the drone serves on.
    @Test func craftedImagesEndInErrorLoadingAndTheDroneServesOn() async throws {
        let registry = try await RegistryProcess.start()
        do {
            try await pushAndPull(registry)
        } catch {
            await registry.stop()
            throw error
        }
        await registry.stop()
    }

    func pushAndPull(_ registry: RegistryProcess) async throws {
        func push(_ name: String, _ layers: [CraftedImage.Layer], user: String? = nil) async throws -> String {
            try await registry.push(ociLayout: try CraftedImage.layout(layers: layers, user: user), tag: "crafted", as: name)
        }
        var images: [(String, String, String?)] = []  // (what, reference, counted limit)
        var tar = CraftedTar()
        tar.pax([("size", "9223372036854775807")])
        tar.entry("link", .symlink, link: "target")
        images.append(("a PAX size of 2^63-1", try await push("pax-size", [.tar(tar.finish())]), "agent.oci.max_file_bytes"))
        tar = CraftedTar()
        tar.pax([("uid", "-1")])
        tar.entry("file", .file, data: Array("x".utf8))
        images.append(("a negative uid", try await push("negative-uid", [.tar(tar.finish())]), nil))
        tar = CraftedTar()
        tar.pax([("gid", "4294967296")])
        tar.entry("file", .file, data: Array("x".utf8))
        images.append(("a gid of 2^32", try await push("huge-gid", [.tar(tar.finish())]), nil))
        tar = CraftedTar()
        tar.entry("etc/", .directory, mode: 0o755)
        tar.entry("etc/passwd", .fifo)
        images.append(("a FIFO as /etc/passwd", try await push("fifo-passwd", [.tar(tar.finish())], user: "app"), nil))
        tar = CraftedTar()
        tar.entry("etc/", .directory, mode: 0o755)
        tar.entry("etc/passwd", .characterDevice, deviceMajor: 1, deviceMinor: 5)
        images.append(("/dev/zero as /etc/passwd", try await push("device-passwd", [.tar(tar.finish())], user: "app"), nil))
        tar = CraftedTar()
        tar.entry("zeros", .file, data: [UInt8](repeating: 0, count: 160 << 20))
        images.append(("a decompression bomb", try await push("bomb", [.gzip(try await CraftedImage.gzip(tar.finish()))]), "agent.oci.max_layer_unpacked_bytes"))
        // Two layers within max_layer_unpacked_bytes, together beyond max_image_unpacked_bytes.
        var halves: [CraftedImage.Layer] = []
        for name in ["zeros-a", "zeros-b"] {
            tar = CraftedTar()
            tar.entry(name, .file, data: [UInt8](repeating: 0, count: 60 << 20))
            halves.append(.gzip(try await CraftedImage.gzip(tar.finish())))
        }
        images.append(("two layers beyond the image's limit", try await push("halves", halves), "agent.oci.max_image_unpacked_bytes"))
        tar = CraftedTar()
        tar.pax([("path", (0..<300).map { _ in "d" }.joined(separator: "/") + "/file")])
        tar.entry("x", .file)
        images.append(("a directory tree 300 deep", try await push("deep", [.tar(tar.finish())]), nil))

        let extra = "[agent.oci]\nruntime = \"crun\"\ninsecure_registries = [\"\(registry.address)\"]\nmax_layer_unpacked_bytes = 134217728\nmax_image_unpacked_bytes = 104857600\nmax_file_bytes = 268435456\n"
        try await withCluster(.oci, image: try await OCITestImage.shared.reference(), droneExtra: extra) { cluster in
            for (what, reference, limit) in images {
                let since = ContinuousClock.now
                let failures = cluster.drone.output.components(separatedBy: "backend.load_failed").count
                let request = ScheduleRequest(cluster: Self.cluster, maxIdleSeconds: 60, executable: DockerExecutableConfig(image: reference))
                let response = try await cluster.messenger.request(PlaneSubjects.schedule(Self.cluster), request, timeout: .seconds(20))
                guard case .scheduled(let scheduled) = response else { Issue.record("\(what): not scheduled: \(response)"); continue }
                let ended = try await eventually(timeout: .seconds(60)) { await cluster.state(of: scheduled.backendID) == "ErrorLoading" }
                let state = await cluster.state(of: scheduled.backendID)
                #expect(ended, "\(what) did not end in ErrorLoading: \(state ?? "no state")\n\(cluster.logs)")
                #expect(cluster.drone.output.components(separatedBy: "backend.load_failed").count > failures, "\(what): the reason is in the drone's log")
                if let limit {
                    #expect(await cluster.metrics(controller: false).contains("plane_input_limit_hits_total{limit=\"\(limit)\"}"), "\(what): \(limit) is counted")
                }
                try await expectHealthy(cluster, after: what, since: since)
            }
        }
    }
}
