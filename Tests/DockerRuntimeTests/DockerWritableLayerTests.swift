import ContainerRuntime
import Foundation
import ImageBuilder
import Logging
import PlaneCore
import PlaneTestSupport
import Testing
@testable import DockerRuntime

/// `[agent.docker] writable_layer_bytes`: on a daemon whose storage driver limits a
/// container's writable layer — a dockerd of this test's own, with the btrfs driver on a
/// btrfs image on a loop device — what a backend writes to its root stops at the limit and a
/// neighbour has a limit of its own; a daemon whose driver cannot (the shared test daemon's
/// overlay2 on ext4) is refused at start, saying what is needed.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct DockerWritableLayerTests {
    static let docker = SystemProgram("docker", debianPackage: "docker.io")

    @Test func aDaemonThatCannotLimitTheLayerIsRefusedAtStart() async throws {
        let driver = try await Self.docker.run(["-H", "unix://\(DockerTestSetup.endpoint)", "info", "--format", "{{.Driver}} {{json .DriverStatus}}"])
        var configuration = DockerRuntimeConfiguration()
        configuration.endpoint = DockerTestSetup.endpoint
        configuration.network = .host
        configuration.writableLayerBytes = 8 << 20
        if driver.hasPrefix("overlay2"), !driver.contains("\"xfs\"") {
            await #expect {
                _ = try await DockerRuntime.make(configuration: configuration, droneID: .random(), logger: Logger(label: "test.docker"))
            } throws: {
                guard let error = $0 as? RuntimeError else { return false }
                return error.code == .unavailable && error.message.contains("writable_layer_bytes") && error.message.contains("overlay2")
            }
        } else {
            // A daemon that can: taken.
            _ = try await DockerRuntime.make(configuration: configuration, droneID: .random(), logger: Logger(label: "test.docker"))
        }
    }

    @Test func aBackendsWritableLayerStopsAtItsLimit() async throws {
        let scratch = try TestEnvironment.temporaryDirectory("docker-btrfs")
        let mountPoint = "\(scratch)/mnt"
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        _ = try await SystemProgram("truncate", debianPackage: "coreutils").run(["-s", "2G", "\(scratch)/fs.img"])
        _ = try await SystemProgram("mkfs.btrfs", debianPackage: "btrfs-progs").run(["-q", "-f", "\(scratch)/fs.img"])
        _ = try await SystemProgram("mount", debianPackage: "mount").run(["-o", "loop", "\(scratch)/fs.img", mountPoint])
        let socket = "\(scratch)/docker.sock"
        var daemon: ChildProcess?
        var runtime: DockerRuntime?
        var started: [BackendID] = []
        do {
            // A daemon of this test's own: its data on the btrfs image, no bridge, no
            // iptables rules (the backends use the host's network), its own sockets.
            daemon = try ChildProcess(try SystemProgram("dockerd", debianPackage: "docker.io").path(), arguments: [
                "--host", "unix://\(socket)", "--pidfile", "\(scratch)/docker.pid", "--data-root", "\(mountPoint)/docker",
                "--exec-root", "\(scratch)/exec", "--storage-driver", "btrfs", "--bridge", "none", "--iptables=false", "--ip6tables=false",
            ])
            let answering = try await eventually(timeout: .seconds(60)) {
                (try? await Self.docker.run(["-H", "unix://\(socket)", "version", "--format", "{{.Server.Version}}"])) != nil
            }
            try #require(answering, "dockerd did not come up: \(daemon?.output.suffix(3000) ?? "")")
            let images = try TestEnvironment.temporaryDirectory("docker-btrfs-image")
            let image = try ContainerImageBuilder(executable: try TestExecutables.path("plane-test-server"), name: "plane-test-server", tag: "conformance").build(into: images)
            _ = try await Self.docker.run(["-H", "unix://\(socket)", "load", "-i", image.dockerArchive])
            try? FileManager.default.removeItem(atPath: images)

            var configuration = DockerRuntimeConfiguration()
            configuration.endpoint = socket
            configuration.network = .host
            configuration.writableLayerBytes = 8 << 20
            let made = try await DockerRuntime.make(configuration: configuration, droneID: .random(), logger: Logger(label: "test.docker"))
            runtime = made
            var probes: [HTTPProbe] = []
            for _ in 0..<2 {
                let spec = BackendSpec(backendID: .random(), droneID: made.droneID, image: DockerTestImage.reference,
                                       port: UInt16(try TestEnvironment.freePort()), network: .host(address: "127.0.0.1"))
                started.append(spec.backendID)
                let handle = try await made.start(spec)
                let address = try #require(handle.address)
                let http = HTTPProbe(host: address.host, port: Int(address.port))
                #expect(try await http.waitUntilAnswering("/").body == "Hello World!")
                probes.append(http)
            }
            let (limited, neighbour) = (probes[0], probes[1])
            #expect(try await limited.get("/probe/fill/4").body == "wrote 4")
            let over = try await limited.get("/probe/fill/16").body
            #expect(over.hasPrefix("error: EDQUOT") || over.hasPrefix("error: ENOSPC"), "\(over)")
            #expect(try await neighbour.get("/probe/fill/6").body == "wrote 6", "another backend has a limit of its own")
            #expect(try await limited.waitUntilAnswering("/").body == "Hello World!", "the backend goes on")
        } catch {
            Issue.record("\(error)\ndockerd: \(daemon?.output.suffix(2000) ?? "")")
        }
        if let runtime {
            for backend in started {
                try? await runtime.stop(backend, grace: .zero)
                try? await runtime.remove(backend)
            }
        }
        if let daemon {
            daemon.signal(SIGTERM)
            if await daemon.waitForExit(timeout: .seconds(20)) == nil { kill(-daemon.pid, SIGKILL); _ = await daemon.waitForExit(timeout: .seconds(5)) }
        }
        // Whatever is mounted below the scratch directory, the deepest first: the btrfs
        // image and dockerd's exec root's `netns/default` always (a loaded run once read
        // no mountinfo, so unmounted nothing and left both), and what mountinfo lists.
        var candidates: Set<String> = [mountPoint, "\(scratch)/exec/netns/default"]
        for _ in 0..<5 {
            guard let mounts = BoundedFile.generatedText("/proc/self/mountinfo"), !mounts.isEmpty else { continue }
            for line in mounts.split(separator: "\n") {
                let fields = line.split(separator: " ")
                if fields.count > 4, fields[4].hasPrefix(scratch + "/") { candidates.insert(String(fields[4])) }
            }
            break
        }
        let below = candidates.sorted { $0.count > $1.count }
        for path in below where (try? await SystemProgram("umount", debianPackage: "mount").run([path])) == nil {
            _ = try? await SystemProgram("umount", debianPackage: "mount").run(["-l", path])
        }
        try? FileManager.default.removeItem(atPath: scratch)
        #expect(!FileManager.default.fileExists(atPath: scratch), "the test's directory is left: \(below)")
    }
}
