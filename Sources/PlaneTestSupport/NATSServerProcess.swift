import Foundation
import Logging
import NATS
import Synchronization

/// A real `nats-server` child process on 127.0.0.1 and a random port, with JetStream and a
/// temporary store. Stopped by PID; restartable on the same port and store.
public final class NATSServerProcess: Sendable {
    public struct Options: Sendable {
        public var jetStream = true
        public var token: String?
        public var user: String?
        public var password: String?
        /// PEM files for TLS on the client port, and the CA that signed the certificate.
        public var tls: (certificate: String, key: String, ca: String)?
        /// A whole `authorization { ... }` block instead of `token`/`user`; `user` and
        /// `password` are then what the server's own probe (and `connectedClient`) use.
        public var authorization: String?
        /// A member of a NATS cluster (`startCluster`): its route port and its peers'.
        public var cluster: (name: String, routePort: Int, peers: [Int])?
        /// How clients (the probe, `clientConfiguration`) name the server: `localhost` for a
        /// TLS certificate that names no address. It listens on 127.0.0.1 either way.
        public var clientHost = "127.0.0.1"
        public init() {}
    }

    public let port: Int
    public let options: Options
    public let directory: String
    private let process: Mutex<Process?>

    public var url: String { "nats://127.0.0.1:\(port)" }
    public var serverURL: NATSServerURL { NATSServerURL(host: options.clientHost, port: port, requiresTLS: options.tls != nil) }
    public var pid: Int32? { process.withLock { $0?.processIdentifier } }

    private init(port: Int, options: Options, directory: String) {
        self.port = port
        self.options = options
        self.directory = directory
        self.process = Mutex(nil)
    }

    /// Starts a server and waits until it accepts clients (and JetStream requests).
    public static func start(_ options: Options = Options()) async throws -> NATSServerProcess {
        let server = NATSServerProcess(port: try TestEnvironment.freePort(), options: options, directory: try TestEnvironment.temporaryDirectory("plane-nats"))
        try server.writeConfig()
        try await server.launch()
        return server
    }

    private func writeConfig() throws {
        var lines = ["listen: 127.0.0.1:\(port)", "server_name: test_\(port)"]
        if options.jetStream {
            lines.append("jetstream { store_dir: \"\(directory)/js\", max_memory_store: 268435456, max_file_store: 1073741824 }")
        }
        if let authorization = options.authorization {
            lines.append(authorization)
        } else if let token = options.token {
            lines.append("authorization { token: \"\(token)\" }")
        } else if let user = options.user, let password = options.password {
            lines.append("authorization { user: \"\(user)\", password: \"\(password)\" }")
        }
        if let tls = options.tls {
            lines.append("tls { cert_file: \"\(tls.certificate)\", key_file: \"\(tls.key)\", timeout: 5 }")
        }
        if let cluster = options.cluster {
            let routes = cluster.peers.map { "nats-route://127.0.0.1:\($0)" }.joined(separator: ", ")
            lines.append("cluster { name: \(cluster.name), listen: 127.0.0.1:\(cluster.routePort), routes: [\(routes)] }")
        }
        try lines.joined(separator: "\n").write(toFile: "\(directory)/nats.conf", atomically: true, encoding: .utf8)
    }

    /// Starts a NATS cluster of `size` servers with JetStream (each a `NATSServerProcess` with
    /// its own client port and store, and the options `configure` sets) and waits until every one answers JetStream requests
    /// (a JetStream meta leader is elected).
    public static func startCluster(size: Int = 3, _ configure: (inout Options) -> Void = { _ in }) async throws -> [NATSServerProcess] {
        let routePorts = try (0..<size).map { _ in try TestEnvironment.freePort() }
        var servers: [NATSServerProcess] = []
        do {
            for index in 0..<size {
                var options = Options()
                configure(&options)
                options.cluster = (name: "plane_test", routePort: routePorts[index], peers: routePorts.enumerated().filter { $0.offset != index }.map(\.element))
                let server = NATSServerProcess(port: try TestEnvironment.freePort(), options: options, directory: try TestEnvironment.temporaryDirectory("plane-nats"))
                try server.writeConfig()
                try server.spawn()
                servers.append(server)
            }
            for server in servers { try await server.waitUntilReady(within: .seconds(60)) }
        } catch {
            for server in servers { await server.shutdown() }
            throw error
        }
        return servers
    }

    private func launch() async throws {
        try spawn()
        try await waitUntilReady()
    }

    private func spawn() throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: try SystemProgram.natsServer.path())
        p.arguments = ["-c", "\(directory)/nats.conf"]
        let log = FileManager.default.createFile(atPath: "\(directory)/server.log", contents: nil) ? FileHandle(forWritingAtPath: "\(directory)/server.log") : nil
        p.standardOutput = log ?? FileHandle.nullDevice
        p.standardError = log ?? FileHandle.nullDevice
        try p.run()
        process.withLock { $0 = p }
    }

    private func waitUntilReady(within timeout: Duration = .seconds(30)) async throws {
        let deadline = ContinuousClock.now + timeout
        var lastError: (any Error)?
        while ContinuousClock.now < deadline {
            guard process.withLock({ $0?.isRunning ?? false }) else {
                let log = (try? String(contentsOfFile: "\(directory)/server.log", encoding: .utf8)) ?? ""
                throw TestSupportError("nats-server exited during startup: \(log)")
            }
            do {
                if try await probe() { return }
            } catch {
                lastError = error
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw TestSupportError("nats-server on port \(port) did not become ready: \(String(describing: lastError))")
    }

    /// Connects a client; with JetStream, also checks that `$JS.API.INFO` answers.
    private func probe() async throws -> Bool {
        var config = clientConfiguration(tlsCA: options.tls?.ca)
        config.connectTimeout = .seconds(1)
        let client = try NATSClient(configuration: config, logger: Logger(label: "test.probe", factory: { _ in SwiftLogNoOpLogHandler() }))
        do {
            try await client.connect()
            var ok = true
            if options.jetStream {
                let reply = try await client.request("$JS.API.INFO", timeout: .seconds(1))
                ok = !reply.string.contains("\"error\"")
            }
            await client.close()
            return ok
        } catch {
            await client.close()
            throw error
        }
    }

    /// Client configuration matching this server's auth and TLS.
    public func clientConfiguration(tlsCA: String? = nil) -> NATSClientConfiguration {
        let tlsCA = tlsCA ?? options.tls?.ca
        var auth = NATSClientConfiguration.Auth.none
        if let token = options.token { auth = .token(token) }
        if let user = options.user, let password = options.password { auth = .userPassword(user: user, password: password) }
        var tls: NATSClientConfiguration.TLS?
        if options.tls != nil { tls = NATSClientConfiguration.TLS(caFile: tlsCA, required: true) }
        var config = NATSClientConfiguration(servers: [serverURL], auth: auth, tls: tls)
        config.reconnectWait = .milliseconds(50)
        config.maxReconnectWait = .milliseconds(500)
        return config
    }

    /// A client connected to this server (configuration adjustable before connecting).
    public func connectedClient(_ adjust: (inout NATSClientConfiguration) -> Void = { _ in }) async throws -> NATSClient {
        var config = clientConfiguration()
        adjust(&config)
        let client = try NATSClient(configuration: config)
        try await client.connect()
        return client
    }

    /// SIGTERM, then SIGKILL after 5 s; waits for the process to end.
    public func stop() async {
        guard let p = process.withLock({ $0 }) else { return }
        if p.isRunning { kill(p.processIdentifier, SIGTERM) }
        let deadline = ContinuousClock.now + .seconds(5)
        while p.isRunning, ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        while p.isRunning { try? await Task.sleep(for: .milliseconds(10)) }
        p.waitUntilExit()
        process.withLock { $0 = nil }
    }

    /// SIGKILL now (a crash), and wait for the process to end.
    public func kill9() async {
        guard let p = process.withLock({ $0 }) else { return }
        if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        while p.isRunning { try? await Task.sleep(for: .milliseconds(10)) }
        p.waitUntilExit()
        process.withLock { $0 = nil }
    }

    /// Starts the server again on the same port with the same store.
    public func restart() async throws {
        await stop()
        try await launch()
    }

    /// Starts the (stopped) server again without stopping it first.
    public func startAgain() async throws {
        try await launch()
    }

    /// Stops the server and deletes its directory.
    public func shutdown() async {
        await stop()
        try? FileManager.default.removeItem(atPath: directory)
    }
}

/// Runs `body` with a fresh server and always stops it afterwards.
@discardableResult
public func withNATSServer<T: Sendable>(_ options: NATSServerProcess.Options = .init(), _ body: (NATSServerProcess) async throws -> T) async throws -> T {
    let server = try await NATSServerProcess.start(options)
    do {
        let result = try await body(server)
        await server.shutdown()
        return result
    } catch {
        await server.shutdown()
        throw error
    }
}
