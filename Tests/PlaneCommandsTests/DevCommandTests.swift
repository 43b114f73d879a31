import Foundation
import PlaneCore
import PlaneTestSupport
import Testing

/// `plane dev` as a user runs it: it becomes ready, a backend spawned with the CLI answers
/// through the HTTPS proxy validated with the printed CA, and Ctrl-C (SIGINT) leaves no
/// process, container or mount behind.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct DevCommandTests {
    @Test func aLocalClusterServesABackendAndCtrlCLeavesNothingBehind() async throws {
        _ = try await DockerTestImage.shared.ensureLoaded()  // dockerd is up, so `auto` picks Docker
        let stateDir = try TestEnvironment.temporaryDirectory("dev-command-test")
        defer { try? FileManager.default.removeItem(atPath: stateDir) }
        let plane = try TestExecutables.path("plane")
        let dev = try ChildProcess(plane, arguments: ["dev", "--state-dir", stateDir, "--https-port", "0", "--http-port", "0", "--nats-port", "0", "--json"])
        var ready: [String: Any]?
        #expect(try await eventually(timeout: .seconds(90)) {
            ready = dev.output.split(separator: "\n").lazy.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }.first
            return ready != nil || !dev.isRunning
        }, "\(dev.output)")
        let info = try #require(ready, "\(dev.output)")
        let nats = try #require(info["nats"] as? String), ca = try #require(info["ca"] as? String)
        let httpsPort = try #require(info["https_port"] as? Int), drone = try #require(info["drone"] as? String)
        #expect(info["runtime"] as? String == "docker" && info["cluster"] as? String == "plane.localhost")

        let (status, output) = try await SystemProgram.run(executable: plane, ["spawn", "plane.localhost", try #require(info["image"] as? String), "--nats", nats, "--json"])
        #expect(status == 0, "\(output)")
        let spawned = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any])
        let backend = try #require(spawned["backend_id"] as? String)
        let host = "\(backend).plane.localhost"
        let curl = try SystemProgram("curl", debianPackage: "curl").path()
        #expect(try await eventually(timeout: .seconds(60)) {
            let (code, body) = try await SystemProgram.run(executable: curl, ["-sS", "--max-time", "5", "--cacert", ca, "--resolve", "\(host):\(httpsPort):127.0.0.1",
                                                                        "https://\(host):\(httpsPort)/"])
            return code == 0 && body == "Hello World!"
        }, "\(dev.output)")

        dev.signal(SIGINT)
        #expect(await dev.waitForExit(timeout: .seconds(60)) == 0, "\(dev.output)")
        // No process, container or mount is left.
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: "/proc").filter { Int($0) != nil }.filter { pid in
            let cmdline = BoundedFile.generatedText("/proc/\(pid)/cmdline") ?? ""
            return cmdline.contains(stateDir)
        }
        #expect(leftovers.isEmpty, "processes still running: \(leftovers)")
        let containers = try await SystemProgram("docker", debianPackage: "docker.io").run(["ps", "-a", "-q", "--filter", "label=dev.plane.drone=\(drone)"])
        #expect(containers.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "containers left: \(containers)")
        let mounts = String(decoding: try BoundedFile.readGenerated("/proc/mounts"), as: UTF8.self)
        #expect(!mounts.contains(stateDir), "mounts left under \(stateDir)")
    }

    /// Two `plane dev` on one store: the second is refused; SIGKILL of the first ends its
    /// nats-server too; a nats-server left on the store (as an older version left it) is
    /// stopped by the next start.
    @Test func oneDevPerStoreAndItsNATSServerEndsWithIt() async throws {
        let stateDir = try TestEnvironment.temporaryDirectory("dev-store")
        defer { try? FileManager.default.removeItem(atPath: stateDir) }
        let plane = try TestExecutables.path("plane")
        let arguments = ["dev", "--state-dir", stateDir, "--runtime", "oci", "--https-port", "0", "--http-port", "0", "--nats-port", "0", "--json"]
        func ready(_ dev: ChildProcess) async throws -> Bool {
            try await eventually(timeout: .seconds(90)) { dev.output.contains("\"drone\"") || !dev.isRunning } && dev.isRunning
        }
        let first = try ChildProcess(plane, arguments: arguments)
        #expect(try await ready(first), "\(first.output)")
        let pidFile = stateDir + "/nats/nats-server.pid"
        let natsPid = try #require(pid_t((try String(contentsOfFile: pidFile, encoding: .utf8)).trimmingCharacters(in: .whitespacesAndNewlines)))
        #expect(kill(natsPid, 0) == 0)

        let (status, output) = try await SystemProgram.run(executable: plane, arguments)
        #expect(status == 1 && output.contains("another plane dev (pid \(first.pid)) uses \(stateDir)"), "\(output)")
        #expect(kill(natsPid, 0) == 0, "the refused one left the running one's server alone")

        first.signal(SIGKILL)
        _ = await first.waitForExit(timeout: .seconds(10))
        #expect(try await eventually(timeout: .seconds(10)) { kill(natsPid, 0) != 0 }, "nats-server \(natsPid) outlived plane dev")

        // A leftover server on the store, started without a parent-death signal.
        let natsServer = try SystemProgram("nats-server", debianPackage: "nats-server").path()
        let leftover = try ChildProcess(natsServer, arguments: ["-c", stateDir + "/nats/nats.conf", "-P", pidFile])
        #expect(try await eventually(timeout: .seconds(10)) { (try? String(contentsOfFile: pidFile, encoding: .utf8))?.contains("\(leftover.pid)") == true })
        let second = try ChildProcess(plane, arguments: arguments)
        #expect(try await ready(second), "\(second.output)")
        #expect(await leftover.waitForExit(timeout: .seconds(10)) != nil, "the leftover server was stopped")
        #expect(second.output.contains("dev.leftover_nats_server"), "\(second.output)")
        second.signal(SIGINT)
        #expect(await second.waitForExit(timeout: .seconds(60)) == 0, "\(second.output)")
    }

    /// `--drones 2 --runtimes oci,process`: a mixed local cluster; each runtime's demo
    /// service lands on its drone and answers through that drone's proxy. Then `plane dev`
    /// is killed with SIGKILL, and nothing of it is left.
    @Test func aMixedLocalCluster() async throws {
        let stateDir = try TestEnvironment.temporaryDirectory("dev-mixed")
        defer { try? FileManager.default.removeItem(atPath: stateDir) }
        let plane = try TestExecutables.path("plane")
        let dev = try ChildProcess(plane, arguments: ["dev", "--state-dir", stateDir, "--drones", "2", "--runtimes", "oci,process",
                                                      "--https-port", "0", "--http-port", "0", "--nats-port", "0", "--json"])
        var ready: [String: Any]?
        #expect(try await eventually(timeout: .seconds(90)) {
            ready = dev.output.split(separator: "\n").lazy.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }.first
            return ready != nil || !dev.isRunning
        }, "\(dev.output)")
        let info = try #require(ready, "\(dev.output)")
        let drones = try #require(info["drones"] as? [[String: Any]])
        #expect(drones.map { $0["runtime"] as? String } == ["oci", "process"], "\(info)")
        let api = try #require(info["http_api"] as? String), ca = try #require(info["ca"] as? String)
        let curl = try SystemProgram("curl", debianPackage: "curl").path()
        for drone in drones {
            let runtime = try #require(drone["runtime"] as? String), port = try #require(drone["https_port"] as? Int)
            var answer: [String: Any]?
            #expect(try await eventually(timeout: .seconds(60)) {
                let (_, body) = try await SystemProgram.run(executable: curl, ["-sS", "-X", "POST", "-d", "{}", "\(api)/service/demo-\(runtime)/spawn"])
                answer = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
                return answer?["url"] != nil
            }, "\(dev.output)")
            let spawned = try #require(answer)
            #expect(spawned["drone"] as? String == drone["drone"] as? String, "\(spawned)")
            let host = try #require((spawned["url"] as? String)?.replacingOccurrences(of: "https://", with: ""))
            #expect(try await eventually(timeout: .seconds(60)) {
                let (code, body) = try await SystemProgram.run(executable: curl, ["-sS", "--max-time", "5", "--cacert", ca, "--resolve", "\(host):\(port):127.0.0.1",
                                                                            "https://\(host):\(port)/"])
                return code == 0 && body == "Hello World!"
            }, "\(runtime): \(dev.output.suffix(3000))")
        }
        // Killed, none of its own cleanup runs: the reaper it started ends the backends
        // (OCI shims with their mounts, process-plugin shims, the plugin), nats-server
        // ends by its parent-death signal.
        dev.signal(SIGKILL)
        _ = await dev.waitForExit(timeout: .seconds(10))
        func leftovers() throws -> [String] {
            try FileManager.default.contentsOfDirectory(atPath: "/proc").filter { Int($0) != nil }.compactMap { pid in
                let cmdline = BoundedFile.generatedText("/proc/\(pid)/cmdline") ?? ""
                // Its own, or a backend's: an OCI container's root or a process backend's
                // directory is under the store.
                let places = ["root", "cwd"].compactMap { try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/\($0)") }
                guard cmdline.contains(stateDir) || places.contains(where: { $0.contains(stateDir) }) else { return nil }
                return "\(pid): \(cmdline.replacingOccurrences(of: "\0", with: " ")) \(places)"
            }
        }
        let clean = try await eventually(timeout: .seconds(60)) {
            try leftovers().isEmpty && !String(decoding: try BoundedFile.readGenerated("/proc/mounts"), as: UTF8.self).contains(stateDir)
        }
        let left = try leftovers()
        #expect(clean, "left after SIGKILL: \(left) \((try? String(contentsOfFile: stateDir + "/dev-reaper.log", encoding: .utf8)) ?? "")")
        let reaped = (try? String(contentsOfFile: stateDir + "/dev-reaper.log", encoding: .utf8)) ?? ""
        #expect(reaped.contains("dev_reaper.reaped") && reaped.contains("plane.backends=1"), "\(reaped)")
    }

    @Test func aMissingProgramIsNamedWithItsPackage() async throws {
        let stateDir = try TestEnvironment.temporaryDirectory("plane-dev-missing")
        defer { try? FileManager.default.removeItem(atPath: stateDir) }
        // A PATH without nats-server (which Debian installs in /usr/sbin).
        let (status, output) = try await SystemProgram.run(executable: try TestExecutables.path("plane"), ["dev", "--state-dir", stateDir, "--runtime", "oci"],
                                                     environment: ["PATH": "/usr/bin:/bin"])
        #expect(status == 1 && output.contains("apt-get install -y nats-server"), "\(output)")
    }
}
