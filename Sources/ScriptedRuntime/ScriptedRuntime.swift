import ContainerRuntime
import PlaneCore

/// A `ContainerRuntime` for fast tests of the layers above the seam (the drone agent): it
/// keeps backends in memory on a `ScriptedHost` and serves each one in-process on its
/// loopback address like the `plane-test-server` image. It keeps the contract of
/// `ContainerRuntime` (the `RuntimeConformance` checks pass against it), so agent tests
/// on it mean the same as on Docker, in a fraction of the time, and faults that are hard
/// to cause on a real daemon (a lost event, a dead runtime, a slow pull) are one line.
///
/// Never used in production; the drone does not register it.
public struct ScriptedRuntime: ContainerRuntime {
    public static let name = "scripted"

    public let host: ScriptedHost
    public let droneID: DroneID
    public let descriptor: RuntimeDescriptor

    /// With an own address, the runtime offers `bridge` networking only and serves every
    /// backend there (like the OCI runtime's network namespaces); otherwise host networking.
    public let ownAddress: String?

    public init(host: ScriptedHost, droneID: DroneID, stats: Bool = true, ownAddress: String? = nil) {
        self.host = host
        self.droneID = droneID
        self.ownAddress = ownAddress
        descriptor = RuntimeDescriptor(name: Self.name, version: "1", capabilities: RuntimeCapabilities(
            networkModes: ownAddress == nil ? [.host] : [.bridge], mounts: true, stats: stats, outOfMemoryEvents: false, waits: true))
    }

    public func validate(_ spec: BackendSpec) throws(RuntimeError) {
        try validateCommon(spec)
        guard spec.droneID == droneID else {
            throw RuntimeError(.invalidSpec, "The spec is for drone \(spec.droneID), this runtime serves \(droneID).")
        }
    }

    public func prepare(_ spec: BackendSpec) async throws(RuntimeError) {
        try validate(spec)
        let script = try host.count("prepare")
        if script.prepareDelay > .zero { try? await Task.sleep(for: script.prepareDelay) }
        guard script.images[spec.image] != nil else {
            throw RuntimeError(.imageUnavailable, "Image '\(spec.image)' is not available to the scripted runtime; known: \(script.images.keys.sorted().joined(separator: ", ")).")
        }
    }

    public func start(_ spec: BackendSpec) async throws(RuntimeError) -> RuntimeHandle {
        try validate(spec)
        let script = try host.count("start")
        if script.startDelay > .zero {
            // An unstructured task: the caller's cancellation does not cut the start short.
            await Task { try? await Task.sleep(for: script.startDelay) }.value
        }
        guard let behavior = script.images[spec.image] else {
            throw RuntimeError(.imageUnavailable, "Image '\(spec.image)' is not available to the scripted runtime; prepare it first.")
        }
        let address: String
        switch spec.network {
        case .host(let host): address = host
        case .bridge(nil) where ownAddress != nil: address = ownAddress!
        default: throw RuntimeError(.invalidSpec, "The scripted runtime does not support network \(spec.network).")
        }
        let backend = ScriptedBackend(spec: spec, address: BackendAddress(host: address, port: spec.port), host: host)
        let inserted = host.state.withLock { state in
            guard state.backends[spec.backendID] == nil else { return false }
            state.backends[spec.backendID] = backend
            return true
        }
        guard inserted else { throw RuntimeError(.alreadyExists, "Backend \(spec.backendID) already exists in the scripted runtime.") }
        do throws(RuntimeError) {
            if case .failsToStart(let message) = behavior { throw RuntimeError(.internal, message) }
            try await backend.run()
        } catch {
            host.state.withLock { _ = $0.backends.removeValue(forKey: spec.backendID) }
            throw error
        }
        return handle(of: backend)
    }

    public func status(of backend: BackendID) async throws(RuntimeError) -> RuntimeStatus {
        _ = try host.count("status")
        return host.backend(backend, of: droneID)?.status ?? .unknown
    }

    public func stop(_ backend: BackendID, grace: Duration) async throws(RuntimeError) {
        _ = try host.count("stop")
        await host.backend(backend, of: droneID)?.stop(grace: grace)
    }

    public func remove(_ backend: BackendID) async throws(RuntimeError) {
        _ = try host.count("remove")
        guard let found = host.backend(backend, of: droneID) else { return }
        await found.stop(grace: .zero)
        host.state.withLock { _ = $0.backends.removeValue(forKey: backend) }
        host.exits.signal(backend)
    }

    public func wait(for backend: BackendID) async throws(RuntimeError) -> RuntimeStatus {
        try await host.exits.wait(for: backend) { () async throws(RuntimeError) -> RuntimeStatus in try await self.status(of: backend) }
    }

    public func events() -> AsyncStream<RuntimeEvent> {
        host.subscribe(drone: droneID)
    }

    public func logs(of backend: BackendID, follow: Bool) -> AsyncThrowingStream<LogLine, any Error> {
        guard let found = host.backend(backend, of: droneID) else {
            return AsyncThrowingStream { $0.finish(throwing: RuntimeError(.notFound, "No backend \(backend) in the scripted runtime.")) }
        }
        return found.logs(follow: follow)
    }

    public func stats(of backend: BackendID) async throws(RuntimeError) -> ResourceSample {
        _ = try host.count("stats")
        guard descriptor.capabilities.stats else { throw RuntimeError(.unsupported, "This scripted runtime has no stats.") }
        guard let found = host.backend(backend, of: droneID), found.status.isRunning else {
            throw RuntimeError(.notFound, "Backend \(backend) is not running in the scripted runtime.")
        }
        let limit = UInt64(found.spec.limits.memoryBytes ?? 1 << 30)
        return ResourceSample(cpuPercent: 0.5, memoryBytes: 8 << 20, memoryLimitBytes: max(limit, 8 << 20))
    }

    public func list() async throws(RuntimeError) -> [RuntimeHandle] {
        _ = try host.count("list")
        let drone = droneID
        return host.state.withLock { state in state.backends.values.filter { $0.spec.droneID == drone } }.map(handle(of:))
    }

    func handle(of backend: ScriptedBackend) -> RuntimeHandle {
        RuntimeHandle(backendID: backend.spec.backendID, runtime: Self.name, runtimeID: "scripted-\(backend.spec.backendID)", address: backend.address)
    }
}
