import ContainerRuntime
import Foundation
@testable import OCIRuntime
import PlaneCore
import ProcessSupervision
import PlaneTestSupport
import Testing

/// What the OCI runtime keeps across drone restarts (a new `OCIRuntime` on the same state
/// directory), its logs, its files, and how it fails.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct OCIRuntimeLifecycleTests {
    func spec(drone: DroneID, image: String, env: [String: String] = [:], limits: ResourceLimitsSpec = ResourceLimitsSpec()) throws -> BackendSpec {
        BackendSpec(backendID: .random(), droneID: drone, image: image, env: env, port: UInt16(try TestEnvironment.freePort()),
                    network: .host(address: "127.0.0.1"), limits: limits)
    }

    func restarted(_ variant: OCIVariant, drone: DroneID, stateDirectory: String) async throws -> OCIRuntime {
        var configuration = OCIRuntimeConfiguration(stateDirectory: stateDirectory)
        configuration.runtime = variant.binary
        configuration.shimExecutable = try TestExecutables.path("plane")
        configuration.network = .host
        return try await OCIRuntime.make(configuration: configuration, droneID: drone, logger: OCITestSetup.logger())
    }

    @Test(arguments: [OCIVariant.runcLayout, .crunLayout])
    func aRestartedDroneReattachesAndLearnsExitsItMissed(_ variant: OCIVariant) async throws {
        let (first, drone, image) = try await OCITestSetup.runtime(variant)
        let state = first.configuration.stateDirectory
        let running = try spec(drone: drone, image: image)
        let ending = try spec(drone: drone, image: image)
        let handle = try await first.start(running)
        let endingHandle = try await first.start(ending)
        let http = HTTPProbe(host: "127.0.0.1", port: Int(running.port))
        _ = try await http.waitUntilAnswering("/")
        let endingHTTP = HTTPProbe(host: "127.0.0.1", port: Int(ending.port))
        _ = try await endingHTTP.waitUntilAnswering("/")

        // "The drone restarts": a new runtime on the same state; meanwhile one backend exits.
        _ = try? await endingHTTP.get("/exit/7")
        let second = try await restarted(variant, drone: drone, stateDirectory: state)
        let listed = try await second.list()
        #expect(Set(listed) == [handle, endingHandle], "list from the runtime's own state")
        #expect(try await second.status(of: running.backendID) == .running(address: handle.address))
        let endingDirectory = second.directory(ending.backendID)
        let learned = try await eventually { try await second.status(of: ending.backendID) == .exited(code: 7) }
        let lastStatus = try? await second.status(of: ending.backendID)
        #expect(learned,
                """
                the missed exit: status \(String(describing: lastStatus)), \
                exit.json \((try? String(contentsOfFile: endingDirectory.exitFile, encoding: .utf8)) ?? "none"), \
                shim.log \((try? String(contentsOfFile: endingDirectory.shimLog, encoding: .utf8)) ?? "none"), \
                output \(((try? String(contentsOfFile: endingDirectory.outputLog, encoding: .utf8)) ?? "none").suffix(600))
                """)

        // Exits of re-attached backends reach the new event stream; logs are all there once.
        let events = second.events()
        try await Task.sleep(for: .milliseconds(200))
        _ = try? await http.get("/exit/5")
        var code: Int32?
        for await event in events where event.backendID == running.backendID {
            if case .exited(let c) = event.kind { code = c; break }
        }
        #expect(code == 5)
        var lines: [LogLine] = []
        for try await line in second.logs(of: running.backendID, follow: true) { lines.append(line) }
        #expect(lines.filter { $0.text.contains("listening on") }.count == 1)
        #expect(lines.contains { $0.text.contains("GET /exit/5") })
        let times = lines.compactMap(\.time)
        #expect(times.count == lines.count && times == times.sorted() && Set(times).count == times.count, "timestamps strictly increase")

        for backend in [running.backendID, ending.backendID] { try await second.remove(backend) }
        #expect(try await second.list().isEmpty)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: "\(state)/backends")
        #expect(leftovers.isEmpty, "removed backends leave no files: \(leftovers)")
        #expect(!FileManager.default.fileExists(atPath: "/sys/fs/cgroup/memory/plane/\(running.backendID)"), "the cgroup is gone")
    }

    /// The default `auto` picks crun where it is installed (CI installs both); a drone
    /// restarted with the other binary still stops and removes what the first one started.
    @Test(arguments: [(OCIVariant.runcLayout, OCIVariant.crunLayout), (.crunLayout, .runcLayout)])
    func aDroneRestartedWithTheOtherBinaryStillEndsItsBackends(_ first: OCIVariant, _ then: OCIVariant) async throws {
        let cgroups = CgroupLayout.detect()
        let root = try TestEnvironment.temporaryDirectory("oci-auto")
        #expect(try await OCIRuntimeBinary.locate("auto", root: root, cgroups: cgroups).flavor == .crun)

        let (before, drone, image) = try await OCITestSetup.runtime(first)
        let state = before.configuration.stateDirectory
        let backend = try spec(drone: drone, image: image)
        let handle = try await before.start(backend)
        _ = try await HTTPProbe(host: "127.0.0.1", port: Int(backend.port)).waitUntilAnswering("/")
        let record = try #require(OCIRuntime.record(in: before.directory(backend.backendID)))
        #expect(record.runtimeFlavor == first.binary && record.runtimeBinary?.hasSuffix("/\(first.binary)") == true)

        let after = try await restarted(then, drone: drone, stateDirectory: state)
        #expect(after.binary.flavor.rawValue == then.binary)
        #expect(try await after.list() == [handle])
        #expect(try await after.binary(of: backend.backendID).flavor.rawValue == first.binary)
        try await after.stop(backend.backendID, grace: .seconds(5))
        let stopped = try await after.status(of: backend.backendID)
        #expect(stopped == .exited(code: 0), "\(stopped); shim.log: \((try? String(contentsOfFile: after.directory(backend.backendID).shimLog, encoding: .utf8)) ?? "none")")
        try await after.remove(backend.backendID)
        #expect(try await after.list().isEmpty)
        // The first binary's own state of the container is gone too.
        let firstBinary = try await OCIRuntimeBinary.locate(first.binary, root: "\(state)/runtime-root", cgroups: cgroups)
        #expect(try await firstBinary.list().isEmpty)
    }

    @Test func outputGoesToTheLogWithStreamsAndFollowEndsWithTheBackend() async throws {
        let (runtime, drone, image) = try await OCITestSetup.runtime(.runcLayout)
        let spec = try spec(drone: drone, image: image, env: ["EXIT_CODE": "0", "EXIT_TIMEOUT": "300"])
        _ = try await runtime.start(spec)
        var lines: [LogLine] = []
        for try await line in runtime.logs(of: spec.backendID, follow: true) { lines.append(line) }
        #expect(lines.map(\.text) == ["plane-test-server: exiting with code 0 after 300 ms"])
        #expect(lines.first?.stream == .stdout)
        #expect(try await runtime.status(of: spec.backendID) == .exited(code: 0))
        try await runtime.remove(spec.backendID)
        await #expect(throws: RuntimeError.self) {
            for try await _ in runtime.logs(of: spec.backendID, follow: false) {}
        }
    }

    @Test func aMissingEntrypointFailsTheStartWithTheRuntimesMessageAndLeavesNothing() async throws {
        let (runtime, drone, _) = try await OCITestSetup.runtime(.runcLayout)
        let state = runtime.configuration.stateDirectory
        // An image whose command cannot run: the layout's config points at a missing binary.
        let broken = try spec(drone: drone, image: try await OCITestImageVariants.missingEntrypoint())
        await #expect {
            _ = try await runtime.start(broken)
        } throws: { error in
            guard let error = error as? RuntimeError else { return false }
            return error.message.contains("runc run failed") && error.message.contains("no-such-binary")
        }
        #expect(try await runtime.status(of: broken.backendID) == .unknown)
        #expect(try FileManager.default.contentsOfDirectory(atPath: "\(state)/backends").isEmpty)
        #expect(try await runtime.list().isEmpty)
    }

    @Test func aReadOnlyRootGetsATmpfsTmp() async throws {
        let (runtime, drone, image) = try await OCITestSetup.runtime(.runcLayout) { $0.readOnlyRoot = true }
        let spec = try spec(drone: drone, image: image)
        _ = try await runtime.start(spec)
        let http = HTTPProbe(host: "127.0.0.1", port: Int(spec.port))
        #expect(try await http.waitUntilAnswering("/").body == "Hello World!")
        let config = try JSONDecoder().decode(OCIRuntimeSpec.self, from: Data(contentsOf: URL(fileURLWithPath: runtime.directory(spec.backendID).configFile)))
        #expect(config.root.readonly)
        #expect(config.mounts.contains { $0.destination == "/tmp" && $0.type == "tmpfs" })
        try await runtime.stop(spec.backendID, grace: .seconds(2))
        try await runtime.remove(spec.backendID)
    }

    @Test func withoutOverlayEachBackendGetsACopy() async throws {
        let (runtime, drone, image) = try await OCITestSetup.runtime(.runcLayout) { $0.useOverlay = false }
        let spec = try spec(drone: drone, image: image)
        _ = try await runtime.start(spec)
        #expect(try await HTTPProbe(host: "127.0.0.1", port: Int(spec.port)).waitUntilAnswering("/").body == "Hello World!")
        let directory = runtime.directory(spec.backendID)
        #expect(!RootFilesystem.isMountPoint(directory.rootfs))
        #expect(FileManager.default.isExecutableFile(atPath: "\(directory.rootfs)/usr/local/bin/plane-test-server"))
        #expect(OCIRuntime.record(in: directory)?.overlayRoot == false)
        try await runtime.stop(spec.backendID, grace: .seconds(2))
        try await runtime.remove(spec.backendID)
        #expect(!FileManager.default.fileExists(atPath: directory.path))
    }
}

/// The standby shim: loaded ahead of need, it runs the next start; a dead one is replaced
/// by a cold start; none without `standby_shim`.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct OCIStandbyShimTests {
    /// Whether `pid` is a live (not zombie) `plane oci-shim --standby` process.
    static func isWaitingStandby(_ pid: pid_t) -> Bool {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline"),
              let stat = BoundedFile.generatedText("/proc/\(pid)/stat") else { return false }
        let arguments = data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        let state = stat[stat.index(after: stat.lastIndex(of: ")")!)...].split(separator: " ").first
        return arguments.suffix(2) == ["oci-shim", OCIShim.standbyFlag] && state != "Z"
    }

    static func describe(_ pid: pid_t) -> String {
        let arguments = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline").map { $0.split(separator: 0).map { String(decoding: $0, as: UTF8.self) } }
        let stat = BoundedFile.generatedText("/proc/\(pid)/stat")
        return "pid \(pid): \(arguments ?? []) \(stat ?? "no stat")"
    }

    func spec(drone: DroneID, image: String) throws -> BackendSpec {
        BackendSpec(backendID: .random(), droneID: drone, image: image, port: UInt16(try TestEnvironment.freePort()), network: .host(address: "127.0.0.1"))
    }

    func shimPID(_ runtime: OCIRuntime, _ backend: BackendID) -> pid_t? {
        (try? String(contentsOfFile: runtime.directory(backend).shimPIDFile, encoding: .utf8)).flatMap { pid_t($0) }
    }

    @Test func theStandbyRunsTheNextStartAndIsReplaced() async throws {
        let (runtime, drone, image) = try await OCITestSetup.runtime(.runcLayout)
        let standby = try #require(runtime.standbyShimPID, "a standby shim waits after make")
        // Right after posix_spawn returns, the child may still be inside execve (its
        // command line not yet set up).
        #expect(try await eventually(timeout: .seconds(5)) { Self.isWaitingStandby(standby) }, "\(Self.describe(standby))")
        let first = try spec(drone: drone, image: image)
        _ = try await runtime.start(first)
        _ = try await HTTPProbe(host: "127.0.0.1", port: Int(first.port)).waitUntilAnswering("/")
        #expect(shimPID(runtime, first.backendID) == standby, "the backend's shim is the standby")
        #expect(OCIRuntime.isAlive(shimOf: runtime.directory(first.backendID)),
                "the standby is known as the backend's shim (by its working directory; its command line names no bundle)")
        let next = try #require(runtime.standbyShimPID, "another standby waits")
        #expect(next != standby)
        #expect(try await eventually(timeout: .seconds(5)) { Self.isWaitingStandby(next) }, "\(Self.describe(next))")

        // A standby that died: the start falls back to a shim started for it.
        kill(next, SIGKILL)
        try await Task.sleep(for: .milliseconds(100))
        let second = try spec(drone: drone, image: image)
        _ = try await runtime.start(second)
        #expect(try await HTTPProbe(host: "127.0.0.1", port: Int(second.port)).waitUntilAnswering("/").status == 200)
        let secondShim = try #require(shimPID(runtime, second.backendID))
        #expect(secondShim != next && kill(secondShim, 0) == 0)
        let third = try #require(runtime.standbyShimPID, "and a new standby waits")
        #expect(third != next)
        #expect(try await eventually(timeout: .seconds(5)) { Self.isWaitingStandby(third) }, "\(Self.describe(third))")
        #expect(try await eventually { kill(next, 0) != 0 }, "the dead standby is reaped")
        for backend in [first, second] {
            try await runtime.stop(backend.backendID, grace: .seconds(2))
            try await runtime.remove(backend.backendID)
        }
    }

    @Test func withoutStandbyShimNoneWaits() async throws {
        let (runtime, drone, image) = try await OCITestSetup.runtime(.runcLayout) { $0.standbyShim = false }
        #expect(runtime.standbyShimPID == nil)
        let backend = try spec(drone: drone, image: image)
        _ = try await runtime.start(backend)
        #expect(try await HTTPProbe(host: "127.0.0.1", port: Int(backend.port)).waitUntilAnswering("/").status == 200)
        #expect(runtime.standbyShimPID == nil)
        try await runtime.stop(backend.backendID, grace: .seconds(2))
        try await runtime.remove(backend.backendID)
    }
}

/// Layouts derived from the test server's.
enum OCITestImageVariants {
    /// A copy of the test server layout whose entrypoint does not exist.
    static func missingEntrypoint() async throws -> String {
        let source = try await OCITestImage.shared.layout()
        let layout = try TestEnvironment.temporaryDirectory("oci-broken-layout")
        try FileManager.default.removeItem(atPath: layout)
        try FileManager.default.copyItem(atPath: source, toPath: layout)
        func blob(_ digest: String) -> String { "\(layout)/blobs/sha256/\(digest.dropFirst("sha256:".count))" }
        func json(_ path: String) throws -> [String: Any] {
            try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
        }
        func store(_ object: [String: Any]) throws -> (digest: String, size: Int) {
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
            let digest = "sha256:" + OCIDigest.sha256(of: Array(data)).hex
            try data.write(to: URL(fileURLWithPath: blob(digest)))
            return (digest, data.count)
        }
        var index = try json("\(layout)/index.json")
        var descriptors = try #require(index["manifests"] as? [[String: Any]])
        var manifest = try json(blob(try #require(descriptors[0]["digest"] as? String)))
        var configDescriptor = try #require(manifest["config"] as? [String: Any])
        var config = try json(blob(try #require(configDescriptor["digest"] as? String)))
        var process = config["config"] as? [String: Any] ?? [:]
        process["Entrypoint"] = ["/no-such-binary"]
        process["Cmd"] = nil
        config["config"] = process
        let newConfig = try store(config)
        configDescriptor["digest"] = newConfig.digest
        configDescriptor["size"] = newConfig.size
        manifest["config"] = configDescriptor
        let newManifest = try store(manifest)
        descriptors[0]["digest"] = newManifest.digest
        descriptors[0]["size"] = newManifest.size
        index["manifests"] = [descriptors[0]]
        try JSONSerialization.data(withJSONObject: index).write(to: URL(fileURLWithPath: "\(layout)/index.json"))
        return "oci-layout:\(layout):\(OCITestImage.tag)"
    }
}
