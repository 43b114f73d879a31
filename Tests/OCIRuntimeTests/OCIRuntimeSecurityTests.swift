import ContainerRuntime
import Foundation
@testable import OCIRuntime
import PlaneCore
import PlaneTestSupport
import ProcessSupervision
import Testing

/// The sandbox as seen from inside a running backend (the test server's `/probe/…`
/// endpoints), with runc and with crun.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct OCIRuntimeSecurityTests {
    static let variants: [OCIVariant] = [.runcLayout, .crunLayout]

    /// Docker's default capability set without CAP_NET_RAW (bit 13) as /proc/self/status
    /// shows it.
    static let dockerCapabilities = "00000000a80405fb"

    func start(_ runtime: OCIRuntime, _ spec: BackendSpec) async throws -> HTTPProbe {
        let handle = try await runtime.start(spec)
        let address = try #require(handle.address)
        let http = HTTPProbe(host: address.host, port: Int(address.port))
        _ = try await http.waitUntilAnswering("/")
        return http
    }

    func spec(_ runtime: OCIRuntime, drone: DroneID, image: String, limits: ResourceLimitsSpec = ResourceLimitsSpec()) throws -> BackendSpec {
        BackendSpec(backendID: .random(), droneID: drone, image: image, port: UInt16(try TestEnvironment.freePort()),
                    network: .host(address: "127.0.0.1"), limits: limits)
    }

    /// Starts the backend, has it allocate `mebibytes`, and returns its events up to its exit.
    func allocationEvents(_ runtime: OCIRuntime, _ spec: BackendSpec, mebibytes: Int) async throws -> [RuntimeEvent.Kind] {
        let events = runtime.events()
        let http = try await start(runtime, spec)
        _ = try? await http.get("/probe/allocate/\(mebibytes)")
        var kinds: [RuntimeEvent.Kind] = []
        for await event in events where event.backendID == spec.backendID {
            kinds.append(event.kind)
            if case .exited = event.kind { break }
        }
        return kinds
    }

    func cleanUp(_ runtime: OCIRuntime, _ backend: BackendID) async {
        try? await runtime.stop(backend, grace: .seconds(1))
        try? await runtime.remove(backend)
    }

    @Test(arguments: variants)
    func privilegedOperationsFailAndCapabilitiesAreDockers(_ variant: OCIVariant) async throws {
        let (runtime, drone, image) = try await OCITestSetup.runtime(variant)
        let spec = try spec(runtime, drone: drone, image: image)
        defer { Task { await cleanUp(runtime, spec.backendID) } }
        let http = try await start(runtime, spec)
        let body = try await http.get("/probe/sandbox").body
        let probe = try #require(try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: String], "probe answered \(body)")
        #expect(probe["unshare"] == "EPERM")
        #expect(probe["keyctl"] == "EPERM")
        #expect(probe["mount"] == "EPERM")
        for set in ["CapEff", "CapPrm", "CapBnd"] { #expect(probe[set] == Self.dockerCapabilities, "\(set)") }
        #expect(probe["CapInh"] == "0000000000000000")
        #expect(probe["CapAmb"] == "0000000000000000")
        #expect(probe["NoNewPrivs"] == "1")
        #expect(probe["Seccomp"] == "2", "a seccomp filter is in force")
        // The OOM killer takes a backend before the drone.
        #expect(try await http.get("/probe/read/proc/self/oom_score_adj").body == "500\n")
        // crun is handed the filter compiled once by the drone (and loads it instead of the
        // profile); runc compiles linux.seccomp itself. Both keep linux.seccomp.
        let configuration = try JSONDecoder().decode(OCIRuntimeSpec.self, from: Data(contentsOf: URL(fileURLWithPath: runtime.directory(spec.backendID).configFile)))
        #expect(configuration.linux.seccomp != nil)
        let compiled = configuration.annotations?[SeccompFilter.crunAnnotation]
        // The shim ran crun in a private mount namespace on this hybrid host (crun refuses
        // to run otherwise) without the wrapper's programs, and went back to the drone's.
        let directory = runtime.directory(spec.backendID)
        let shim = try JSONDecoder().decode(OCIShimConfiguration.self, from: Data(contentsOf: URL(fileURLWithPath: directory.shimConfigurationFile)))
        #expect(shim.runCommand.first?.hasSuffix("/\(variant.binary)") == true, "\(shim.runCommand)")
        #expect((shim.privateNamespaceDetach != nil) == (variant.binary == "crun" && CgroupLayout.detect().mode == .hybrid))
        let shimPID = try String(contentsOfFile: directory.shimPIDFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(shimPID)/ns/mnt") == FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/ns/mnt"))
        // In its backend's directory still (setns had moved it to the root), by which the
        // drone knows it for the backend's shim: the exit code of a backend whose shim was
        // not recognised was lost.
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(shimPID)/cwd") == directory.path)
        #expect(OCIRuntime.isAlive(shimOf: directory))
        if variant.binary == "crun" {
            let program = try #require(compiled.flatMap { Data(base64Encoded: $0) })
            #expect(Array(program) == (try SeccompFilter(compiling: try #require(configuration.linux.seccomp)).program))
        } else {
            #expect(compiled == nil)
        }
        await cleanUp(runtime, spec.backendID)
    }

    @Test(arguments: variants)
    func aForkBombStopsAtThePidsLimit(_ variant: OCIVariant) async throws {
        let (runtime, drone, image) = try await OCITestSetup.runtime(variant)
        let spec = try spec(runtime, drone: drone, image: image, limits: ResourceLimitsSpec(pidsLimit: 40))
        defer { Task { await cleanUp(runtime, spec.backendID) } }
        let http = try await start(runtime, spec)
        var slow = http
        slow.timeout = .seconds(60)
        let body = try await slow.get("/probe/spawn/400").body
        let result = try #require(try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: String], "probe answered \(body)")
        let started = try #require(Int(result["started"] ?? ""))
        #expect(started < 40, "the pids limit (40, threads included) stops the children: \(body)")
        #expect(result["error"] == "EAGAIN")
        // The backend and the runtime go on.
        #expect(try await http.waitUntilAnswering("/").body == "Hello World!")
        #expect(try await runtime.status(of: spec.backendID).isRunning)
        let other = try self.spec(runtime, drone: drone, image: image)
        _ = try await start(runtime, other)
        await cleanUp(runtime, other.backendID)
        await cleanUp(runtime, spec.backendID)
    }

    @Test(arguments: variants)
    func exceedingTheMemoryLimitIsAnOOMKillOnTheEventStream(_ variant: OCIVariant) async throws {
        let (runtime, drone, image) = try await OCITestSetup.runtime(variant)
        let spec = try spec(runtime, drone: drone, image: image, limits: ResourceLimitsSpec(memoryBytes: 64 << 20))
        defer { Task { await cleanUp(runtime, spec.backendID) } }
        #expect(try await allocationEvents(runtime, spec, mebibytes: 512) == [.outOfMemory, .exited(code: 137)])
        #expect(try await runtime.status(of: spec.backendID) == .killed(signal: SIGKILL, outOfMemory: true))
        await cleanUp(runtime, spec.backendID)
    }

    /// `writable_layer_bytes`: what a backend writes to its root stops at its own limit
    /// (EDQUOT), another backend has a limit of its own; on a filesystem that cannot hold
    /// the limit the runtime refuses to start, saying what it needs. The filesystem is a
    /// btrfs image of this test's own with quotas enabled, mounted on a loop device.
    @Test func aBackendsWritableLayerStopsAtItsLimit() async throws {
        let scratch = try TestEnvironment.temporaryDirectory("oci-quota")
        let plain = try TestEnvironment.temporaryDirectory("oci-no-quota")
        if RootFilesystem.writableLayerLimitProblem(in: plain) != nil {
            await #expect { _ = try await OCITestSetup.runtime(.crunLayout) { $0.stateDirectory = plain; $0.writableLayerBytes = 8 << 20 } } throws: {
                guard let error = $0 as? RuntimeError else { return false }
                return error.code == .unavailable && error.message.contains("writable_layer_bytes") && error.message.contains("btrfs")
            }
        }
        let mountPoint = "\(scratch)/mnt"
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        _ = try await SystemProgram("truncate", debianPackage: "coreutils").run(["-s", "1G", "\(scratch)/fs.img"])
        _ = try await SystemProgram("mkfs.btrfs", debianPackage: "btrfs-progs").run(["-q", "-f", "\(scratch)/fs.img"])
        _ = try await SystemProgram("mount", debianPackage: "mount").run(["-o", "loop", "\(scratch)/fs.img", mountPoint])
        var started: [BackendID] = []
        var runtime: OCIRuntime?
        do {
            // Without quotas enabled, refused with what to do.
            await #expect { _ = try await OCITestSetup.runtime(.crunLayout) { $0.stateDirectory = "\(mountPoint)/oci"; $0.writableLayerBytes = 8 << 20 } } throws: {
                ($0 as? RuntimeError)?.message.contains("btrfs quota enable") ?? false
            }
            _ = try await SystemProgram("btrfs", debianPackage: "btrfs-progs").run(["quota", "enable", mountPoint])
            let (made, drone, image) = try await OCITestSetup.runtime(.crunLayout) {
                $0.stateDirectory = "\(mountPoint)/oci"
                $0.writableLayerBytes = 8 << 20
                $0.standbyShim = false
            }
            runtime = made
            let limited = try spec(made, drone: drone, image: image)
            let other = try spec(made, drone: drone, image: image)
            started = [limited.backendID, other.backendID]
            let http = try await start(made, limited)
            let neighbour = try await start(made, other)
            #expect(try await http.get("/probe/fill/4").body == "wrote 4")
            let over = try await http.get("/probe/fill/16").body
            #expect(over.hasPrefix("error: EDQUOT"), "\(over)")
            #expect(try await neighbour.get("/probe/fill/6").body == "wrote 6", "another backend has a limit of its own")
            #expect(try await http.waitUntilAnswering("/").body == "Hello World!", "the backend goes on")
        } catch {
            Issue.record("\(error)")
        }
        if let runtime { for backend in started { await cleanUp(runtime, backend) } }
        runtime = nil
        if (try? await SystemProgram("umount", debianPackage: "mount").run([mountPoint])) == nil {
            _ = try? await SystemProgram("umount", debianPackage: "mount").run(["-l", mountPoint])
        }
        try? FileManager.default.removeItem(atPath: scratch)
    }

    /// A spawn without a memory limit of its own gets the drone's (`memory_limit_bytes`):
    /// a backend allocating beyond it is OOM-killed and the drone goes on.
    @Test func aSpawnWithoutAMemoryLimitStopsAtTheDronesDefault() async throws {
        let (runtime, drone, image) = try await OCITestSetup.runtime(.crunLayout) { $0.defaultMemoryBytes = 64 << 20 }
        let spec = try spec(runtime, drone: drone, image: image)
        #expect(spec.limits.memoryBytes == nil)
        defer { Task { await cleanUp(runtime, spec.backendID) } }
        #expect(try await allocationEvents(runtime, spec, mebibytes: 512) == [.outOfMemory, .exited(code: 137)])
        let other = try self.spec(runtime, drone: drone, image: image)
        _ = try await start(runtime, other)
        let sample = try await runtime.stats(of: other.backendID)
        #expect(sample.memoryLimitBytes == 64 << 20, "the limit shows in the backend's stats")
        await cleanUp(runtime, other.backendID)
        await cleanUp(runtime, spec.backendID)
    }
}
