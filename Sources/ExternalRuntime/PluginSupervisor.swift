import ContainerRuntime
import Foundation
import Logging
import NIOCore
import NIOPosix
import PlaneCore
import ProcessSupervision
import RuntimePluginProtocol
import Synchronization

/// Runs one plugin: listens on its socket, starts its executable, takes its connection,
/// agrees on a protocol version (`hello`), and restarts it with backoff when it dies, closes
/// its connection or stops answering. Callers get the current connection, waiting while a
/// restart is under way. Every wait is woken by the change it waits for
/// (`PluginStateChanges`): the process's exit, a connection accepted or closed, a call
/// timed out, the drone stopping.
final class PluginSupervisor: Sendable {
    typealias ServerChannel = NIOAsyncChannel<NIOAsyncChannel<Result<PluginMessage, PluginProtocolError>, PluginMessage>, Never>

    /// One run of the plugin's executable.
    struct Incarnation: Sendable {
        var process: PluginProcess
        var connection: PluginConnection
        var hello: PluginHelloResult
        var started: ContinuousClock.Instant
    }

    struct State {
        var current: Incarnation?
        /// Connections accepted and not yet taken by a starting incarnation.
        var accepted: [PluginConnection] = []
        var lastFailure: RuntimeError?
        var stopping = false
        var restarts = 0
        var onConnect: [@Sendable (PluginConnection, PluginHelloResult) -> Void] = []
    }

    let manifest: RuntimePluginManifest
    let executable: String
    let hello: PluginHello
    let configuration: ExternalRuntimeConfiguration
    let socketPath: String
    let logPath: String
    let logger: Logger
    private let state = Mutex(State())
    private let changes = PluginStateChanges()
    private let server = Mutex<ServerChannel?>(nil)

    init(manifest: RuntimePluginManifest, executable: String, hello: PluginHello, configuration: ExternalRuntimeConfiguration, logger: Logger) {
        self.manifest = manifest
        self.executable = executable
        self.hello = hello
        self.configuration = configuration
        self.socketPath = hello.stateDirectory + "/plugin.sock"
        self.logPath = hello.stateDirectory + "/plugin.log"
        self.logger = logger
    }

    var restarts: Int { state.withLock { $0.restarts } }
    var isStopping: Bool { state.withLock { $0.stopping } }
    var currentProcessID: Int32? { state.withLock { $0.current?.process.pid } }

    /// Called after the `hello` of every restart.
    func onConnect(_ body: @escaping @Sendable (PluginConnection, PluginHelloResult) -> Void) {
        state.withLock { $0.onConnect.append(body) }
    }

    /// Listens, starts the plugin and completes the handshake; then supervises it in the
    /// background (`onConnect` callbacks run for each restart, not for this first
    /// connection, which is returned). A first start that fails is this call's error (the
    /// drone does not start).
    func start() async throws(RuntimeError) -> (PluginHelloResult, PluginConnection) {
        do {
            try FileManager.default.createDirectory(atPath: hello.stateDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw RuntimeError(.unavailable, "Cannot create the state directory \(hello.stateDirectory) of runtime plugin '\(manifest.name)'.", underlying: error)
        }
        try await listen()
        let incarnation: Incarnation
        do {
            incarnation = try await launch()
        } catch {
            await shutdown()
            throw error
        }
        setCurrent(incarnation)
        Task { await supervise(incarnation) }
        return (incarnation.hello, incarnation.connection)
    }

    /// The connection to use for a call, waiting up to `timeout` for a restart to finish.
    func connection(timeout: Duration) async throws(RuntimeError) -> PluginConnection {
        let deadline = ContinuousClock.now + timeout
        while true {
            let seen = changes.generation
            let (connection, failure, stopping) = state.withLock { ($0.current?.connection, $0.lastFailure, $0.stopping) }
            if let connection, !connection.isClosed { return connection }
            if stopping { throw RuntimeError(.unavailable, "Runtime plugin '\(manifest.name)' has been stopped (the drone is shutting down).") }
            guard ContinuousClock.now < deadline else {
                throw RuntimeError(.unavailable, "Runtime plugin '\(manifest.name)' is not running; the drone keeps restarting it. Last failure: \(failure?.description ?? "it exited"). Its output is in \(logPath).")
            }
            await changes.wait(after: seen, until: deadline)
        }
    }

    // MARK: Listening

    func listen() async throws(RuntimeError) {
        guard socketPath.utf8.count < 108 else {
            throw RuntimeError(.unavailable, "The socket path \(socketPath) of runtime plugin '\(manifest.name)' is longer than a unix socket allows (107 bytes); use a shorter drone state_dir.")
        }
        unlink(socketPath)
        let channel: ServerChannel
        do {
            channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .bind(unixDomainSocketPath: socketPath, cleanupExistingSocketFile: true) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(PluginFrameToMessageDecoder()))
                        try channel.pipeline.syncOperations.addHandler(MessageToByteHandler(PluginMessageToFrameEncoder()))
                        return try NIOAsyncChannel(wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            throw RuntimeError(.unavailable, "Cannot listen on \(socketPath) for runtime plugin '\(manifest.name)'.", underlying: error)
        }
        chmod(socketPath, 0o600)
        server.withLock { $0 = channel }
        Task {
            try? await channel.executeThenClose { connections in
                try await withThrowingDiscardingTaskGroup { group in
                    for try await accepted in connections {
                        group.addTask {
                            try? await accepted.executeThenClose { inbound, outbound in
                                let changes = self.changes
                                let connection = PluginConnection(plugin: self.manifest.name, outbound: outbound, logger: self.logger) { changes.signal() }
                                self.state.withLock { $0.accepted.append(connection) }
                                changes.signal()
                                await connection.read(inbound)
                            }
                        }
                    }
                }
            }
        }
    }

    // MARK: One run of the plugin

    func launch() async throws(RuntimeError) -> Incarnation {
        state.withLock { $0.accepted.removeAll() }
        var environment = ProcessInfo.processInfo.environment
        environment["PLANE_RUNTIME_SOCKET"] = socketPath
        environment["PLANE_RUNTIME_NAME"] = manifest.name
        rotateLogIfLarge()
        let log = open(logPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0o600)
        defer { if log >= 0 { close(log) } }
        // posix_spawn with default signal dispositions and an empty mask: the drone ignores
        // or blocks SIGTERM for its own shutdown handling, a plugin must not inherit that.
        let process: PluginProcess
        do {
            let changes = changes
            process = PluginProcess(pid: try ProcessSpawner.spawn(executable, manifest.arguments, descriptors: log >= 0 ? [1: log, 2: log] : [:],
                                                                  environment: environment)) { changes.signal() }
        } catch {
            throw RuntimeError(.unavailable, "Cannot start runtime plugin '\(manifest.name)' (\(executable)): \(error.message)")
        }
        logger.info("plugin.started", metadata: ["plane.runtime": "\(manifest.name)", "pid": "\(process.pid)"])

        // Its connection, then the handshake.
        let deadline = ContinuousClock.now + configuration.connectTimeout
        var connection: PluginConnection?
        while connection == nil {
            let seen = changes.generation
            connection = state.withLock { $0.accepted.isEmpty ? nil : $0.accepted.removeFirst() }
            if connection != nil { break }
            guard process.isRunning else {
                throw RuntimeError(.unavailable, "Runtime plugin '\(manifest.name)' exited (\(process.exitDescription)) before it connected. \(lastOutput())")
            }
            guard ContinuousClock.now < deadline else {
                await end(process)
                throw RuntimeError(.timeout, "Runtime plugin '\(manifest.name)' did not connect to \(socketPath) within \(configuration.connectTimeout.components.seconds) s (it must connect to $PLANE_RUNTIME_SOCKET). \(lastOutput())")
            }
            await changes.wait(after: seen, until: deadline)
        }
        guard let connection else { throw RuntimeError(.internal, "unreachable") }
        do throws(RuntimeError) {
            let answer = try await connection.call(.hello, hello.json, timeout: configuration.connectTimeout)
            let result: PluginHelloResult
            do {
                result = try PluginHelloResult(json: answer)
            } catch {
                throw RuntimeError(.unavailable, "Runtime plugin '\(manifest.name)' answered hello with something else than the protocol's answer: \(error.message)")
            }
            guard hello.protocolVersions.contains(result.protocolVersion) else {
                throw RuntimeError(.unsupported, "Runtime plugin '\(manifest.name)' chose protocol version \(result.protocolVersion); this drone speaks \(hello.protocolVersions.sorted()).")
            }
            guard result.descriptor.name == manifest.name else {
                throw RuntimeError(.unavailable, "Runtime plugin in \(manifest.directory) calls itself '\(result.descriptor.name)', but its runtime.toml says '\(manifest.name)'; make them agree.")
            }
            return Incarnation(process: process, connection: connection, hello: result, started: .now)
        } catch {
            connection.close(error)
            await end(process)
            throw error
        }
    }

    /// Watches an incarnation until it ends, then restarts the plugin (with backoff) until
    /// the drone stops.
    func supervise(_ first: Incarnation) async {
        var incarnation: Incarnation? = first
        var backoff = configuration.restartBackoff
        var isRestart = false
        while true {
            if let current = incarnation {
                setCurrent(current)
                if isRestart {
                    for callback in state.withLock({ $0.onConnect }) { callback(current.connection, current.hello) }
                }
                let reason = await watch(current)
                setCurrent(nil)
                current.connection.close(RuntimeError(.unavailable, "Runtime plugin '\(manifest.name)' is restarting: \(reason)."))
                await end(current.process)
                if state.withLock({ $0.stopping }) { return }
                logger.warning("plugin.ended", metadata: ["plane.runtime": "\(manifest.name)", "reason": "\(reason)"])
                state.withLock { $0.lastFailure = RuntimeError(.unavailable, reason) }
                if ContinuousClock.now - current.started > .seconds(30) { backoff = configuration.restartBackoff }
            }
            // The backoff, cut short when the drone stops.
            if await changes.wait(until: .now + backoff, for: { state.withLock { $0.stopping } }) { return }
            backoff = min(backoff * 2, configuration.maximumRestartBackoff)
            if state.withLock({ $0.stopping }) { return }
            do {
                incarnation = try await launch()
                isRestart = true
                state.withLock { $0.restarts += 1 }
                logger.notice("plugin.restarted", metadata: ["plane.runtime": "\(manifest.name)"])
            } catch {
                incarnation = nil
                state.withLock { $0.lastFailure = error }
                logger.error("plugin.restart_failed", metadata: ["plane.runtime": "\(manifest.name)", "error": "\(error)"])
            }
        }
    }

    /// Waits until the plugin exits, closes its connection, stops answering, or the drone stops.
    func watch(_ incarnation: Incarnation) async -> String {
        while true {
            let seen = changes.generation
            if state.withLock({ $0.stopping }) { return "the drone is stopping" }
            if !incarnation.process.isRunning { return "it exited (\(incarnation.process.exitDescription))" }
            if incarnation.connection.isClosed { return "it closed its connection" }
            if incarnation.connection.unansweredTimeouts >= configuration.hungAfterTimeouts {
                return "it did not answer \(configuration.hungAfterTimeouts) calls in a row"
            }
            await changes.wait(after: seen)
        }
    }

    private func setCurrent(_ incarnation: Incarnation?) {
        state.withLock { $0.current = incarnation }
        changes.signal()
    }

    /// SIGTERM, two seconds, SIGKILL; always reaps.
    func end(_ process: PluginProcess) async {
        guard process.isRunning else { return }
        kill(process.pid, SIGTERM)
        if await changes.wait(until: .now + .seconds(2), for: { !process.isRunning }) { return }
        kill(process.pid, SIGKILL)
        _ = await changes.wait { !process.isRunning }
    }

    /// Stops the plugin and the listener; the backends it runs are not touched.
    func shutdown() async {
        let current = state.withLock { state -> Incarnation? in
            state.stopping = true
            return state.current
        }
        changes.signal()
        if let current {
            current.connection.close(RuntimeError(.unavailable, "Runtime plugin '\(manifest.name)' has been stopped (the drone is shutting down)."))
            await end(current.process)
        }
        if let channel = server.withLock({ $0 }) { try? await channel.channel.close() }
        unlink(socketPath)
    }

    /// The last lines of `plugin.log`, for an error message: read from its last
    /// `lastOutputBytes` only (the log may be large), the first of them dropped when cut.
    func lastOutput() -> String {
        let nothing = "It wrote nothing to \(logPath)."
        let fd = open(logPath, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { return nothing }
        defer { close(fd) }
        let end = lseek(fd, 0, SEEK_END)
        guard end > 0 else { return nothing }
        let start = Swift.max(0, end - off_t(Self.lastOutputBytes))
        var bytes = [UInt8](repeating: 0, count: Int(end - start))
        let count = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, start) }
        guard count > 0 else { return nothing }
        var lines = String(decoding: bytes[0..<count], as: UTF8.self).split(separator: "\n")
        if start > 0, !lines.isEmpty { lines.removeFirst() }
        guard !lines.isEmpty else { return nothing }
        return "Its last output (\(logPath)): \(lines.suffix(5).joined(separator: " | "))"
    }

    /// At most this much of the end of `plugin.log` is read for `lastOutput`.
    static let lastOutputBytes = 16_384
    /// `plugin.log` larger than this when the plugin (re)starts becomes `plugin.log.1`
    /// (replacing the one before): a plugin that writes much, or restarts often, does not
    /// fill the disk over time.
    static let maxLogBytes: off_t = 16 << 20

    /// Moves a large `plugin.log` aside before a start.
    private func rotateLogIfLarge() {
        var info = stat()
        guard lstat(logPath, &info) == 0, info.st_size > Self.maxLogBytes else { return }
        if rename(logPath, logPath + ".1") == 0 {
            logger.info("plugin.log_rotated", metadata: ["plane.runtime": "\(manifest.name)", "bytes": "\(info.st_size)"])
        }
    }
}
