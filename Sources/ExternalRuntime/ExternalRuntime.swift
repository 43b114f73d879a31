import ContainerRuntime
import Foundation
import Logging
import PlaneCore
import RuntimePluginProtocol
import ServiceLifecycle
import Synchronization

/// A runtime that lives in another process: a plugin from the runtimes directory, started
/// and supervised by the drone and spoken to over a unix socket (docs/runtime-plugins.md,
/// "The plugin protocol"). To the drone it is a `ContainerRuntime` like the built-ins.
///
/// Spawn options are checked against the JSON Schema the plugin declared, in the drone,
/// before anything starts. When the plugin dies it is restarted with backoff; calls made
/// meanwhile wait (up to their timeout), the event stream resumes, log streams that follow
/// a backend pick up where they were, and the plugin finds its backends again (`list`).
public final class ExternalRuntime: ContainerRuntime, Service {
    public let manifest: RuntimePluginManifest
    public let configuration: ExternalRuntimeConfiguration
    let supervisor: PluginSupervisor
    let logger: Logger
    private let hello: Mutex<PluginHelloResult>
    private let subscribers = Mutex<[UUID: AsyncStream<RuntimeEvent>.Continuation]>([:])

    /// Starts the plugin of `manifest` and completes its handshake; a plugin that cannot be
    /// started, speaks no protocol version of this drone or names itself differently is an
    /// error here, so the drone does not start with it.
    public static func make(manifest: RuntimePluginManifest, context: RuntimeContext, configuration: ExternalRuntimeConfiguration = ExternalRuntimeConfiguration()) async throws(RuntimeError) -> ExternalRuntime {
        do {
            _ = try PluginHello.agree(ours: PluginProtocolVersion.supported, theirs: manifest.protocolVersions, plugin: manifest.name)
        } catch {
            throw RuntimeError(.unsupported, error.message + " (from \(manifest.manifestPath))")
        }
        let executable = try manifest.resolvedExecutable()
        let hello = PluginHello(protocolVersions: PluginProtocolVersion.supported, droneID: context.droneID,
                                stateDirectory: context.stateDirectory + "/runtimes/" + manifest.name, configuration: context.configuration)
        let supervisor = PluginSupervisor(manifest: manifest, executable: executable, hello: hello, configuration: configuration, logger: context.logger)
        let (result, connection) = try await supervisor.start()
        let runtime = ExternalRuntime(manifest: manifest, configuration: configuration, supervisor: supervisor, hello: result, logger: context.logger)
        runtime.followEvents(connection, hello: result)
        supervisor.onConnect { [weak runtime] connection, hello in
            guard let runtime else { return }
            runtime.hello.withLock { $0 = hello }
            runtime.followEvents(connection, hello: hello)
            Task { await runtime.reattach() }
        }
        return runtime
    }

    init(manifest: RuntimePluginManifest, configuration: ExternalRuntimeConfiguration, supervisor: PluginSupervisor, hello: PluginHelloResult, logger: Logger) {
        self.manifest = manifest
        self.configuration = configuration
        self.supervisor = supervisor
        self.hello = Mutex(hello)
        self.logger = logger
    }

    public var descriptor: RuntimeDescriptor { hello.withLock { $0.descriptor } }

    /// The optional calls the plugin answers.
    public var calls: Set<PluginMethod> { hello.withLock { $0.calls } }

    /// How often the plugin has been restarted since the drone started.
    public var restarts: Int { supervisor.restarts }

    /// The pid of the plugin's process now (nil while it is restarting).
    public var pluginProcessID: Int32? { supervisor.currentProcessID }

    // MARK: Service

    /// Keeps the plugin until the drone shuts down, then stops it (its backends go on).
    public func run() async throws {
        try? await gracefulShutdown()
        await shutdown()
    }

    /// Stops the plugin's process (its backends go on) and ends the event streams.
    public func shutdown() async {
        await supervisor.shutdown()
        for continuation in subscribers.withLock({ Array($0.values) }) { continuation.finish() }
    }

    // MARK: ContainerRuntime

    public func validate(_ spec: BackendSpec) throws(RuntimeError) {
        try validateCommon(spec)
        if let schema = descriptor.capabilities.optionsSchema {
            let problems = JSONSchemaValidator(schema: schema).problems(of: .object(spec.options))
            if !problems.isEmpty {
                throw RuntimeError(.invalidSpec, "Options for runtime '\(manifest.name)' are invalid: \(problems.joined(separator: "; ")).")
            }
        }
    }

    public func prepare(_ spec: BackendSpec) async throws(RuntimeError) {
        try validate(spec)
        guard calls.contains(.prepare) else { return }  // the plugin does it in start
        _ = try await call(.prepare, .object(JSONObject([("spec", PluginWire.json(spec))])), timeout: configuration.startTimeout)
    }

    public func start(_ spec: BackendSpec) async throws(RuntimeError) -> RuntimeHandle {
        try validate(spec)
        let answer = try await call(.start, .object(JSONObject([("spec", PluginWire.json(spec))])), timeout: configuration.startTimeout)
        return try decode { () throws(PluginProtocolError) in try PluginWire.handle(answer, runtime: manifest.name) }
    }

    public func status(of backend: BackendID) async throws(RuntimeError) -> RuntimeStatus {
        let answer = try await call(.status, Self.backendParams(backend))
        return try decode { () throws(PluginProtocolError) in try PluginWire.status(answer) }
    }

    public func stop(_ backend: BackendID, grace: Duration) async throws(RuntimeError) {
        var params = JSONObject([("backend_id", .string(backend.rawValue))])
        let milliseconds = grace.components.seconds * 1000 + grace.components.attoseconds / 1_000_000_000_000_000
        params["grace_ms"] = .integer(milliseconds)
        _ = try await call(.stop, .object(params), timeout: configuration.callTimeout + grace)
    }

    public func remove(_ backend: BackendID) async throws(RuntimeError) {
        _ = try await call(.remove, Self.backendParams(backend))
    }

    public func stats(of backend: BackendID) async throws(RuntimeError) -> ResourceSample {
        guard calls.contains(.stats) else { throw RuntimeError(.unsupported, "Runtime plugin '\(manifest.name)' does not report stats.") }
        let answer = try await call(.stats, Self.backendParams(backend))
        return try decode { () throws(PluginProtocolError) in try PluginWire.sample(answer) }
    }

    public func list() async throws(RuntimeError) -> [RuntimeHandle] {
        let answer = try await call(.list, .object(JSONObject()))
        guard let items = answer.arrayValue else { throw RuntimeError(.internal, "Runtime plugin '\(manifest.name)' answered list with \(answer.kindName), not an array.") }
        var handles: [RuntimeHandle] = []
        for item in items { handles.append(try decode { () throws(PluginProtocolError) in try PluginWire.handle(item, runtime: manifest.name) }) }
        return handles
    }

    public func events() -> AsyncStream<RuntimeEvent> {
        let (stream, continuation) = AsyncStream<RuntimeEvent>.makeStream(bufferingPolicy: .bufferingNewest(4096))
        let id = UUID()
        subscribers.withLock { $0[id] = continuation }
        continuation.onTermination = { [weak self] _ in self?.subscribers.withLock { _ = $0.removeValue(forKey: id) } }
        return stream
    }

    public func logs(of backend: BackendID, follow: Bool) -> AsyncThrowingStream<LogLine, any Error> {
        AsyncThrowingStream { continuation in
            let task = Task {
                // With follow, a plugin restart does not end the stream: it is opened again
                // and lines already delivered (by time) are skipped.
                var last: Timestamp?
                // Lines without a time: after a reopen, the first `timeless` of them were sent.
                var timeless = 0
                var opened = 0
                while !Task.isCancelled {
                    do {
                        guard calls.contains(.logs) else { throw RuntimeError(.unsupported, "Runtime plugin '\(manifest.name)' does not provide logs.") }
                        let connection = try await supervisor.connection(timeout: configuration.callTimeout)
                        var params = JSONObject([("backend_id", .string(backend.rawValue)), ("follow", .bool(follow))])
                        if let last { params["since_ns"] = .integer(last.nanosecondsSinceEpoch) }
                        var skip = opened > 0 ? timeless : 0
                        opened += 1
                        for try await item in connection.stream(.logs, .object(params)) {
                            let line = try PluginWire.logLine(item)
                            if let time = line.time {
                                if let previous = last, time <= previous { continue }
                                last = time
                            } else {
                                if skip > 0 {
                                    skip -= 1
                                    continue
                                }
                                timeless += 1
                            }
                            continuation.yield(line)
                        }
                        continuation.finish()
                        return
                    } catch let error as RuntimeError where follow && error.code == .unavailable && !supervisorStopping {
                        try? await Task.sleep(for: .milliseconds(200))
                        continue
                    } catch let error as PluginProtocolError {
                        continuation.finish(throwing: RuntimeError(.internal, "Runtime plugin '\(manifest.name)' sent a log line that is not one: \(error.message)"))
                        return
                    } catch {
                        continuation.finish(throwing: error)
                        return
                    }
                }
                continuation.finish()
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    // MARK: Internals

    var supervisorStopping: Bool { supervisor.isStopping }

    func call(_ method: PluginMethod, _ params: JSONValue, timeout: Duration? = nil) async throws(RuntimeError) -> JSONValue {
        let limit = timeout ?? configuration.callTimeout
        let connection = try await supervisor.connection(timeout: limit)
        return try await connection.call(method, params, timeout: limit)
    }

    static func backendParams(_ backend: BackendID) -> JSONValue {
        .object(JSONObject([("backend_id", .string(backend.rawValue))]))
    }

    func decode<T>(_ body: () throws(PluginProtocolError) -> T) throws(RuntimeError) -> T {
        do {
            return try body()
        } catch {
            throw RuntimeError(.internal, "Runtime plugin '\(manifest.name)' answered with a malformed payload: \(error.message)")
        }
    }

    /// Forwards the plugin's `events` stream to every subscriber, for one connection.
    func followEvents(_ connection: PluginConnection, hello: PluginHelloResult) {
        guard hello.calls.contains(.events) else { return }
        Task { [weak self] in
            do {
                for try await item in connection.stream(.events, .object(JSONObject())) {
                    guard let self else { return }
                    do {
                        let event = try PluginWire.event(item)
                        for continuation in self.subscribers.withLock({ Array($0.values) }) { continuation.yield(event) }
                    } catch {
                        self.logger.warning("plugin.malformed_event", metadata: ["plane.runtime": "\(self.manifest.name)", "error": "\(error)"])
                    }
                }
            } catch {
                // The connection ended; the next one opens the stream again.
            }
        }
    }

    /// After a restart: the plugin finds its backends again; the drone logs how many.
    func reattach() async {
        do {
            let handles = try await list()
            logger.notice("plugin.reattached", metadata: ["plane.runtime": "\(manifest.name)", "backends": "\(handles.count)"])
        } catch {
            logger.warning("plugin.reattach_failed", metadata: ["plane.runtime": "\(manifest.name)", "error": "\(error)"])
        }
    }
}
