import CLinux
import ContainerRuntime
import Foundation
import Logging
import PlaneCore
import ProcessSupervision
import Synchronization

/// Backends as plain host processes: the spec's `image` is the absolute path of an
/// executable (for tests, the built `plane-test-server`). Each backend runs under its own
/// shim (`plane-runtime-process shim`), in its own process group, with rlimits, a cgroup
/// where the host allows one, and a seccomp filter; host networking with `PORT` only.
final class ProcessRuntime: ContainerRuntime {
    static let name = "process"
    static let version = "0.1.0"

    let droneID: DroneID
    let stateDirectory: String
    let cgroups: CgroupLayout
    let logger: Logger
    /// Backends whose exit was already put on the event stream (those that had ended when
    /// the plugin started count as reported, so a restart does not repeat them).
    private let reported = Mutex<Set<String>>([])
    private let subscribers = Mutex<[UUID: AsyncStream<RuntimeEvent>.Continuation]>([:])
    private let samples = Mutex<[String: (cpu: UInt64, time: ContinuousClock.Instant)]>([:])

    init(context: RuntimeContext) throws(RuntimeError) {
        droneID = context.droneID
        stateDirectory = context.stateDirectory
        logger = context.logger
        cgroups = CgroupLayout.detect()
        for key in context.configuration.keys {
            throw RuntimeError(.invalidSpec, "[agent.process] has no key \"\(key)\"; the process runtime takes no settings.")
        }
        do {
            try FileManager.default.createDirectory(atPath: backendsDirectory, withIntermediateDirectories: true)
        } catch {
            throw RuntimeError(.unavailable, "Cannot create \(backendsDirectory).", underlying: error)
        }
        let ended = backendIDs().filter { FileManager.default.fileExists(atPath: directory(of: $0).exitFile) }
        reported.withLock { $0 = Set(ended) }
        Task { [weak self] in await self?.watchExits() }
    }

    var backendsDirectory: String { stateDirectory + "/backends" }

    func directory(of backend: String) -> ProcessBackendDirectory { ProcessBackendDirectory(path: backendsDirectory + "/" + backend) }

    func backendIDs() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: backendsDirectory)) ?? []).filter { (try? BackendID($0)) != nil }.sorted()
    }

    var descriptor: RuntimeDescriptor {
        RuntimeDescriptor(name: Self.name, version: Self.version, capabilities: RuntimeCapabilities(
            networkModes: [.host], mounts: false, stats: true, outOfMemoryEvents: false,
            optionsSchema: .object(JSONObject([
                ("type", .string("object")),
                ("additionalProperties", .bool(false)),
                ("properties", .object(JSONObject([
                    ("nofile", .object(JSONObject([("type", .string("integer")), ("minimum", .integer(16)), ("maximum", .integer(1_048_576)),
                                                   ("description", .string("RLIMIT_NOFILE of the backend"))]))),
                ]))),
            ])), imagePattern: "^/"))
    }

    // MARK: ContainerRuntime

    func validate(_ spec: BackendSpec) throws(RuntimeError) {
        try validateCommon(spec)  // the image is an absolute path (imagePattern)
        if let nofile = spec.options["nofile"], !(nofile.int64Value.map { (16...1_048_576).contains($0) } ?? false) {
            throw RuntimeError(.invalidSpec, "Option nofile must be an integer from 16 to 1048576.")
        }
        for key in spec.options.keys where key != "nofile" {
            throw RuntimeError(.invalidSpec, "The process runtime has no option \"\(key)\"; it takes: nofile.")
        }
    }

    func prepare(_ spec: BackendSpec) async throws(RuntimeError) {
        try validate(spec)
        guard FileManager.default.isExecutableFile(atPath: spec.image) else {
            throw RuntimeError(.imageUnavailable, "The executable \(spec.image) does not exist or is not executable on this drone; the process runtime runs host programs by path.")
        }
    }

    func start(_ spec: BackendSpec) async throws(RuntimeError) -> RuntimeHandle {
        try await prepare(spec)
        guard case .host(let address) = spec.network else { throw RuntimeError(.invalidSpec, "The process runtime supports host networking only.") }
        let id = spec.backendID.rawValue
        let directory = directory(of: id)
        guard !FileManager.default.fileExists(atPath: directory.path) else {
            throw RuntimeError(.alreadyExists, "Backend \(id) exists already in the process runtime; remove it first.")
        }
        do {
            try FileManager.default.createDirectory(atPath: directory.path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw RuntimeError(.unavailable, "Cannot create \(directory.path).", underlying: error)
        }
        let cgroupPath = "/plane-process/\(droneID)/\(id)"
        let madeCgroups = cgroups.create(cgroupPath, memoryBytes: spec.limits.memoryBytes, pidsLimit: spec.limits.pidsLimit ?? 4096,
                                         cpuQuota: spec.limits.cpuQuotaMicroseconds, cpuPeriod: spec.limits.cpuPeriodMicroseconds)
        let record = ProcessBackendRecord(backendID: id, executable: spec.image, environment: spec.effectiveEnvironment, address: address, port: spec.port,
                                          cpuTimeLimitSeconds: spec.limits.cpuTimeLimitSeconds, openFilesLimit: spec.options["nofile"]?.int64Value.map { UInt64($0) },
                                          memoryLimitBytes: spec.limits.memoryBytes, cgroupDirectories: madeCgroups, cgroupPath: cgroupPath)
        do {
            try JSONEncoder().encode(record).write(to: URL(fileURLWithPath: directory.recordFile), options: .atomic)
            _ = FileManager.default.createFile(atPath: directory.shimLog, contents: nil)
            let shimLog = open(directory.shimLog, O_WRONLY | O_APPEND | O_CLOEXEC)
            defer { if shimLog >= 0 { close(shimLog) } }
            let shim = try ProcessSpawner.spawn(CommandLine.arguments[0], ["shim", directory.path], descriptors: shimLog >= 0 ? [1: shimLog, 2: shimLog] : [:],
                                                newSession: true)
            // The shim is reaped here when it ends; it reports through its files.
            Thread.detachNewThread { _ = ProcessSpawner.wait(for: shim) }
            let deadline = ContinuousClock.now + .seconds(10)
            while directory.pid(directory.backendPIDFile) == nil {
                if let problem = try? String(contentsOfFile: directory.launchErrorFile, encoding: .utf8) {
                    throw RuntimeError(.internal, "Backend \(id) could not be started: \(problem)")
                }
                guard ContinuousClock.now < deadline else { throw RuntimeError(.timeout, "The shim of backend \(id) did not start it within 10 s; see \(directory.shimLog).") }
                try await Task.sleep(for: .milliseconds(5))
            }
            // A launch that fails after the shim started it (exec, seccomp) says so at once.
            try await Task.sleep(for: .milliseconds(20))
            if let problem = try? String(contentsOfFile: directory.launchErrorFile, encoding: .utf8) {
                throw RuntimeError(.internal, "Backend \(id) could not be started: \(problem)")
            }
        } catch {
            let failure = (error as? RuntimeError) ?? RuntimeError(.internal, "Backend \(id) could not be started.", underlying: error)
            try? await remove(spec.backendID)
            throw failure
        }
        logger.info("process.started", metadata: ["plane.backend": "\(id)", "cgroups": "\(madeCgroups.count)"])
        return RuntimeHandle(backendID: spec.backendID, runtime: Self.name, runtimeID: "pid:\(directory.pid(directory.backendPIDFile) ?? 0)",
                             address: BackendAddress(host: address, port: spec.port))
    }

    func status(of backend: BackendID) async throws(RuntimeError) -> RuntimeStatus {
        let directory = directory(of: backend.rawValue)
        guard let record = directory.read(ProcessBackendRecord.self, directory.recordFile) else { return .unknown }
        if let exit = directory.read(BackendExitRecord.self, directory.exitFile) {
            if let signal = exit.signal { return .killed(signal: signal, outOfMemory: exit.outOfMemory) }
            return exit.outOfMemory ? .killed(signal: nil, outOfMemory: true) : .exited(code: exit.code)
        }
        if let shim = directory.pid(directory.shimPIDFile), Self.isAlive(shim) {
            return directory.pid(directory.backendPIDFile) == nil ? .created : .running(address: BackendAddress(host: record.address, port: record.port))
        }
        // The shim is gone without a record (killed itself): the exit is not known.
        return .exited(code: 255)
    }

    func stop(_ backend: BackendID, grace: Duration) async throws(RuntimeError) {
        let directory = directory(of: backend.rawValue)
        guard FileManager.default.fileExists(atPath: directory.recordFile), !FileManager.default.fileExists(atPath: directory.exitFile),
              let pid = directory.pid(directory.backendPIDFile) else {
            await waitForShim(directory, within: .seconds(5))
            return
        }
        Self.signalGroup(pid, SIGTERM)
        let deadline = ContinuousClock.now + grace
        while ContinuousClock.now < deadline, !FileManager.default.fileExists(atPath: directory.exitFile) { try? await Task.sleep(for: .milliseconds(10)) }
        if !FileManager.default.fileExists(atPath: directory.exitFile) { Self.signalGroup(pid, SIGKILL) }
        let recorded = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < recorded, !FileManager.default.fileExists(atPath: directory.exitFile) {
            if let shim = directory.pid(directory.shimPIDFile), !Self.isAlive(shim) { break }
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    func remove(_ backend: BackendID) async throws(RuntimeError) {
        let directory = directory(of: backend.rawValue)
        guard FileManager.default.fileExists(atPath: directory.path) else { return }
        try await stop(backend, grace: .zero)
        await waitForShim(directory, within: .seconds(5))
        if let record = directory.read(ProcessBackendRecord.self, directory.recordFile) {
            // The backend's cgroup, then its drone's when that is empty now.
            for cgroup in record.cgroupDirectories {
                rmdir(cgroup)
                rmdir(URL(fileURLWithPath: cgroup).deletingLastPathComponent().path)
            }
        }
        do {
            try FileManager.default.removeItem(atPath: directory.path)
        } catch {
            throw RuntimeError(.internal, "Cannot remove \(directory.path).", underlying: error)
        }
        reported.withLock { _ = $0.remove(backend.rawValue) }
        samples.withLock { _ = $0.removeValue(forKey: backend.rawValue) }
    }

    func events() -> AsyncStream<RuntimeEvent> {
        let (stream, continuation) = AsyncStream<RuntimeEvent>.makeStream(bufferingPolicy: .bufferingNewest(1024))
        let id = UUID()
        subscribers.withLock { $0[id] = continuation }
        continuation.onTermination = { [weak self] _ in self?.subscribers.withLock { _ = $0.removeValue(forKey: id) } }
        return stream
    }

    func logs(of backend: BackendID, follow: Bool) -> AsyncThrowingStream<LogLine, any Error> {
        let directory = directory(of: backend.rawValue)
        return AsyncThrowingStream { continuation in
            let task = Task {
                guard FileManager.default.fileExists(atPath: directory.recordFile), let file = FileHandle(forReadingAtPath: directory.outputLog) else {
                    continuation.finish(throwing: RuntimeError(.notFound, "The process runtime holds no backend \(backend)."))
                    return
                }
                defer { try? file.close() }
                var reader = BackendOutputLog.Reader()
                while !Task.isCancelled {
                    let data = (try? file.readToEnd()) ?? Data()
                    for line in reader.lines(in: data) { continuation.yield(line) }
                    if !follow { break }
                    if data.isEmpty, FileManager.default.fileExists(atPath: directory.exitFile) {
                        // The shim writes the exit after the last output: one more read.
                        for line in reader.lines(in: (try? file.readToEnd()) ?? Data()) { continuation.yield(line) }
                        break
                    }
                    if data.isEmpty { try? await Task.sleep(for: .milliseconds(100)) }
                }
                continuation.finish()
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    func stats(of backend: BackendID) async throws(RuntimeError) -> ResourceSample {
        let directory = directory(of: backend.rawValue)
        guard let record = directory.read(ProcessBackendRecord.self, directory.recordFile), let pid = directory.pid(directory.backendPIDFile),
              !FileManager.default.fileExists(atPath: directory.exitFile) else {
            throw RuntimeError(.notFound, "Backend \(backend) is not running in the process runtime.")
        }
        let (cpu, memory) = try Self.usage(of: pid)
        let now = ContinuousClock.now
        var previous = samples.withLock { $0[backend.rawValue] }
        if previous == nil {
            try? await Task.sleep(for: .milliseconds(100))
            previous = (cpu, now)
            let (later, _) = try Self.usage(of: pid)
            samples.withLock { $0[backend.rawValue] = (later, .now) }
            return Self.sample(cpu: later - cpu, over: .milliseconds(100), memory: memory, limit: record.memoryLimitBytes)
        }
        samples.withLock { $0[backend.rawValue] = (cpu, now) }
        return Self.sample(cpu: cpu &- previous!.cpu, over: now - previous!.time, memory: memory, limit: record.memoryLimitBytes)
    }

    func list() async throws(RuntimeError) -> [RuntimeHandle] {
        backendIDs().compactMap { id -> RuntimeHandle? in
            let directory = directory(of: id)
            guard let record = directory.read(ProcessBackendRecord.self, directory.recordFile), let backend = try? BackendID(id) else { return nil }
            return RuntimeHandle(backendID: backend, runtime: Self.name, runtimeID: "pid:\(directory.pid(directory.backendPIDFile) ?? 0)",
                                 address: BackendAddress(host: record.address, port: record.port))
        }
    }

    // MARK: Internals

    /// Puts every backend's end on the event stream once, as its shim records it.
    func watchExits() async {
        while !Task.isCancelled {
            for id in backendIDs() {
                let directory = directory(of: id)
                guard let exit = directory.read(BackendExitRecord.self, directory.exitFile), let backend = try? BackendID(id) else { continue }
                guard reported.withLock({ $0.insert(id).inserted }) else { continue }
                let events = exit.outOfMemory ? [RuntimeEvent(backendID: backend, kind: .outOfMemory, time: exit.time), RuntimeEvent(backendID: backend, kind: .exited(code: exit.code), time: exit.time)]
                    : [RuntimeEvent(backendID: backend, kind: .exited(code: exit.code), time: exit.time)]
                for continuation in subscribers.withLock({ Array($0.values) }) {
                    for event in events { continuation.yield(event) }
                }
            }
            try? await Task.sleep(for: .milliseconds(100))
        }
    }

    func waitForShim(_ directory: ProcessBackendDirectory, within limit: Duration) async {
        guard let shim = directory.pid(directory.shimPIDFile) else { return }
        let deadline = ContinuousClock.now + limit
        while Self.isAlive(shim), ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(10)) }
    }

    /// Whether `pid` runs (a zombie does not count).
    static func isAlive(_ pid: pid_t) -> Bool {
        guard kill(pid, 0) == 0 || errno == EPERM else { return false }
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else { return false }
        let state = stat[stat.index(close, offsetBy: 2)...].first
        return state != "Z" && state != "X"
    }

    static func signalGroup(_ pid: pid_t, _ signal: Int32) {
        if kill(-pid, signal) != 0 { kill(pid, signal) }
    }

    /// CPU time (ns) and resident memory (bytes) of a process, from /proc.
    static func usage(of pid: pid_t) throws(RuntimeError) -> (cpu: UInt64, memory: UInt64) {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")"),
              let statm = try? String(contentsOfFile: "/proc/\(pid)/statm", encoding: .utf8) else {
            throw RuntimeError(.notFound, "Process \(pid) is gone.")
        }
        let fields = stat[stat.index(close, offsetBy: 2)...].split(separator: " ")
        let ticks = UInt64(sysconf(Int32(_SC_CLK_TCK)))
        let cpuTicks = (fields.count > 12 ? (UInt64(fields[11]) ?? 0) + (UInt64(fields[12]) ?? 0) : 0)
        let pages = statm.split(separator: " ").dropFirst().first.flatMap { UInt64($0) } ?? 0
        return (cpuTicks * 1_000_000_000 / max(ticks, 1), pages * UInt64(sysconf(Int32(_SC_PAGESIZE))))
    }

    static func sample(cpu nanoseconds: UInt64, over interval: Duration, memory: UInt64, limit: Int64?) -> ResourceSample {
        let seconds = Double(interval.components.seconds) + Double(interval.components.attoseconds) / 1e18
        let cores = Double(max(1, ProcessInfo.processInfo.activeProcessorCount))
        let percent = seconds > 0 ? min(100, max(0, Double(nanoseconds) / 1e9 / seconds / cores * 100)) : 0
        let total = limit.map { UInt64($0) } ?? hostMemory()
        return ResourceSample(cpuPercent: percent, memoryBytes: memory, memoryLimitBytes: max(total, memory))
    }

    static func hostMemory() -> UInt64 {
        guard let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8) else { return 0 }
        for line in text.split(separator: "\n") where line.hasPrefix("MemTotal:") {
            return (line.split(separator: " ").dropFirst().first.flatMap { UInt64($0) } ?? 0) * 1024
        }
        return 0
    }
}
