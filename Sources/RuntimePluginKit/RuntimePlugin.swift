import ContainerRuntime
import Foundation
import Logging
import NIOCore
import NIOPosix
import PlaneCore
import RuntimePluginProtocol
import Synchronization

/// The one entry point of a runtime plugin written in Swift: implement `ContainerRuntime`,
/// then call `RuntimePlugin.serve` from `main`. It connects to the drone
/// (`$PLANE_RUNTIME_SOCKET`), agrees on a protocol version, makes the runtime from what the
/// drone sends in `hello`, answers every call (several at once), streams events and logs,
/// and returns when the drone closes the connection — the plugin then exits.
///
/// ```swift
/// let status = await RuntimePlugin.serve(calls: [.prepare, .events, .logs, .stats]) { context in
///     try await MyRuntime(context: context)
/// }
/// exit(status)
/// ```
public enum RuntimePlugin {
    public typealias Factory = @Sendable (RuntimeContext) async throws(RuntimeError) -> any ContainerRuntime
    typealias Channel = NIOAsyncChannel<Result<PluginMessage, PluginProtocolError>, PluginMessage>

    /// Serves the drone until it disconnects; returns the process's exit status (0 after a
    /// normal disconnect, 1 when the connection could not be made or `hello` failed).
    /// `calls` are the optional calls the runtime answers; `versions` the protocol versions
    /// it speaks.
    public static func serve(calls: Set<PluginMethod> = Set(PluginMethod.optional), versions: [Int] = PluginProtocolVersion.supported,
                             socketPath: String? = ProcessInfo.processInfo.environment["PLANE_RUNTIME_SOCKET"],
                             logger: Logger = Logger(label: "plane.runtime-plugin"), factory: @escaping Factory) async -> Int32 {
        guard let socketPath, !socketPath.isEmpty else {
            FileHandle.standardError.write(Data("This is a Plane runtime plugin: the drone starts it with PLANE_RUNTIME_SOCKET set; run `plane runtimes` to list plugins.\n".utf8))
            return 64
        }
        let channel: Channel
        do {
            channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connect(unixDomainSocketPath: socketPath) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(PluginFrameToMessageDecoder()))
                        try channel.pipeline.syncOperations.addHandler(MessageToByteHandler(PluginMessageToFrameEncoder()))
                        return try Channel(wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            logger.error("plugin.connect_failed", metadata: ["socket": "\(socketPath)", "error": "\(error)"])
            return 1
        }
        do {
            return try await channel.executeThenClose { inbound, outbound in
                let server = PluginCallServer(calls: calls, versions: versions, factory: factory, outbound: outbound, logger: logger)
                return await server.run(inbound)
            }
        } catch {
            logger.error("plugin.connection_failed", metadata: ["error": "\(error)"])
            return 1
        }
    }
}

/// Answers the drone's calls on one connection.
final class PluginCallServer: Sendable {
    let calls: Set<PluginMethod>
    let versions: [Int]
    let factory: RuntimePlugin.Factory
    let outbound: NIOAsyncChannelOutboundWriter<PluginMessage>
    let logger: Logger
    private let runtime = Mutex<(any ContainerRuntime)?>(nil)
    private let tasks = Mutex<[UInt64: Task<Void, Never>]>([:])

    init(calls: Set<PluginMethod>, versions: [Int], factory: @escaping RuntimePlugin.Factory, outbound: NIOAsyncChannelOutboundWriter<PluginMessage>, logger: Logger) {
        self.calls = calls
        self.versions = versions
        self.factory = factory
        self.outbound = outbound
        self.logger = logger
    }

    func run(_ inbound: NIOAsyncChannelInboundStream<Result<PluginMessage, PluginProtocolError>>) async -> Int32 {
        var status: Int32 = 0
        do {
            for try await received in inbound {
                guard case .success(let message) = received, case .call(let id, let method, let params) = message else {
                    logger.warning("plugin.ignored_message")
                    continue
                }
                if method == PluginMethod.hello.rawValue {
                    // The handshake is answered before any other call is read.
                    if await !hello(id: id, params: params) { status = 1 }
                    continue
                }
                if method == PluginMethod.cancel.rawValue {
                    if let streamID = params.objectValue?["id"]?.int64Value, let task = tasks.withLock({ $0.removeValue(forKey: UInt64(streamID)) }) { task.cancel() }
                    try? await outbound.write(.result(id: id, .null))
                    continue
                }
                let task = Task { await self.answer(id: id, method: method, params: params) }
                tasks.withLock { $0[id] = task }
            }
        } catch {
            logger.warning("plugin.connection_ended", metadata: ["error": "\(error)"])
        }
        for task in tasks.withLock({ Array($0.values) }) { task.cancel() }
        return status
    }

    func hello(id: UInt64, params: JSONValue) async -> Bool {
        do {
            let hello = try PluginHello(json: params)
            let version = try PluginHello.agree(ours: versions, theirs: hello.protocolVersions, plugin: ProcessInfo.processInfo.environment["PLANE_RUNTIME_NAME"] ?? "this plugin")
            let made = try await factory(RuntimeContext(droneID: hello.droneID, stateDirectory: hello.stateDirectory, configuration: hello.configuration, logger: logger))
            runtime.withLock { $0 = made }
            let result = PluginHelloResult(protocolVersion: version, descriptor: made.descriptor, calls: calls)
            try? await outbound.write(.result(id: id, result.json))
            return true
        } catch let error as PluginProtocolError {
            let code = error.code == .noCommonVersion ? "unsupported" : "invalid_spec"
            try? await outbound.write(.failure(id: id, PluginFailure(code: code, message: error.message)))
        } catch let error as RuntimeError {
            try? await outbound.write(.failure(id: id, PluginWire.failure(error)))
        } catch {
            try? await outbound.write(.failure(id: id, PluginFailure(code: "internal", message: "\(error)")))
        }
        return false
    }

    func answer(id: UInt64, method name: String, params: JSONValue) async {
        defer { tasks.withLock { _ = $0.removeValue(forKey: id) } }
        guard let runtime = runtime.withLock({ $0 }) else {
            try? await outbound.write(.failure(id: id, PluginFailure(code: "unavailable", message: "The plugin was not greeted with hello first.")))
            return
        }
        guard let method = PluginMethod(rawValue: name), method != .hello, method != .cancel,
              PluginMethod.required.contains(method) || calls.contains(method) else {
            try? await outbound.write(.failure(id: id, PluginFailure(code: "unsupported", message: "This plugin does not answer \(name).")))
            return
        }
        do {
            switch method {
            case .prepare:
                try await runtime.prepare(try PluginWire.spec(try PluginFields(params, "prepare").object["spec"] ?? .null))
                try await outbound.write(.result(id: id, .null))
            case .start:
                let handle = try await runtime.start(try PluginWire.spec(try PluginFields(params, "start").object["spec"] ?? .null))
                try await outbound.write(.result(id: id, PluginWire.json(handle)))
            case .status:
                try await outbound.write(.result(id: id, PluginWire.json(try await runtime.status(of: try PluginFields(params, "status").backendID()))))
            case .stop:
                let fields = try PluginFields(params, "stop")
                try await runtime.stop(try fields.backendID(), grace: .milliseconds(try fields.optionalInteger("grace_ms") ?? 10_000))
                try await outbound.write(.result(id: id, .null))
            case .remove:
                try await runtime.remove(try PluginFields(params, "remove").backendID())
                try await outbound.write(.result(id: id, .null))
            case .stats:
                try await outbound.write(.result(id: id, PluginWire.json(try await runtime.stats(of: try PluginFields(params, "stats").backendID()))))
            case .list:
                try await outbound.write(.result(id: id, .array(try await runtime.list().map(PluginWire.json))))
            case .events:
                for await event in runtime.events() {
                    try await outbound.write(.item(id: id, PluginWire.json(event)))
                }
                try await outbound.write(.end(id: id))
            case .logs:
                let fields = try PluginFields(params, "logs")
                let since = try fields.optionalInteger("since_ns").map(Timestamp.init(nanosecondsSinceEpoch:))
                for try await line in runtime.logs(of: try fields.backendID(), follow: try fields.bool("follow", default: false)) {
                    if let since, let time = line.time, time <= since { continue }
                    try await outbound.write(.item(id: id, PluginWire.json(line)))
                }
                try await outbound.write(.end(id: id))
            case .hello, .cancel:
                break
            }
        } catch is CancellationError {
            try? await outbound.write(.end(id: id))
        } catch let error as RuntimeError {
            try? await outbound.write(.failure(id: id, PluginWire.failure(error)))
        } catch let error as PluginProtocolError {
            try? await outbound.write(.failure(id: id, PluginFailure(code: "invalid_spec", message: error.message)))
        } catch {
            if Task.isCancelled {
                try? await outbound.write(.end(id: id))
            } else {
                try? await outbound.write(.failure(id: id, PluginFailure(code: "internal", message: "\(error)")))
            }
        }
    }
}
