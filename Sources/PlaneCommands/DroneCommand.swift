import ArgumentParser
import ContainerRuntime
import DockerRuntime
import ExternalRuntime
import OCIRuntime
import PlaneACME
import PlaneMessaging
import Foundation
import Logging
import NATS
import PlaneCore
import PlaneMetrics
import PlaneDrone
import PlaneProxy
import ServiceLifecycle

/// `plane drone [--config] drone.toml`: the agent on the configured runtime, the proxy to its
/// backends and the certificate refresher, each when its section is present.
struct DroneCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drone",
        abstract: "Run a drone: the agent that runs backends on its container runtime.",
        discussion: "Settings come from the TOML file and PLANE_SECTION__KEY environment variables; see docs/configuration.md."
    )

    @Option(name: .long, help: ArgumentHelp("Path of drone.toml.", valueName: "path"))
    var config: String?

    @Argument(help: ArgumentHelp("Path of drone.toml (as v0.3.10 took it).", valueName: "config-file"))
    var configFile: String?

    @Flag(name: [.customLong("dump-config"), .customShort("d")], help: "Print the effective configuration and exit.")
    var dumpConfig = false

    func run() async throws {
        let configuration: DroneConfiguration
        do {
            configuration = try DroneConfigLoader.load(path: config ?? configFile, environment: ProcessInfo.processInfo.environment)
        } catch {
            LoggingSystem.bootstrapPlane()
            fail(error.message, code: 2)
        }
        // After the configuration: its [log_forwarding] level is the forwarding handler's.
        LoggingSystem.bootstrapPlane(forwarding: configuration.nats == nil ? nil : configuration.logForwarding)
        configuration.ignoredVariables.logOnce(to: Logger(label: "plane.drone"))
        if dumpConfig {
            print(DroneConfigDump.describe(configuration))
            return
        }
        let logger = Logger(label: "plane.drone")
        guard configuration.agent != nil || configuration.acme != nil else {
            fail("This drone has neither [agent] nor [acme]; the proxy serves the agent's backends, so there is nothing to run.", code: 2)
        }
        do {
            let registry = PlaneMetrics()
            registry.bootstrapMetricsSystem()
            // The tracer before anything that spans, and first in the group: a group stops its
            // services in reverse, so it stops last.
            var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
            do {
                if let tracing = configuration.tracing { services.append(.init(service: try TracingBootstrap.start(tracing, serviceName: "plane-drone"))) }
            } catch {
                fail("[tracing]: \(error)", code: 2)
            }
            services += try await DroneServices.make(configuration, registry: registry, logger: logger)
            let group = ServiceGroup(configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
            try await group.run()
        } catch let error as DroneError {
            fail(error.message, code: 1)
        } catch let error as RuntimeError {
            fail(error.message, code: 1)
        } catch let error as ProxyError {
            fail(error.message, code: 1)
        } catch let error as ACMEError {
            fail(error.message, code: 1)
        } catch let error as NATSError {
            fail("Cannot use NATS: \(error.message)", code: 1)
        }
    }

    /// The certificate refresher of `[acme]`: orders through the controller's DNS and, unless
    /// `coordinate = false`, coordinates with the cluster's other drones in JetStream.
    static func certificateRefresher(_ acme: ACMEConfiguration, files: CertificateFiles, configuration: DroneConfiguration, droneID: DroneID,
                                     client: NATSClient, metrics: ACMEMetrics) throws(ACMEError) -> CertificateRefresher {
        let logger = Logger(label: "plane.acme")
        let messenger = PlaneMessenger(client: client)
        let issuer = CertificateIssuer(client: try ACMEClient(directoryURL: acme.server, caBundlePath: acme.caBundlePath, logger: logger),
                                       accounts: ACMEAccountStore(stateDirectory: configuration.stateDirectory),
                                       challenges: NATSChallengePublisher(messenger: messenger), configuration: acme, logger: logger)
        return CertificateRefresher(cluster: configuration.cluster, droneID: droneID, files: files, issuer: issuer,
                                    jetStream: acme.coordinate ? messenger.jetStream : nil, metrics: metrics, logger: logger)
    }

    /// The runtimes this build knows, and the plugins in the runtimes directory: the
    /// composition root is the only place that names them. A plugin named like a built-in
    /// (or like another plugin) fails here, loudly.
    static func registry(agent: AgentConfiguration? = nil, logger: Logger = Logger(label: "plane.runtime")) throws -> RuntimeRegistry {
        var registry = try builtInRegistry()
        let directory = agent?.runtimesDirectory ?? RuntimePluginDiscovery.defaultDirectory()
        let found = RuntimePluginDiscovery.scan(directory)
        for problem in found.problems { logger.warning("runtime.plugin_skipped", metadata: ["problem": "\(problem)"]) }
        var external = ExternalRuntimeConfiguration()
        if let agent {
            external.callTimeout = agent.pluginCallTimeout
            external.startTimeout = agent.pluginStartTimeout
        }
        for manifest in found.plugins {
            try registry.register(manifest.name) { [external] context throws(RuntimeError) in
                try await ExternalRuntime.make(manifest: manifest, context: context, configuration: external)
            }
        }
        return registry
    }

    /// The built-in runtimes.
    static func builtInRegistry() throws -> RuntimeRegistry {
        var registry = RuntimeRegistry()
        try registry.register(DockerRuntime.name) { context throws(RuntimeError) in
            var configuration = try dockerConfiguration(context.configuration)
            configuration.imageAccessFile = context.stateDirectory + "/docker-image-access.json"
            return try await DockerRuntime.make(configuration: configuration, droneID: context.droneID, logger: context.logger)
        }
        try registry.register(OCIRuntime.name) { context throws(RuntimeError) in
            let configuration = try OCIRuntimeConfiguration(json: context.configuration, droneStateDirectory: context.stateDirectory)
            return try await OCIRuntime.make(configuration: configuration, droneID: context.droneID, logger: context.logger)
        }
        return registry
    }

    /// `[agent.docker]` (as converted by the loader) into the runtime's settings.
    static func dockerConfiguration(_ json: JSONObject) throws(RuntimeError) -> DockerRuntimeConfiguration {
        var configuration = DockerRuntimeConfiguration()
        if let endpoint = json["endpoint"]?.stringValue { configuration.endpoint = endpoint }
        configuration.ociRuntime = json["oci_runtime"]?.stringValue
        configuration.logDriver = json["log_driver"]?.stringValue
        for member in json["log_options"]?.objectValue?.members ?? [] {
            if let value = member.value.stringValue { configuration.logOptions[member.key] = value }
        }
        configuration.allowMounts = json["allow_mounts"]?.boolValue ?? false
        if let value = json["oom_score_adj"]?.int64Value { configuration.oomScoreAdjust = Int(value) }
        if let value = json["egress"] { configuration.egress = try EgressPolicy(setting: value) }
        if let value = json["tmp_size_bytes"]?.int64Value { configuration.tmpfsSizeBytes = value }
        if let value = json["pull_timeout_secs"]?.int64Value { configuration.pullTimeout = .seconds(value) }
        if let value = json["writable_layer_bytes"]?.int64Value, value > 0 { configuration.writableLayerBytes = value }
        if let value = json["pids_limit"]?.int64Value { configuration.pidsLimit = value }
        if let value = json["memory_limit_bytes"]?.int64Value { configuration.memoryLimitBytes = value == 0 ? nil : value }
        if json["insecure_gpu"]?.boolValue == true {
            throw RuntimeError(.invalidSpec, "[agent.docker] insecure_gpu is not supported: GPUs are not passed through. Remove it from drone.toml.")
        }
        switch json["network"]?.stringValue {
        case "host"?: configuration.network = .host
        case let name?: configuration.network = .named(name)
        case nil:
            configuration.network = .managed(name: json["managed_network"]?.stringValue ?? DockerRuntimeConfiguration.defaultManagedNetwork,
                                             subnet: json["subnet"]?.stringValue ?? DockerRuntimeConfiguration.defaultSubnet)
        }
        return configuration
    }

    func fail(_ message: String, code: Int32) -> Never {
        FileHandle.standardError.write(Data("error: \(message)\n".utf8))
        Foundation.exit(code)
    }
}

/// The services of one drone from its configuration — the agent on its runtime, the proxy,
/// the certificate refresher, `/metrics` — started and ready for a `ServiceGroup`. Shared by
/// `plane drone` and `plane dev`.
enum DroneServices {
    /// `registry`: the process's metrics, which `/metrics` renders.
    static func make(_ configuration: DroneConfiguration, registry: PlaneMetrics, logger: Logger) async throws -> [ServiceGroupConfiguration.ServiceConfiguration] {
        // The state directory (store, keys, the runtime's images and backends) is the
        // drone's alone: 0700, narrowed at start if an earlier version left it wider.
        do { try PrivateFiles.directory(configuration.stateDirectory) } catch {
            throw DroneError(.startupFailed, "Cannot create the state directory \(error); check state_dir in drone.toml.", cause: error)
        }
        let droneID = try configuration.droneID ?? DroneIdentity.load(stateDirectory: configuration.stateDirectory)
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        // The runtime first: an unknown or dead runtime is reported before anything connects.
        var runtime: (any ContainerRuntime)?
        if let agentConfiguration = configuration.agent {
            let made = try await DroneCommand.registry(agent: agentConfiguration).makeRuntime(named: agentConfiguration.runtime, context: RuntimeContext(
                droneID: droneID, stateDirectory: configuration.stateDirectory, configuration: agentConfiguration.runtimeConfiguration,
                logger: Logger(label: "plane.runtime")))
            // A runtime with a life of its own (a plugin's process) stops after the agent.
            if let service = made as? any Service { services.append(.init(service: service)) }
            runtime = made
        }
        var client: NATSClient?
        if let natsConfiguration = configuration.nats {
            let connected = try NATSClient(configuration: natsConfiguration, logger: Logger(label: "plane.nats"))
            try await connected.connect()
            services.append(.init(service: connected))
            services.append(.init(service: NATSLogPublisher(client: connected, subject: PlaneSubjects.droneLogs(droneID), component: .drone(droneID))))
            client = connected
        }
        let metrics = ProxyMetrics(registry: registry)
        var warmPools: WarmPoolKeeper?
        if let agentConfiguration = configuration.agent, let runtime, let client {
            let store = try DroneStore(path: configuration.effectiveDatabasePath)
            let publicIP = try await PublicIPResolver.resolve(agentConfiguration.ip)
            let routes = RouteTable(maxHeldRequests: configuration.proxy?.maxHeldRequests ?? ProxyConfiguration().maxHeldRequests)
            let agent = DroneAgent(droneID: droneID, cluster: configuration.cluster, configuration: agentConfiguration, runtime: runtime,
                                   store: store, client: client, publicIP: publicIP, routes: routes, logger: logger)
            try await agent.start()
            warmPools = agent.warmPools
            warmPools?.report(into: registry)
            services.append(.init(service: agent, successTerminationBehavior: .gracefullyShutdownGroup))
            if let proxyConfiguration = configuration.proxy {
                var certificates: TLSCertificateStore?
                if let files = configuration.certificate {
                    let store = TLSCertificateStore(keyPath: files.keyPath, certificatePath: files.certificatePath, logger: Logger(label: "plane.proxy"))
                    store.reload()
                    certificates = store
                    services.append(.init(service: CertificateWatcher(store: store)))
                }
                let proxy = ProxyServer(cluster: configuration.cluster.rawValue, configuration: proxyConfiguration, routes: routes,
                                        certificates: certificates, metrics: metrics, logger: Logger(label: "plane.proxy"))
                try await proxy.start()
                services.append(.init(service: proxy))
            }
        }
        let acmeMetrics = ACMEMetrics(registry: registry)
        if let acme = configuration.acme, let files = configuration.certificate, let client {
            let refresher = try DroneCommand.certificateRefresher(acme, files: files, configuration: configuration, droneID: droneID, client: client, metrics: acmeMetrics)
            services.append(.init(service: refresher))
        }
        if let metricsConfiguration = configuration.metrics {
            let endpoint = MetricsEndpoint(configuration: metricsConfiguration, logger: logger) { registry.exposition() }
            try await endpoint.start()
            services.append(.init(service: endpoint))
        }
        return services
    }
}

/// `--dump-config`: the effective settings (defaults filled in), secrets elided.
enum DroneConfigDump {
    static func describe(_ c: DroneConfiguration) -> String {
        var lines = ["cluster_domain = \"\(c.cluster)\""]
        if let id = c.droneID { lines.append("drone_id = \"\(id)\"") } else { lines.append("# drone_id: generated once, kept in \(c.stateDirectory)/drone_id") }
        lines += ["state_dir = \"\(c.stateDirectory)\"", "db_path = \"\(c.effectiveDatabasePath)\""]
        if let nats = c.nats {
            lines += ["", "[nats]", "hosts = [\(nats.servers.map { "\"\($0.description)\"" }.joined(separator: ", "))]"]
            switch nats.auth {
            case .none: break
            case .token: lines.append("auth = { token = \"(set)\" }")
            case .userPassword(let user, _): lines.append("auth = { username = \"\(user)\", password = \"(set)\" }")
            }
        }
        if let a = c.agent {
            lines += ["", "[agent]"]
            switch a.ip {
            case .literal(let ip): lines.append("ip = \"\(ip)\"")
            case .lookup(let url): lines.append("ip = { api = \"\(url)\" }")
            }
            lines += ["runtime = \"\(a.runtime)\"", "port_range = \"\(a.portRange.lowerBound)-\(a.portRange.upperBound)\"",
                      "readiness_path = \"\(a.readinessPath)\"", "probe_timeout_ms = \(milliseconds(a.probeTimeout))",
                      "startup_timeout_secs = \(a.startupTimeout.components.seconds)", "stop_grace_secs = \(a.stopGrace.components.seconds)",
                      "drain_on_shutdown = \(a.drainOnShutdown)", "warm_pools = \(a.warmPools)", "allow_volume_mounts = \(a.allowVolumeMounts)",
                      "max_log_line_bytes = \(a.maxLogLineBytes)", "max_log_bytes_per_minute = \(a.maxLogBytesPerMinute)",
                      "lease_renew_secs = \(a.lease.renewInterval.components.seconds)", "lease_soft_secs = \(a.lease.soft.components.seconds)",
                      "lease_hard_secs = \(a.lease.hard.components.seconds)",
                      "runtime_classes = [\(a.runtimeClasses.map { "\"\($0)\"" }.joined(separator: ", "))]",
                      "pool = \"\(a.pool?.rawValue ?? "")\"  # empty: the default pool",
                      "memory_bytes = \(DroneCapacityPlan(configuration: a).memoryBytes)\(a.memoryBytes == nil ? "  # the host's MemTotal" : "")",
                      "cpus = \(DroneCapacityPlan(configuration: a).cpus)\(a.cpus == nil ? "  # the CPUs online" : "")", "max_backends = \(a.maxBackends)"]
            if a.runtimeConfiguration.count > 0 {
                lines += ["", "[agent.\(a.runtime)]  # as passed to the runtime"]
                lines += a.runtimeConfiguration.members.map { "\($0.key) = \(JSONWriter.string($0.value))" }
            }
        }
        if let p = c.proxy {
            lines += ["", "[proxy]", "bind_ip = \"\(p.bindHost)\"", "https_port = \(p.httpsPort ?? (c.certificate == nil ? 80 : 443))"]
            if let passthrough = p.passthrough { lines.append("passthrough = \"\(passthrough)\"") }
            if let redirect = p.httpRedirectPort { lines.append("http_redirect_port = \(redirect)") }
            lines += ["allow_path_routing = \(p.allowPathRouting)", "upstream_connect_timeout_ms = \(milliseconds(p.upstreamConnectTimeout))",
                      "upstream_timeout_secs = \(p.upstreamResponseTimeout.components.seconds)", "header_read_timeout_secs = \(p.headerReadTimeout.components.seconds)",
                      "idle_timeout_secs = \(p.idleTimeout.components.seconds)", "max_header_bytes = \(p.maxHeaderBytes)",
                      "max_header_count = \(p.maxHeaderCount)",
                      "upstream_idle_connections = \(p.upstreamIdleConnections)",
                      "hold_while_starting_secs = \(p.holdWhileStarting.components.seconds)", "max_held_requests = \(p.maxHeldRequests)"]
        }
        if let m = c.metrics {
            lines += ["", "[metrics]", "bind_ip = \"\(m.bindHost)\"", "port = \(m.port)"]
        }
        if let cert = c.certificate {
            lines += ["", "[cert]", "key_path = \"\(cert.keyPath)\"", "cert_path = \"\(cert.certificatePath)\""]
        }
        if let acme = c.acme {
            lines += ["", "[acme]", "server = \"\(acme.server)\"", "admin_email = \"\(acme.adminEmail)\""]
            if let bundle = acme.caBundlePath { lines.append("ca_bundle = \"\(bundle)\"") }
            lines += ["include_apex = \(acme.includeApex)", "renew_when_remaining = \(acme.renewWhenRemaining)",
                      "check_interval_secs = \(acme.checkInterval.components.seconds)", "retry_interval_secs = \(acme.retryInterval.components.seconds)",
                      "validation_timeout_secs = \(acme.validationTimeout.components.seconds)", "coordinate = \(acme.coordinate)"]
            if let eab = acme.externalAccountBinding { lines += ["", "[acme.eab]", "key_id = \"\(eab.keyID)\"", "key = \"(set)\""] }
        }
        if let a = c.agent { lines += [""] + LimitsDump.lines(a.limits) }
        if c.nats != nil { lines += [""] + LimitsDump.lines(c.logForwarding) + [""] + LimitsDump.lines(c.tracing) }
        return lines.joined(separator: "\n")
    }

    static func milliseconds(_ duration: Duration) -> Int64 {
        duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
    }
}
