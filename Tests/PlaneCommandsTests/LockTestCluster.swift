import Foundation
import NATS
import PlaneController
import PlaneCore
import PlaneMessaging
import PlaneTestSupport
import Synchronization
import Testing

/// A cluster of real processes for the lock tests: nats-server, `plane controller`s, and
/// `plane drone`s that each reach NATS through a `NetworkRelay` the test can partition.
/// Backends carry `PLANE_TEST_LOCK={lock}` in their environment (and the drone adds
/// `PLANE_FENCING_TOKEN`), so a watcher that reads `/proc` every 0.5 s sees which processes
/// run for which lock, whatever the runtime.
final class LockTestCluster: Sendable {
    enum Runtime: String, Sendable, CaseIterable {
        /// The reference plugin `runtimes/process`: backends are plain host processes.
        case process
        case docker
    }

    struct Drone: Sendable {
        let id: DroneID
        /// Between the drone and the first NATS server; nil for a drone that is given every
        /// server of a NATS cluster.
        let relay: NetworkRelay?
        let config: String
        let child: ChildProcess
        var isPartitioned: Bool { relay?.isPartitioned ?? false }
    }

    /// A moment at which one lock ran in more than one process.
    struct Violation: Sendable, CustomStringConvertible {
        let lock: String
        let tokens: Set<String>
        let at: Duration
        var description: String { "\(lock) ran as \(tokens.sorted()) at \(at)" }
    }

    static let leaseKeys = "lease_renew_secs = 1\nlease_soft_secs = 2\nlease_hard_secs = 4\ndrain_on_shutdown = true"
    /// `[scheduler]` of the controllers: locks are reassigned 8 s after the last renewal
    /// seen (lease_hard 4 s + margin 2 s, and 2 s more).
    static let reassignAfter: Duration = .seconds(8)
    /// `lease_renew_secs` of the drones.
    static let renewInterval: Duration = .seconds(1)
    static let droneLostGrace: Duration = .seconds(10)

    /// The NATS servers (one, or the nodes of a NATS cluster); the test's client uses the first.
    let servers: [NATSServerProcess]
    /// `[scheduler] replicas` of the controllers.
    let replicas: Int
    let runtime: Runtime
    let image: String
    let client: NATSClient
    let messenger: PlaneMessenger
    /// Every lock of this test starts with it (tests run side by side on one machine).
    let prefix = "lk\(UInt32.random(in: 0...UInt32.max))-"
    let started = ContinuousClock.now
    private let controllers = Mutex<[ChildProcess]>([])
    private let drones = Mutex<[Drone]>([])
    private let violations = Mutex<[Violation]>([])
    private let watcher = Mutex<Task<Void, Never>?>(nil)
    private let nextPorts = Mutex(0)
    private let basePort: Int

    init(servers: [NATSServerProcess], runtime: Runtime, basePort: Int, replicas: Int = 1) async throws {
        self.servers = servers
        self.replicas = replicas
        self.runtime = runtime
        self.basePort = basePort
        switch runtime {
        case .process: image = try TestExecutables.path("plane-test-server")
        case .docker: image = try await DockerTestImage.shared.ensureLoaded()
        }
        client = try await servers[0].connectedClient { $0.servers = servers.map(\.serverURL) }
        messenger = PlaneMessenger(client: client)
    }

    convenience init(server: NATSServerProcess, runtime: Runtime, basePort: Int) async throws {
        try await self.init(servers: [server], runtime: runtime, basePort: basePort)
    }

    var natsHosts: String { servers.map { "\"\($0.url)\"" }.joined(separator: ", ") }

    var droneList: [Drone] { drones.withLock { $0 } }

    // MARK: Processes

    @discardableResult
    func startController() throws -> ChildProcess {
        let directory = try TestEnvironment.temporaryDirectory("lock-controller")
        let path = directory + "/controller.toml"
        try """
            [nats]
            hosts = [\(natsHosts)]
            [scheduler]
            replicas = \(replicas)
            lock_reassign_after_secs = \(Self.reassignAfter.components.seconds)
            lease_margin_secs = 2
            drone_lost_grace_secs = \(Self.droneLostGrace.components.seconds)
            spawn_timeout_secs = 5
            """.write(toFile: path, atomically: true, encoding: .utf8)
        let child = try ChildProcess(try TestExecutables.path("plane"), arguments: ["controller", path])
        controllers.withLock { $0.append(child) }
        return child
    }

    var controllerList: [ChildProcess] { controllers.withLock { $0 } }

    /// A drone behind a relay to the first server (`relayed`), or given every server.
    @discardableResult
    func startDrone(relayed: Bool = true) async throws -> Drone {
        let id = DroneID.random()
        let relay = relayed ? try await NetworkRelay(to: .tcp(host: "127.0.0.1", port: servers[0].port)) : nil
        let index = nextPorts.withLock { value in defer { value += 1 }; return value }
        let low = basePort + index * 50
        var extra = Self.leaseKeys
        if runtime == .process { extra += "\nruntime = \"process\"\nruntimes_dir = \"\(PythonEnvironment.packageRoot)/runtimes\"" }
        let config = try DroneConfigFile.write(in: try TestEnvironment.temporaryDirectory("lock-drone"), drone: id.rawValue,
                                               natsHosts: relay.map { [$0.natsURL] } ?? servers.map(\.url), ports: "\(low)-\(low + 49)", extra: extra)
        let child = try ChildProcess(try TestExecutables.path("plane"), arguments: ["drone", config])
        let drone = Drone(id: id, relay: relay, config: config, child: child)
        drones.withLock { $0.append(drone) }
        return drone
    }

    /// Waits until every drone has renewed its lease with a controller (the lease bucket has
    /// an entry for it) and sent a heartbeat.
    func waitUntilDronesAreLeased() async throws {
        let leases = try await messenger.jetStream.existingKeyValueWaiting(ControllerStore.leasesBucket)
        for drone in droneList {
            #expect(try await eventually(timeout: .seconds(60)) { (try? await leases.get(drone.id.rawValue)) != nil },
                    "drone \(drone.id) took no lease: \(drone.child.output.suffix(3000))")
        }
    }

    func stopAll() async {
        watcher.withLock { $0?.cancel() }
        for drone in droneList {
            drone.relay?.heal()
            drone.child.signal(SIGTERM)
        }
        for drone in droneList {
            if await drone.child.waitForExit(timeout: .seconds(30)) == nil { drone.child.signal(SIGKILL) }
            await drone.relay?.close()
        }
        for controller in controllerList {
            controller.signal(SIGTERM)
            if await controller.waitForExit(timeout: .seconds(15)) == nil { controller.signal(SIGKILL) }
        }
        // Whatever a killed drone left behind ends by its pid.
        for holder in Self.runningLockHolders(prefix: prefix) { kill(holder.pid, SIGKILL) }
        if runtime == .docker {
            let docker = SystemProgram("docker", debianPackage: "docker.io")
            for drone in droneList {
                let ids = (try? await docker.run(["ps", "-aq", "--filter", "label=dev.plane.drone=\(drone.id)"])) ?? ""
                for id in ids.split(separator: "\n") { _ = try? await docker.run(["rm", "-f", String(id)]) }
            }
        }
        await client.close()
    }

    // MARK: Requests

    /// Schedules a backend holding `lock`; `marker` (default: the lock) goes into its
    /// `PLANE_TEST_LOCK`, so the watcher sees backends without a lock too.
    func schedule(lock: String?, marker: String? = nil, timeout: Duration = .seconds(15)) async throws -> ScheduleResponse {
        var executable = DockerExecutableConfig(image: image)
        if let marker = marker ?? lock { executable.env["PLANE_TEST_LOCK"] = prefix + marker }
        let request = ScheduleRequest(cluster: "plane.test", maxIdleSeconds: 3600, executable: executable, lock: lock.map { try! LockName(prefix + $0) })
        return try await messenger.request(PlaneSubjects.schedule("plane.test"), request, timeout: timeout)
    }

    func drain(_ drone: Drone, _ drain: Bool) async throws {
        _ = try await messenger.request(PlaneSubjects.drain("plane.test", drone.id), DrainDrone(drone: drone.id, cluster: "plane.test", drain: drain), timeout: .seconds(5))
    }

    /// The backend holding `lock` in `plane_locks`, with its fencing token.
    func lockHolder(_ lock: String) async throws -> LockRecord? {
        let locks = try await messenger.jetStream.existingKeyValue(ControllerStore.locksBucket)
        guard let entry = try await locks.get(LockRecord.key(cluster: "plane.test", lock: try LockName(prefix + lock))) else { return nil }
        return try WireDecoder().decode(LockRecord.self, from: entry.value)
    }

    func backendRecord(_ backend: BackendID) async throws -> BackendRecord? {
        let backends = try await messenger.jetStream.existingKeyValue(ControllerStore.backendsBucket)
        guard let entry = try await backends.get(backend.rawValue) else { return nil }
        return try WireDecoder().decode(BackendRecord.self, from: entry.value)
    }

    // MARK: The watcher

    struct Holder: Sendable, Hashable {
        let pid: Int32
        let lock: String
        let token: String
    }

    /// Live (not zombie) processes whose environment names a lock of `prefix`.
    static func runningLockHolders(prefix: String) -> [Holder] {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        var holders: [Holder] = []
        for entry in entries {
            guard let pid = Int32(entry) else { continue }
            guard let environ = FileManager.default.contents(atPath: "/proc/\(pid)/environ"), !environ.isEmpty else { continue }
            var lock: String?
            var token = ""
            for variable in environ.split(separator: 0) {
                let text = String(decoding: variable, as: UTF8.self)
                if text.hasPrefix("PLANE_TEST_LOCK=" + prefix) { lock = String(text.dropFirst("PLANE_TEST_LOCK=".count)) }
                if text.hasPrefix("PLANE_FENCING_TOKEN=") { token = String(text.dropFirst("PLANE_FENCING_TOKEN=".count)) }
            }
            guard let lock else { continue }
            // A zombie has ended; its parent has not reaped it yet.
            if let stat = BoundedFile.generatedText("/proc/\(pid)/stat"),
               let close = stat.lastIndex(of: ")"), stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).hasPrefix("Z") {
                continue
            }
            holders.append(Holder(pid: pid, lock: lock, token: token))
        }
        return holders
    }

    /// Fencing tokens running per lock (without the prefix).
    func running() -> [String: Set<String>] {
        var result: [String: Set<String>] = [:]
        for holder in Self.runningLockHolders(prefix: prefix) { result[String(holder.lock.dropFirst(prefix.count)), default: []].insert(holder.token) }
        return result
    }

    /// Looks every 0.5 s for a lock that runs in two processes of different holders.
    func startWatching() {
        let task = Task { [weak self] in
            while !Task.isCancelled {
                guard let self else { return }
                for (lock, tokens) in self.running() where tokens.count > 1 {
                    self.violations.withLock { $0.append(Violation(lock: lock, tokens: tokens, at: ContinuousClock.now - self.started)) }
                }
                try? await Task.sleep(for: .milliseconds(500))
            }
        }
        watcher.withLock { $0 = task }
    }

    var violationList: [Violation] { violations.withLock { $0 } }

    /// The end of a storm: within `timeout` every lock runs only where the lock table says,
    /// and no lock ran twice at any moment (`context`: what the storm did, for the message).
    func expectConvergedWithoutViolations(within timeout: Duration, after context: String) async throws {
        var mismatch = ""
        let converged = try await eventually(timeout: timeout) {
            // A JetStream that is still electing leaders after a node came back answers late.
            do { mismatch = try await mismatches() } catch { mismatch = "the lock table could not be read: \(error)" }
            return mismatch.isEmpty
        }
        #expect(converged, "\(mismatch) after \(context)")
        #expect(violationList.isEmpty, "\(violationList) after \(context)\n\(logs(about: violationList))")
    }

    /// What the controllers and drones logged about the locks of `violations`: the lines that
    /// name such a lock, any backend named in them, or a lease — for the failure message of a
    /// test that saw a lock run twice (at most `limit` lines per process).
    func logs(about violations: [Violation], limit: Int = 200) -> String {
        let locks = Set(violations.map { prefix + $0.lock })
        guard !locks.isEmpty else { return "" }
        let processes = controllerList.enumerated().map { ("controller \($0.offset)", $0.element) }
            + droneList.map { ("drone \($0.id)", $0.child) }
        let outputs = processes.map { ($0.0, $0.1.output.split(separator: "\n")) }
        // The backends that held those locks, from the lines that name them.
        var backends: Set<Substring> = []
        for (_, lines) in outputs {
            for line in lines where locks.contains(where: { line.contains($0) }) {
                for field in line.split(separator: " ") where field.hasPrefix("plane.backend=") {
                    backends.insert(field.dropFirst("plane.backend=".count))
                }
            }
        }
        var text = ""
        for (name, lines) in outputs {
            let relevant = lines.filter { line in
                locks.contains(where: { line.contains($0) }) || backends.contains(where: { line.contains($0) }) || line.contains("lease")
            }
            text += "--- \(name): \(relevant.count) lines\n" + relevant.suffix(limit).joined(separator: "\n") + "\n"
        }
        return text
    }

    /// Processes that run for a lock without being its holder in the lock table (empty once
    /// every drone runs only what it may).
    func mismatches() async throws -> String {
        var mismatch = ""
        for (lock, tokens) in running() {
            let holder = try await lockHolder(lock)
            let allowed: Set<String> = holder.flatMap { $0.fencingToken.map { [String($0)] } } ?? []
            if !tokens.isSubset(of: allowed) { mismatch += "\(lock): runs \(tokens.sorted()), lock table \(allowed.sorted()); " }
        }
        return mismatch
    }
}

extension JetStream {
    /// The bucket once a controller has created it.
    func existingKeyValueWaiting(_ bucket: String) async throws -> KeyValueBucket {
        // A controller makes the buckets as it starts; with three JetStream replicas on a
        // loaded two-core machine that took over 30 s once.
        let deadline = ContinuousClock.now + .seconds(90)
        while true {
            do { return try await existingKeyValue(bucket) } catch {
                if ContinuousClock.now > deadline { throw error }
                try await Task.sleep(for: .milliseconds(200))
            }
        }
    }
}
