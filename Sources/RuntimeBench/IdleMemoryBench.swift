import Foundation
import NATS
import PlaneCore
import PlaneMessaging
import PlaneTestSupport
import Synchronization

/// The drone's memory per idle backend: a real `plane drone` on a real nats-server is sent
/// `count` spawn requests; once every backend is `Ready` and the drone has settled, its
/// resident memory is compared with its idle level. With the oci runtime each backend also
/// has a shim process (`plane oci-shim`), measured on its own (proportional set size, as
/// the shims share the plane executable's pages).
struct IdleMemoryBench {
    let plane: String
    let runtime: String
    let image: String
    let count: Int

    /// What one run measured.
    struct Result: Sendable {
        var idleKiB: Int
        var loadedKiB: Int
        var shims: Int
        var shimPSSKiB: Double
        var shimRSSKiB: Double
        var shimThreads: Int
        var startAllSeconds: Double
    }

    func run() async throws -> [String: Any] {
        let result = try await measure()
        return [
            "runtime": runtime, "backends": count,
            "drone_idle_rss_kib": result.idleKiB, "drone_loaded_rss_kib": result.loadedKiB,
            "drone_kib_per_backend": Double(result.loadedKiB - result.idleKiB) / Double(count),
            "shims": result.shims, "shim_pss_kib_mean": result.shimPSSKiB, "shim_rss_kib_mean": result.shimRSSKiB,
            "shim_threads_max": result.shimThreads,
            "start_all_seconds": result.startAllSeconds,
        ]
    }

    private func measure() async throws -> Result {
        let directory = try TestEnvironment.temporaryDirectory("bench-idle-memory")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let drone = DroneID.random()
        return try await withNATSServer { server in
            let client = try await server.connectedClient()
            let messenger = PlaneMessenger(client: client)
            let ready = Mutex<Set<BackendID>>([])
            let failed = Mutex<[String]>([])
            let subscription = try await messenger.subscribe(PlaneSubjects.updateBackendStateAll)
            let relay = Task {
                for await delivery in subscription {
                    guard case .success(let update) = delivery.message else { continue }
                    if update.state == .ready { _ = ready.withLock { $0.insert(update.backend) } }
                    if update.state.isTerminal, update.state != .swept, update.state != .terminated {
                        failed.withLock { $0.append("\(update.backend): \(update.state)") }
                    }
                    _ = try? await delivery.respond(NullReply())
                }
            }
            defer { relay.cancel() }
            let oci = runtime == "docker" ? "" : "runtime = \"oci\"\n[agent.oci]\nruntime = \"\(runtime == "oci-crun" ? "crun" : "runc")\"\nshim = \"\(plane)\"\n"
            let config = try DroneConfigFile.write(in: directory, drone: drone.rawValue, nats: server.url, ports: "24000-24999", extra: """
                drain_on_shutdown = true
                startup_timeout_secs = 600
                \(oci)
                """)
            let statuses = try await messenger.subscribe(PlaneSubjects.droneStatusAll)
            let child = try ChildProcess(plane, arguments: ["drone", config])
            // Idle level: connected (its first status message), nothing running, a few
            // seconds to settle.
            let clock = ContinuousClock()
            let connected = Task {
                for await delivery in statuses { if case .success(let status) = delivery.message, status.droneID == drone { return true } }
                return false
            }
            let watchdog = Task { try await Task.sleep(for: .seconds(60)); connected.cancel() }
            guard await connected.value else { throw BenchError("the drone did not come up: \(child.output.suffix(2000))") }
            watchdog.cancel()
            try await Task.sleep(for: .seconds(5))
            let idle = try Self.residentKiB(child.pid)
            let requests = (0..<count).map { _ in
                SpawnRequest(cluster: "plane.test", droneID: drone, maxIdleSeconds: 3600, backendID: .random(),
                             executable: DockerExecutableConfig(image: image))
            }
            let began = clock.now
            for request in requests {
                guard try await messenger.request(PlaneSubjects.spawn(drone), request, timeout: .seconds(30)) else {
                    throw BenchError("the drone refused a spawn: \(child.output.suffix(2000))")
                }
            }
            let wanted = Set(requests.map(\.backendID))
            while !wanted.isSubset(of: ready.withLock { $0 }) {
                if let failure = failed.withLock({ $0.first }) { throw BenchError("a backend failed: \(failure)") }
                guard clock.now < began + .seconds(900) else { throw BenchError("not all backends became ready in 15 minutes") }
                try await Task.sleep(for: .milliseconds(500))
            }
            let startAll = clock.now - began
            try await Task.sleep(for: .seconds(10))
            let loaded = try Self.residentKiB(child.pid)
            let shims = Self.shimProcesses(stateDirectory: directory + "/state")
            let shimPSS = shims.compactMap { Self.proportionalKiB($0) }
            let shimRSS = shims.compactMap { try? Self.residentKiB($0) }
            let shimThreads = shims.map { ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/\($0)/task")) ?? []).count }.max() ?? 0
            child.signal(SIGTERM)
            let code = await child.waitForExit(timeout: .seconds(600))
            guard code == 0 else { throw BenchError("the drone did not drain and stop cleanly (\(String(describing: code))): \(child.output.suffix(2000))") }
            func mean(_ values: [Int]) -> Double { values.isEmpty ? 0 : Double(values.reduce(0, +)) / Double(values.count) }
            return Result(idleKiB: idle, loadedKiB: loaded, shims: shims.count, shimPSSKiB: mean(shimPSS), shimRSSKiB: mean(shimRSS),
                          shimThreads: shimThreads,
                          startAllSeconds: Double(startAll.components.seconds) + Double(startAll.components.attoseconds) / 1e18)
        }
    }

    /// `VmRSS` of `pid`, in KiB.
    static func residentKiB(_ pid: Int32) throws -> Int {
        let status = String(decoding: try BoundedFile.readGenerated("/proc/\(pid)/status"), as: UTF8.self)
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
              let value = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") else {
            throw BenchError("no VmRSS for \(pid)")
        }
        return value
    }

    /// `Pss` of `pid` from `smaps_rollup`, in KiB.
    static func proportionalKiB(_ pid: Int32) -> Int? {
        guard let rollup = BoundedFile.generatedText("/proc/\(pid)/smaps_rollup"),
              let line = rollup.split(separator: "\n").first(where: { $0.hasPrefix("Pss:") }) else { return nil }
        return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
    }

    /// The shims of the oci runtime's backends (their `shim.pid` files; a shim that started
    /// as the standby has no bundle on its command line).
    static func shimProcesses(stateDirectory: String) -> [Int32] {
        let backends = "\(stateDirectory)/oci/backends"
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: backends)) ?? []
        return entries.compactMap { entry -> Int32? in
            guard let text = try? String(contentsOfFile: "\(backends)/\(entry)/shim.pid", encoding: .utf8),
                  let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)), kill(pid, 0) == 0 else { return nil }
            return pid
        }
    }
}
