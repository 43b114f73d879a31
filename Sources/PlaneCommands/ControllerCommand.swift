import ArgumentParser
import Foundation
import Logging
import NATS
import PlaneController
import PlaneMessaging
import PlaneCore
import PlaneMetrics
import ServiceLifecycle

/// `plane controller [--config] controller.toml`: the scheduler, state relay, locks, DNS
/// server and HTTP API, as the configuration enables them.
struct ControllerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "controller",
        abstract: "Run a controller (scheduler, state relay, locks, DNS server, HTTP API).",
        discussion: "Settings come from the TOML file and PLANE_SECTION__KEY environment variables; see docs/configuration.md."
    )

    @Option(name: .long, help: ArgumentHelp("Path of controller.toml.", valueName: "path"))
    var config: String?

    @Argument(help: ArgumentHelp("Path of controller.toml (as v0.3.10 took it).", valueName: "config-file"))
    var configFile: String?

    @Flag(name: [.customLong("dump-config"), .customShort("d")], help: "Print the effective configuration and exit.")
    var dumpConfig = false

    func run() async throws {
        let path = config ?? configFile
        let configuration: ControllerConfiguration
        do {
            configuration = try ControllerConfigLoader.load(path: path, environment: ProcessInfo.processInfo.environment)
        } catch {
            FileHandle.standardError.write(Data("error: \(error.message)\n".utf8))
            throw ExitCode(2)
        }
        // After the configuration: its [log_forwarding] level is the forwarding handler's.
        LoggingSystem.bootstrapPlane(forwarding: configuration.logForwarding)
        configuration.ignoredVariables.logOnce(to: Logger(label: "plane.controller"))
        if dumpConfig {
            print(ControllerConfigDump.describe(configuration))
            return
        }
        let logger = Logger(label: "plane.controller")
        let client = try NATSClient(configuration: configuration.nats, logger: Logger(label: "plane.nats"))
        do {
            try await client.connect()
        } catch {
            logger.critical("controller.nats_unreachable", metadata: ["error": "\(error)"])
            FileHandle.standardError.write(Data("error: cannot connect to NATS at \(configuration.nats.servers.map(\.description).joined(separator: ", ")): \(error)\n".utf8))
            throw ExitCode(1)
        }
        let registry = PlaneMetrics()
        registry.bootstrapMetricsSystem()
        let tracer: (any Service)?
        do {
            tracer = try configuration.tracing.map { try TracingBootstrap.start($0, serviceName: "plane-controller") }
        } catch {
            FileHandle.standardError.write(Data("error: [tracing]: \(error)\n".utf8))
            await client.close()
            throw ExitCode(2)
        }
        let controller = Controller(configuration: configuration, client: client, registry: registry, logger: logger)
        do {
            try await controller.start()
        } catch {
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            await client.close()
            throw ExitCode(1)
        }
        // The tracer first: a group stops its services in reverse, so it stops last and
        // sends the spans of the shutdown.
        let group = ServiceGroup(configuration: .init(
            services: (tracer.map { [ServiceGroupConfiguration.ServiceConfiguration(service: $0)] } ?? []) + [.init(service: client),
                       .init(service: NATSLogPublisher(client: client, subject: PlaneSubjects.controllerLogs, component: .controller)),
                       .init(service: controller, successTerminationBehavior: .gracefullyShutdownGroup)],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        try await group.run()
    }
}

/// `--dump-config`: the effective settings, secrets elided.
enum ControllerConfigDump {
    static func describe(_ c: ControllerConfiguration) -> String {
        var lines = ["[nats]", "hosts = [\(c.nats.servers.map { "\"\($0.description)\"" }.joined(separator: ", "))]"]
        switch c.nats.auth {
        case .none: break
        case .token: lines.append("auth = { token = \"(set)\" }")
        case .userPassword(let user, _): lines.append("auth = { username = \"\(user)\", password = \"(set)\" }")
        }
        if let s = c.scheduler {
            lines += ["", "[scheduler]", "drone_timeout_secs = \(s.droneTimeout.components.seconds)", "spawn_timeout_secs = \(s.spawnTimeout.components.seconds)",
                      "recent_spawn_window_secs = \(s.recentSpawnWindow.components.seconds)", "max_spawn_attempts = \(s.maxSpawnAttempts)",
                      "drone_lost_grace_secs = \(s.droneLostGrace.components.seconds)", "status_history_messages = \(s.statusHistoryMessages)",
                      "status_history_max_age_secs = \(s.statusHistoryMaxAge.components.seconds)", "replicas = \(s.replicas)",
                      "max_drones = \(s.maxDrones)", "jetstream_wait_secs = \(s.jetStreamWait.components.seconds)"]
        }
        if let d = c.dns {
            lines += ["", "[dns]", "port = \(d.server.port)", "bind_ip = \"\(d.server.bindHost)\""]
            if let m = d.mailbox { lines.append("soa_email (RNAME) = \"\(m)\"") }
            if let n = d.nameServer { lines.append("nameserver = \"\(n)\"") }
            lines.append("zones = [\(d.zones.map { "\"\($0.key)\"" }.joined(separator: ", "))]")
            lines += ["max_records = \(d.limits.maxRecords)", "max_txt_per_name = \(d.limits.maxTextsPerName)",
                      "max_txt_bytes = \(d.limits.maxTextBytes)", "max_zones = \(d.limits.maxZones)",
                      "tcp_timeout_secs = \(d.server.tcpTimeout.components.seconds)", "tcp_max_connections = \(d.server.maxTCPConnections)",
                      "tcp_max_connections_per_address = \(d.server.maxTCPConnectionsPerAddress)",
                      "rate_limit = \(d.server.rateLimit.responsesPerSecond)", "rate_limit_slip = \(d.server.rateLimit.slip)",
                      "rate_limit_ipv4_prefix = \(d.server.rateLimit.ipv4PrefixLength)", "rate_limit_ipv6_prefix = \(d.server.rateLimit.ipv6PrefixLength)"]
        }
        if let h = c.http {
            lines += ["", "[http]", "port = \(h.port)", "bind_ip = \"\(h.bindHost)\"", "cluster = \"\(h.cluster)\"",
                      "token = \(h.token == nil ? "(none: loopback only)" : "(set)")",
                      "request_timeout_secs = \(h.requestTimeout.components.seconds)", "max_connections = \(h.maxConnections)",
                      "max_connections_per_address = \(h.maxConnectionsPerAddress.map(String.init) ?? "(none: max_connections bounds every client together)")",
                      "max_status_streams = \(h.maxStatusStreams)", "", "[http.services]"]
            let sorted = h.services.sorted { $0.key < $1.key }
            lines += sorted.filter { $0.value == HTTPServiceConfiguration(image: $0.value.image) }.map { "\($0.key) = \"\($0.value.image)\"" }
            for (name, service) in sorted where service != HTTPServiceConfiguration(image: service.image) {
                lines += ["", "[http.services.\(name)]", "image = \"\(service.image)\"",
                          "env = { \(service.env.sorted { $0.key < $1.key }.map { "\($0.key) = \"\($0.value)\"" }.joined(separator: ", ")) }",
                          "allowed_env = [\(service.allowedEnv.sorted().map { "\"\($0)\"" }.joined(separator: ", "))]",
                          "allowed_mount_sources = [\(service.allowedMountSources.map { "\"\($0)\"" }.joined(separator: ", "))]"]
                func list(_ names: Set<String>) -> String { "[\(names.sorted().map { "\"\($0)\"" }.joined(separator: ", "))]" }
                if let runtimeClass = service.runtimeClass { lines.append("runtime_class = \"\(runtimeClass)\"") }
                if let pool = service.pool { lines.append("pool = \"\(pool)\"") }
                if service.runtimeOptions.count > 0 { lines.append("runtime_options = \(JSONWriter.string(.object(service.runtimeOptions)))  # as JSON") }
                if let memory = service.memoryLimitBytes { lines.append("memory_limit_bytes = \(memory)") }
                if let readiness = service.readiness {
                    lines.append("readiness_path = \"\(readiness.path)\"")
                    if let timeout = readiness.timeoutSeconds { lines.append("readiness_timeout_secs = \(timeout.seconds)") }
                }
                if let lifetime = service.maxLifetimeSeconds { lines.append("max_lifetime_secs = \(lifetime.seconds)") }
                if service.warmPool > 0 { lines.append("warm_pool = \(service.warmPool)") }
                lines += ["allowed_runtime_classes = \(list(service.allowedRuntimeClasses))", "allowed_pools = \(list(service.allowedPools))",
                          "allowed_runtime_options = \(list(service.allowedRuntimeOptions))"]
            }
        }
        lines += [""] + LimitsDump.lines(c.limits)
        lines += [""] + LimitsDump.lines(c.logForwarding)
        lines += [""] + LimitsDump.lines(c.tracing)
        return lines.joined(separator: "\n")
    }
}

/// `[limits]` in `--dump-config`, the same in both files.
enum LimitsDump {
    static func lines(_ limits: InputLimits) -> [String] {
        ["[limits]", "max_message_bytes = \(limits.json.maxBytes)", "max_json_depth = \(limits.json.maxDepth)",
         "max_json_string_bytes = \(limits.json.maxStringBytes)", "max_env_bytes = \(limits.spawn.maxEnvBytes)",
         "max_metadata_bytes = \(limits.spawn.maxMetadataBytes)"]
    }

    /// `[log_forwarding]`, the same in both files.
    static func lines(_ forwarding: LogForwarding.Settings) -> [String] {
        ["[log_forwarding]", "level = \"\(forwarding.level?.rawValue ?? "off")\"", "max_per_second = \(forwarding.maxPerSecond)",
         "buffer = \(forwarding.bufferSize)"]
    }

    static func lines(_ tracing: TracingConfiguration?) -> [String] {
        guard let tracing else { return ["# [tracing]: none (nothing is traced)"] }
        var lines = ["[tracing]", "endpoint = \"\(tracing.endpoint)\"", "protocol = \"\(tracing.exportProtocol.rawValue)\""]
        if let name = tracing.serviceName { lines.append("service_name = \"\(name)\"") }
        lines.append("export_delay_ms = \(tracing.exportDelay.components.seconds * 1000 + tracing.exportDelay.components.attoseconds / 1_000_000_000_000_000)")
        return lines
    }
}
