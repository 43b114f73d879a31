import Foundation
import NATS
import PlaneCore
import PlaneTestSupport
import Testing

/// The cluster commands of `plane` against a real local cluster (nats-server, `plane
/// controller`, `plane drone` on dockerd with its proxy), their `--json` output parsed:
/// spawn → status shows Ready → HTTP through the proxy → terminate → status shows
/// Terminated; list-drones, list-dns, drain; exit codes when something is missing.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct ClusterCLITests {
    struct Run {
        var status: Int32
        var output: String
        /// Each output line that is a JSON object.
        var objects: [[String: Any]] {
            output.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        }
    }

    func plane(_ arguments: [String], nats: String) async throws -> Run {
        let (status, output) = try await SystemProgram.run(executable: try TestExecutables.path("plane"), arguments + ["--nats", nats])
        return Run(status: status, output: output)
    }

    @Test func spawnStatusProxyTerminateAndTheListings() async throws {
        let image = try await DockerTestImage.shared.ensureLoaded()
        try await withNATSServer { server in
            let directory = try TestEnvironment.temporaryDirectory("plane-cli")
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let dnsPort = try TestEnvironment.freePort()
            try """
                [nats]
                hosts = ["\(server.url)"]
                [scheduler]
                [dns]
                port = \(dnsPort)
                bind_ip = "127.0.0.1"
                zones = ["plane.test"]
                """.write(toFile: directory + "/controller.toml", atomically: true, encoding: .utf8)
            let controller = try ChildProcess(try TestExecutables.path("plane"), arguments: ["controller", directory + "/controller.toml"])
            let drone = DroneID.random()
            let proxyPort = try TestEnvironment.freePort()
            let droneConfig = try DroneConfigFile.write(in: directory, drone: drone.rawValue, nats: server.url, ports: "23800-23899", extra: """
                [proxy]
                bind_ip = "127.0.0.1"
                https_port = \(proxyPort)
                """)
            let droneProcess = try ChildProcess(try TestExecutables.path("plane"), arguments: ["drone", droneConfig])
            let nats = server.url

            // The drone shows up in list-drones once it heartbeats.
            #expect(try await eventually(timeout: .seconds(30)) {
                try await plane(["list-drones", "--json", "--wait", "5"], nats: nats).objects.contains { $0["drone"] as? String == drone.rawValue && $0["state"] as? String == "Ready" }
            }, "\(droneProcess.output)")

            let spawn = try await plane(["spawn", "plane.test", image, "--json", "--bearer-token", "--env", "GREETING=hi"], nats: nats)
            #expect(spawn.status == 0, "\(spawn.output)")
            let scheduled = try #require(spawn.objects.first)
            let backend = try #require(scheduled["backend_id"] as? String)
            #expect(scheduled["drone"] as? String == drone.rawValue && scheduled["url"] as? String == "https://\(backend).plane.test")
            let token = try #require(scheduled["bearer_token"] as? String)

            #expect(try await eventually(timeout: .seconds(60)) {
                try await plane(["status", backend, "--json"], nats: nats).objects.contains { $0["state"] as? String == "Ready" }
            }, "\(droneProcess.output)")
            let proxy = HTTPProbe(port: proxyPort, hostHeader: "\(backend).plane.test")
            #expect(try await proxy.get("/", headers: ["Authorization": "Bearer \(token)"]).body == "Hello World!")
            // Its output, from the drone running it: the start line and the request just made.
            #expect(try await eventually(timeout: .seconds(20)) {
                let logs = try await plane(["logs", backend, "--json"], nats: nats)
                return logs.status == 0 && logs.objects.contains { ($0["text"] as? String)?.hasPrefix("plane-test-server: listening on") == true }
                    && logs.objects.contains { ($0["text"] as? String)?.contains("GET / 200") == true }
            })
            // --follow: lines published after it started arrive too.
            let follower = try ChildProcess(try TestExecutables.path("plane"), arguments: ["logs", backend, "--follow", "--nats", nats])
            #expect(try await eventually(timeout: .seconds(20)) { follower.output.contains("GET / 200") })
            _ = try await proxy.get("/followed", headers: ["Authorization": "Bearer \(token)"])
            #expect(try await eventually(timeout: .seconds(20)) { follower.output.contains("GET /followed") }, "\(follower.output)")
            await follower.stop()
            let tail = try await plane(["logs", backend, "--lines", "1"], nats: nats)
            #expect(tail.status == 0 && tail.output.split(separator: "\n").count == 1, "\(tail.output)")
            // Text output: one tab-separated line per change, oldest first.
            let text = try await plane(["status", backend], nats: nats)
            #expect(text.status == 0 && text.output.hasPrefix("\(backend)\tLoading\t"), "\(text.output)")

            let dns = try await plane(["list-dns", "--json", "--cluster", "plane.test"], nats: nats)
            #expect(dns.objects.contains { $0["name"] as? String == "\(backend).plane.test" && $0["type"] as? String == "A" && $0["value"] as? String == "127.0.0.1" },
                    "\(dns.output)")

            let terminate = try await plane(["terminate", "plane.test", backend, "--json"], nats: nats)
            #expect(terminate.status == 0 && terminate.objects.first?["status"] as? String == "terminating", "\(terminate.output)")
            #expect(try await eventually(timeout: .seconds(60)) {
                try await plane(["status", backend, "--json"], nats: nats).objects.last?["state"] as? String == "Terminated"
            })

            // Drained, the drone takes no backend: spawn says so with exit 1; --cancel undoes it.
            #expect(try await plane(["drain", "plane.test", drone.rawValue], nats: nats).status == 0)
            #expect(try await eventually(timeout: .seconds(30)) {
                try await plane(["list-drones", "--json", "--wait", "5"], nats: nats).objects.contains { $0["drone"] as? String == drone.rawValue && $0["ready"] as? Bool == false }
            })
            // The controller hears the same heartbeats; give it one more.
            try await Task.sleep(for: .seconds(5))
            let refused = try await plane(["spawn", "plane.test", image, "--json"], nats: nats)
            #expect(refused.status == 1 && refused.objects.first?["status"] as? String == "no_drone_available", "\(refused.output)")
            #expect(try await plane(["drain", "plane.test", drone.rawValue, "--cancel"], nats: nats).status == 0)

            // --wait -q: only the id, once the backend is Ready (the controller sees the drone
            // ready again at its next heartbeat); an image that cannot be pulled (a registry
            // on a loopback port nothing listens on) ends the wait with exit 1.
            var waited = Run(status: -1, output: "")
            #expect(try await eventually(timeout: .seconds(30)) {
                waited = try await plane(["spawn", "plane.test", image, "--wait", "-q"], nats: nats)
                return !waited.output.contains("No drone is available")
            })
            let waitedID = waited.output.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(waited.status == 0 && (try? BackendID(waitedID)) != nil, "\(waited.output)")
            #expect(try await plane(["status", waitedID, "--json"], nats: nats).objects.last?["state"] as? String == "Ready")
            #expect(try await plane(["terminate", "plane.test", waitedID], nats: nats).status == 0)
            let broken = try await plane(["spawn", "plane.test", "127.0.0.1:1/no-such-image:1", "--wait"], nats: nats)
            #expect(broken.status == 1 && broken.output.contains("ended as ErrorLoading"), "\(broken.output)")

            // Nobody answers: exit 3 and a message that says what to run.
            let unknownDrone = try await plane(["drain", "plane.test", "no-such-drone"], nats: nats)
            #expect(unknownDrone.status == 3 && unknownDrone.output.contains("list-drones"), "\(unknownDrone.output)")
            let otherCluster = try await plane(["spawn", "other.test", image, "--request-timeout", "2"], nats: nats)
            #expect(otherCluster.status == 1 && otherCluster.output.contains("No drone is available in cluster other.test"), "\(otherCluster.output)")
            let noLogs = try await plane(["logs", backend, "--request-timeout", "2"], nats: nats)
            #expect(noLogs.status == 3 && noLogs.output.contains("No drone runs backend \(backend)"), "\(noLogs.output)")
            let unknownBackend = try await plane(["status", "no-such-backend"], nats: nats)
            #expect(unknownBackend.status == 1 && unknownBackend.output.contains("No state recorded"), "\(unknownBackend.output)")

            droneProcess.signal(SIGTERM)
            #expect(await droneProcess.waitForExit(timeout: .seconds(20)) == 0, "\(droneProcess.output)")
            controller.signal(SIGTERM)
            #expect(await controller.waitForExit(timeout: .seconds(20)) == 0, "\(controller.output)")
        }
    }

    @Test func withoutNATSTheCommandsSayWhereTheyLooked() async throws {
        let port = try TestEnvironment.freePort()
        for arguments in [["spawn", "plane.test", "img"], ["status"], ["list-drones", "--wait", "1"], ["list-dns"], ["terminate", "plane.test", "b1"]] {
            let run = try await plane(arguments, nats: "nats://127.0.0.1:\(port)")
            #expect(run.status == 3 && run.output.contains("Cannot reach NATS at nats://127.0.0.1:\(port)"), "\(arguments): \(run.output)")
        }
        let badEnv = try await plane(["spawn", "plane.test", "img", "--env", "NOEQUALS"], nats: "nats://127.0.0.1:\(port)")
        #expect(badEnv.status != 0 && badEnv.output.contains("KEY=VALUE"), "\(badEnv.output)")
    }
}
