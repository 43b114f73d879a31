import ContainerRuntime
import DockerRuntime
import NATS
import OCIRuntime
import PlaneACME
import PlaneCore
import PlaneMessaging
import PlaneDrone

/// Turns `drone.toml` (plus `PLANE_*` overrides) into a `DroneConfiguration`. Every v0.3.10
/// key is accepted (`[agent.docker]` selects the Docker runtime); unknown keys and wrong
/// types are reported by name, all at once, and nothing starts.
enum DroneConfigLoader {
    static func load(path: String?, environment: [String: String]) throws(ConfigError) -> DroneConfiguration {
        let (table, source, ignored) = try TOMLConfigFile.load(path: path, environment: environment)
        var config = try configuration(from: table, source: source)
        config.ignoredVariables = (ignored + config.ignoredVariables).sorted()
        return config
    }

    static func configuration(from table: ConfigTable, source: String) throws(ConfigError) -> DroneConfiguration {
        let root = ConfigReader(table)
        var cluster: ClusterName?
        if let text = root.string("cluster_domain") {
            do { cluster = try ClusterName(text) } catch { root.problem("cluster_domain", error.message) }
        } else {
            root.problem("cluster_domain", "missing; name the cluster this drone serves, e.g. cluster_domain = \"plane.example.com\"")
        }
        var config = DroneConfiguration(cluster: cluster ?? "invalid.cluster")
        if let id = root.string("drone_id") {
            do { config.droneID = try DroneID(id) } catch { root.problem("drone_id", error.message) }
        }
        if let path = root.string("db_path") { config.databasePath = path }
        if let directory = root.string("state_dir") { config.stateDirectory = directory }
        if let nats = root.table("nats") {
            config.nats = NATSConfigReader.read(nats, in: root, name: "plane-drone")
        }
        if let cert = root.table("cert") {
            let key = cert.string("key_path")
            let chain = cert.string("cert_path")
            if key == nil { cert.problem("key_path", "missing; the PEM file of the certificate's private key") }
            if chain == nil { cert.problem("cert_path", "missing; the PEM file of the certificate chain, leaf first") }
            if let key, let chain { config.certificate = CertificateFiles(keyPath: key, certificatePath: chain) }
        }
        if let acme = root.table("acme") {
            config.acme = readACME(acme, config: config)
        }
        if let agent = root.table("agent") {
            config.agent = readAgent(agent, config: &config, root: root)
        }
        config.agent?.limits = InputLimits.read(root.table("limits"))
        if let proxy = root.table("proxy") {
            var settings = ProxyConfiguration()
            if let bind = proxy.string("bind_ip") { settings.bindHost = bind }
            settings.httpsPort = proxy.int("https_port", in: 0...65535)
            settings.passthrough = proxy.string("passthrough")
            if let passthrough = settings.passthrough, !passthrough.contains(":") {
                proxy.problem("passthrough", "'\(passthrough)' needs a port: host:port")
            }
            settings.httpRedirectPort = proxy.int("http_redirect_port", in: 0...65535)
            if let allow = proxy.bool("allow_path_routing") { settings.allowPathRouting = allow }
            if let ms = proxy.int("upstream_connect_timeout_ms", in: 10...600_000) { settings.upstreamConnectTimeout = .milliseconds(ms) }
            if let seconds = proxy.int("upstream_timeout_secs", in: 1...86_400) { settings.upstreamResponseTimeout = .seconds(seconds) }
            if let seconds = proxy.int("header_read_timeout_secs", in: 1...3600) { settings.headerReadTimeout = .seconds(seconds) }
            if let seconds = proxy.int("idle_timeout_secs", in: 1...86_400) { settings.idleTimeout = .seconds(seconds) }
            if let count = proxy.int("max_connections", in: 1...10_000_000) { settings.maxConnections = count }
            if let count = proxy.int("max_connections_per_address", in: 1...10_000_000) { settings.maxConnectionsPerAddress = count }
            if let bytes = proxy.int("max_header_bytes", in: 1024...(16 << 20)) { settings.maxHeaderBytes = bytes }
            if let count = proxy.int("max_header_count", in: 8...10_000) { settings.maxHeaderCount = count }
            if let count = proxy.int("upstream_idle_connections", in: 0...10_000) { settings.upstreamIdleConnections = count }
            if let seconds = proxy.int("hold_while_starting_secs", in: 0...3600) { settings.holdWhileStarting = .seconds(seconds) }
            if let count = proxy.int("max_held_requests", in: 0...1_000_000) { settings.maxHeldRequests = count }
            if settings.httpRedirectPort != nil, config.certificate == nil {
                proxy.problem("http_redirect_port", "redirects to HTTPS, which needs [cert]")
            }
            if config.agent == nil {
                proxy.problem("agent", "[proxy] serves the backends of this drone's [agent]; add [agent]")
            }
            config.proxy = settings
        }
        if let metrics = root.table("metrics") {
            var settings = MetricsEndpointConfiguration()
            if let bind = metrics.string("bind_ip") { settings.bindHost = bind }
            if let port = metrics.int("port", in: 0...65535) { settings.port = port }
            config.metrics = settings
        }
        config.logForwarding = LogForwardingConfigReader.read(root.table("log_forwarding"))
        config.tracing = TracingConfiguration.read(root.table("tracing"))
        if config.agent == nil && config.proxy == nil && config.acme == nil && root.problems.isEmpty {
            root.problem("drone", "no part is enabled; add [agent], [proxy] and/or [acme]")
        }
        try root.finish(source: source)
        config.ignoredVariables = root.ignoredVariables
        return config
    }

    static func readACME(_ acme: ConfigReader, config: DroneConfiguration) -> ACMEConfiguration {
        let server = acme.string("server")
        let email = acme.string("admin_email")
        if server == nil { acme.problem("server", "missing; the ACME directory URL, e.g. https://acme-v02.api.letsencrypt.org/directory") }
        if email == nil { acme.problem("admin_email", "missing; the contact address for the ACME account") }
        if let server, !(server.hasPrefix("https://") || server.hasPrefix("http://")) {
            acme.problem("server", "'\(server)' is not an http(s) URL of an ACME directory")
        }
        var settings = ACMEConfiguration(server: server ?? "", adminEmail: email ?? "")
        if let eab = acme.table("eab") {
            let keyID = eab.string("key_id")
            let key = eab.string("key")
            if keyID == nil { eab.problem("key_id", "missing; the key id your CA gave you") }
            if key == nil { eab.problem("key", "missing; the HMAC key, base64url") }
            if let keyID, let key {
                do { settings.externalAccountBinding = try ExternalAccountBinding(keyID: keyID, key: key) } catch { eab.problem("key", error.message) }
            }
        }
        settings.caBundlePath = acme.string("ca_bundle")
        if let apex = acme.bool("include_apex") { settings.includeApex = apex }
        if let fraction = acme.number("renew_when_remaining", in: 0.01...0.99) { settings.renewWhenRemaining = fraction }
        if let seconds = acme.int("check_interval_secs", in: 1...86_400) { settings.checkInterval = .seconds(seconds) }
        if let seconds = acme.int("retry_interval_secs", in: 1...86_400) { settings.retryInterval = .seconds(seconds) }
        if let seconds = acme.int("validation_timeout_secs", in: 5...3600) { settings.validationTimeout = .seconds(seconds) }
        if let coordinate = acme.bool("coordinate") { settings.coordinate = coordinate }
        if config.certificate == nil { acme.problem("cert", "[acme] needs [cert] (key_path, cert_path): where to write the certificate") }
        if config.nats == nil { acme.problem("nats", "[acme] needs [nats]: the DNS-01 challenge goes through the controller") }
        return settings
    }

    static func readAgent(_ agent: ConfigReader, config: inout DroneConfiguration, root: ConfigReader) -> AgentConfiguration? {
        var ip: PublicIPSource?
        if agent.contains("ip") {
            if case .table = agent.table["ip"] ?? .string("") {
                if let lookup = agent.table("ip") {
                    if let url = lookup.string("api") { ip = .lookup(url: url) } else { lookup.problem("api", "missing; ip = { api = \"http://...\" } names a URL that answers the IP") }
                }
            } else if let text = agent.string("ip") {
                ip = .literal(text)
            }
        } else {
            agent.problem("ip", "missing; the address other machines reach this drone at: ip = \"203.0.113.7\" or ip = { api = \"http://...\" }")
        }
        // v0.3.10 accepted [agent] drone_id and ignored it; we use it.
        if let text = agent.string("drone_id") {
            do {
                let id = try DroneID(text)
                if let top = config.droneID, top != id {
                    agent.problem("drone_id", "'\(id)' differs from the top-level drone_id '\(top)'; keep one")
                }
                config.droneID = config.droneID ?? id
            } catch {
                agent.problem("drone_id", error.message)
            }
        }
        if config.nats == nil { agent.problem("nats", "[agent] needs [nats] to receive spawn requests") }
        var settings = AgentConfiguration(ip: ip ?? .literal("0.0.0.0"))
        if let runtime = agent.string("runtime") { settings.runtime = runtime }
        if let range = agent.string("port_range") {
            let parts = range.split(separator: "-").compactMap { Int($0.trimmingSpaces) }
            if parts.count == 2, parts[0] >= 1, parts[1] <= 65535, parts[0] <= parts[1] {
                settings.portRange = parts[0]...parts[1]
            } else {
                agent.problem("port_range", "'\(range)' is not a range like \"20000-29999\"")
            }
        }
        if let path = agent.string("readiness_path") {
            if path.hasPrefix("/") { settings.readinessPath = path } else { agent.problem("readiness_path", "must start with /") }
        }
        if let ms = agent.int("probe_timeout_ms", in: 10...60_000) { settings.probeTimeout = .milliseconds(ms) }
        if let seconds = agent.int("startup_timeout_secs", in: 1...3600) { settings.startupTimeout = .seconds(seconds) }
        if let seconds = agent.int("stop_grace_secs", in: 0...3600) { settings.stopGrace = .seconds(seconds) }
        if let drain = agent.bool("drain_on_shutdown") { settings.drainOnShutdown = drain }
        if let warm = agent.bool("warm_pools") { settings.warmPools = warm }
        if let directory = agent.string("runtimes_dir") {
            if directory.hasPrefix("/") { settings.runtimesDirectory = directory } else { agent.problem("runtimes_dir", "must be an absolute path") }
        }
        if let seconds = agent.int("plugin_call_timeout_secs", in: 1...3600) { settings.pluginCallTimeout = .seconds(seconds) }
        if let seconds = agent.int("plugin_start_timeout_secs", in: 1...86_400) { settings.pluginStartTimeout = .seconds(seconds) }
        if let bytes = agent.int("max_log_line_bytes", in: 256...16_384) { settings.maxLogLineBytes = bytes }
        if let bytes = agent.int("max_log_bytes_per_minute", in: 1024...(1 << 30)) { settings.maxLogBytesPerMinute = bytes }
        if let seconds = agent.int("lease_renew_secs", in: 1...600) { settings.lease.renewInterval = .seconds(seconds) }
        if let seconds = agent.int("lease_soft_secs", in: 2...3600) { settings.lease.soft = .seconds(seconds) }
        if let seconds = agent.int("lease_hard_secs", in: 3...3600) { settings.lease.hard = .seconds(seconds) }
        if let problem = settings.lease.problem { agent.problem("lease_hard_secs", problem) }
        if let classes = agent.stringArray("runtime_classes") {
            if classes.count > DroneStatusMessage.maximumListCount {
                agent.problem("runtime_classes", "has \(classes.count) names; at most \(DroneStatusMessage.maximumListCount)")
            }
            for name in classes.prefix(DroneStatusMessage.maximumListCount) {
                do { settings.runtimeClasses.append(try FleetLabel(name)) } catch { agent.problem("runtime_classes", error.message) }
            }
        }
        if let pool = agent.string("pool"), !pool.isEmpty {
            do { settings.pool = try FleetLabel(pool) } catch { agent.problem("pool", error.message) }
        }
        if let bytes = agent.integer("memory_bytes", in: (16 << 20)...(1 << 50)) { settings.memoryBytes = UInt64(bytes) }
        if let cpus = agent.number("cpus", in: 0.01...100_000) { settings.cpus = cpus }
        if let count = agent.int("max_backends", in: 1...1_000_000) { settings.maxBackends = count }

        // One section per runtime; [agent.docker] is v0.3.10's and selects Docker.
        if let docker = agent.table("docker") {
            if agent.table["runtime"] == nil { settings.runtime = "docker" }
            settings.runtimeConfiguration = dockerSettings(docker, agent: &settings)
        }
        for key in agent.table.keys where !["ip", "drone_id", "runtime", "port_range", "readiness_path", "probe_timeout_ms", "startup_timeout_secs",
                                             "stop_grace_secs", "drain_on_shutdown", "warm_pools", "docker", "runtimes_dir", "plugin_call_timeout_secs",
                                             "plugin_start_timeout_secs", "max_log_line_bytes", "max_log_bytes_per_minute",
                                             "lease_renew_secs", "lease_soft_secs", "lease_hard_secs", "runtime_classes", "pool",
                                             "memory_bytes", "cpus", "max_backends"].contains(key) {
            // Another runtime's section ([agent.oci], [agent.<plugin>]); that runtime checks it.
            // A variable's text here names no key (ignored, with the reader's warning).
            if case .unparsed = agent.table[key] { continue }
            guard let section = agent.table(key) else { continue }
            if key == settings.runtime { settings.runtimeConfiguration = json(section.table) }
            for child in section.table.keys { _ = section.contains(child) }
        }
        return settings
    }

    /// `[agent.docker]` as v0.3.10 wrote it, into the Docker runtime's settings.
    static func dockerSettings(_ docker: ConfigReader, agent: inout AgentConfiguration) -> JSONObject {
        var object = JSONObject()
        if let runtime = docker.string("runtime") { object["oci_runtime"] = .string(runtime) }
        if let connection = docker.table("connection") {
            let socket = connection.string("socket")
            let http = connection.string("http")
            switch (socket, http) {
            case (let socket?, nil): object["endpoint"] = .string(socket)
            case (nil, let http?): object["endpoint"] = .string(http)
            default: docker.problem("connection", "write either { socket = \"/var/run/docker.sock\" } or { http = \"http://host:2375\" }")
            }
        }
        if let network = docker.string("network") {
            if DockerNetworkName.isValid(network) { object["network"] = .string(network) } else {
                docker.problem("network", "'\(network)' is not a Docker network name (letters, digits, '_', '.', '-'); use \"host\" for host networking")
            }
        }
        if let value = docker.integer("oom_score_adj", in: -1000...1000) { object["oom_score_adj"] = .integer(value) }
        if docker.contains("egress"), let value = docker.table["egress"].map(json) {
            do { object["egress"] = try EgressPolicy(setting: value).setting } catch { docker.problem("egress", error.message) }
        }
        if let value = docker.integer("tmp_size_bytes", in: (1 << 20)...(1 << 40)) { object["tmp_size_bytes"] = .integer(value) }
        if let value = docker.integer("pull_timeout_secs", in: 1...86_400) { object["pull_timeout_secs"] = .integer(value) }
        if let value = docker.integer("writable_layer_bytes", in: 0...(1 << 50)) {
            if value == 0 || value >= 1 << 20 { object["writable_layer_bytes"] = .integer(value) } else {
                docker.problem("writable_layer_bytes", "\(value) is out of range; use 0 (no limit) or an integer from 1048576 (1 MiB) to \(Int64(1) << 50)")
            }
        }
        if let value = docker.integer("pids_limit", in: 1...4_194_304) { object["pids_limit"] = .integer(value) }
        if let value = docker.integer("memory_limit_bytes") {
            if ResourceLimitsSpec.memoryLimitSetting(value) != nil { object["memory_limit_bytes"] = .integer(value) } else {
                docker.problem("memory_limit_bytes", "\(value) is out of range; use \(ResourceLimitsSpec.memoryLimitSettingRange)")
            }
        }
        if let name = docker.string("managed_network") {
            if DockerNetworkName.isValid(name), name != "host" { object["managed_network"] = .string(name) } else {
                docker.problem("managed_network", "'\(name)' is not a Docker network name (letters, digits, '_', '.', '-')")
            }
        }
        if let subnet = docker.string("subnet") {
            do {
                let parsed = try IPv4Subnet(subnet)
                if parsed.prefixLength > 28 { docker.problem("subnet", "\(subnet) is too small; give at least a /28") } else { object["subnet"] = .string(subnet) }
            } catch {
                docker.problem("subnet", error.message)
            }
        }
        if object["network"] != nil, object["managed_network"] != nil || object["subnet"] != nil || object["egress"] != nil {
            docker.problem("network", "set network (an existing network, or \"host\") or managed_network/subnet/egress (the drone's own network), not both")
        }
        if let gpu = docker.bool("insecure_gpu") { object["insecure_gpu"] = .bool(gpu) }
        if let allow = docker.bool("allow_volume_mounts") {
            agent.allowVolumeMounts = allow
            object["allow_mounts"] = .bool(allow)
        }
        if let syslog = docker.string("syslog") {
            object["log_driver"] = .string("syslog")
            object["log_options"] = .object(JSONObject([("syslog-address", .string(syslog))]))
        }
        return object
    }

    static func json(_ table: ConfigTable) -> JSONObject {
        JSONObject(table.entries.map { ($0.key, json($0.value)) })
    }

    static func json(_ value: ConfigValue) -> JSONValue {
        switch value {
        case .string(let text), .dateTime(let text), .unparsed(let text, _): .string(text)
        case .integer(let number): .integer(number)
        case .float(let number): .double(number)
        case .boolean(let flag): .bool(flag)
        case .array(let items): .array(items.map(json))
        case .table(let table): .object(json(table))
        }
    }
}

extension StringProtocol {
    var trimmingSpaces: String { String(self).trimmingCharacters(in: .whitespaces) }
}

import Foundation
import PlaneProxy
