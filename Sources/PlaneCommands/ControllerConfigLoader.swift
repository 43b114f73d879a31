import Foundation
import NATS
import PlaneController
import PlaneCore
import PlaneMessaging
import PlaneDNS

/// Turns `controller.toml` (plus `PLANE_*` overrides) into a `ControllerConfiguration`.
/// Every v0.3.10 key is accepted; unknown keys and wrong types are reported by name, all
/// at once, and nothing starts.
enum ControllerConfigLoader {
    static func load(path: String?, environment: [String: String]) throws(ConfigError) -> ControllerConfiguration {
        let (table, source, ignored) = try TOMLConfigFile.load(path: path, environment: environment)
        var config = try configuration(from: table, source: source)
        config.ignoredVariables = (ignored + config.ignoredVariables).sorted()
        return config
    }

    static func configuration(from table: ConfigTable, source: String) throws(ConfigError) -> ControllerConfiguration {
        let root = ConfigReader(table)
        let nats = NATSConfigReader.read(root.table("nats"), in: root, name: "plane-controller")
        var scheduler: SchedulerConfiguration?
        if let section = root.table("scheduler") {
            var config = SchedulerConfiguration()
            if let v = section.int("drone_timeout_secs", in: 1...3600) { config.droneTimeout = .seconds(v) }
            if let v = section.int("spawn_timeout_secs", in: 1...600) { config.spawnTimeout = .seconds(v) }
            if let v = section.int("recent_spawn_window_secs", in: 0...3600) { config.recentSpawnWindow = .seconds(v) }
            if let v = section.int("max_spawn_attempts", in: 1...20) { config.maxSpawnAttempts = v }
            if let v = section.int("drone_lost_grace_secs", in: 5...86_400) { config.droneLostGrace = .seconds(v) }
            if let v = section.int("lock_reassign_after_secs", in: 2...86_400) { config.lockReassignAfter = .seconds(v) }
            if let v = section.int("lease_margin_secs", in: 1...3600) { config.leaseMargin = .seconds(v) }
            if let v = section.integer("status_history_messages", in: 1...1_000_000) { config.statusHistoryMessages = v }
            if let v = section.int("status_history_max_age_secs", in: 60...(10 * 365 * 86_400)) { config.statusHistoryMaxAge = .seconds(v) }
            if let v = section.int("replicas", in: 1...5) { config.replicas = v }
            if let v = section.int("max_drones", in: 1...1_000_000) { config.maxDrones = v }
            if let v = section.int("jetstream_wait_secs", in: 0...3600) { config.jetStreamWait = .seconds(v) }
            scheduler = config
        }
        var dns: ControllerDNSConfiguration?
        if let section = root.table("dns") {
            var config = ControllerDNSConfiguration()
            if let port = section.int("port", in: 0...65535) { config.server.port = port }
            if let bind = section.string("bind_ip") { config.server.bindHost = bind }
            if let email = section.string("soa_email") {
                do { config.mailbox = try DNSAuthority.mailbox(fromEmail: email) } catch { section.problem("soa_email", error.message) }
            }
            if let name = section.string("nameserver") {
                do { config.nameServer = try DNSName(name) } catch { section.problem("nameserver", error.message) }
            }
            for zone in section.stringArray("zones") ?? [] {
                do { config.zones.append(try DNSName(zone)) } catch { section.problem("zones", error.message) }
            }
            if let v = section.int("max_records", in: 1...10_000_000) { config.limits.maxRecords = v }
            if let v = section.int("max_txt_per_name", in: 1...255) { config.limits.maxTextsPerName = v }
            if let v = section.int("max_txt_bytes", in: 1...16_384) { config.limits.maxTextBytes = v }
            if let v = section.int("max_zones", in: 1...10_000) { config.limits.maxZones = v }
            if let v = section.int("tcp_timeout_secs", in: 1...3600) { config.server.tcpTimeout = .seconds(v) }
            if let v = section.int("tcp_max_connections", in: 1...1_000_000) { config.server.maxTCPConnections = v }
            if let v = section.int("tcp_max_connections_per_address", in: 1...1_000_000) { config.server.maxTCPConnectionsPerAddress = v }
            if let v = section.int("rate_limit", in: 0...DNSResponseRateLimit.responsesPerSecondRange.upperBound) { config.server.rateLimit.responsesPerSecond = v }
            if let v = section.int("rate_limit_slip", in: 0...100) { config.server.rateLimit.slip = v }
            if let v = section.int("rate_limit_ipv4_prefix", in: 0...32) { config.server.rateLimit.ipv4PrefixLength = v }
            if let v = section.int("rate_limit_ipv6_prefix", in: 0...128) { config.server.rateLimit.ipv6PrefixLength = v }
            dns = config
        }
        var http: HTTPAPIConfiguration?
        if let section = root.table("http") {
            let clusterText = section.string("cluster")
            var cluster: ClusterName?
            if let clusterText {
                do { cluster = try ClusterName(clusterText) } catch { section.problem("cluster", error.message) }
            } else {
                section.problem("cluster", "missing; name the cluster spawns go to, e.g. cluster = \"plane.example.com\"")
            }
            var config = HTTPAPIConfiguration(cluster: cluster ?? "invalid.cluster")
            if let port = section.int("port", in: 0...65535) { config.port = port }
            if let bind = section.string("bind_ip") { config.bindHost = bind }
            if let seconds = section.int("request_timeout_secs", in: 1...3600) { config.requestTimeout = .seconds(seconds) }
            if let count = section.int("max_connections", in: 1...1_000_000) { config.maxConnections = count }
            if let count = section.int("max_connections_per_address", in: 1...1_000_000) { config.maxConnectionsPerAddress = count }
            if let count = section.int("max_status_streams", in: 1...1_000_000) { config.maxStatusStreams = count }
            if let services = section.table("services") {
                for key in services.table.keys {
                    if case .table = services.table[key] {
                        if let service = services.table(key).flatMap(readService) { config.services[key] = service }
                    } else if let image = services.string(key) {
                        config.services[key] = HTTPServiceConfiguration(image: image)
                    }
                }
            }
            config.token = readToken(section)
            if let problem = config.exposureProblem { section.problem(config.token == nil ? "bind_ip" : "token", problem) }
            http = config
        }
        let limits = InputLimits.read(root.table("limits"))
        let logForwarding = LogForwardingConfigReader.read(root.table("log_forwarding"))
        let tracing = TracingConfiguration.read(root.table("tracing"))
        if scheduler == nil && dns == nil && http == nil && root.problems.isEmpty {
            root.problem("controller", "no part is enabled; add [scheduler], [dns] and/or [http] (as v0.3.10: \"No event loops selected\")")
        }
        try root.finish(source: source)
        guard let nats else { throw ConfigError(.invalid, source: source, problems: ["nats: missing"]) }
        var config = ControllerConfiguration(nats: nats, scheduler: scheduler, dns: dns, http: http, limits: limits)
        config.ignoredVariables = root.ignoredVariables
        config.logForwarding = logForwarding
        config.tracing = tracing
        return config
    }
}

extension ControllerConfigLoader {
    /// `[http.services.NAME]`: `image`, `env`, `allowed_env`, `allowed_mount_sources`, and
    /// issue 14's `runtime_class`, `pool`, `runtime_options`, `memory_limit_bytes`,
    /// `readiness_path`, `readiness_timeout_secs`, `max_lifetime_secs` and what callers may
    /// choose (`allowed_runtime_classes`, `allowed_pools`, `allowed_runtime_options`).
    static func readService(_ section: ConfigReader) -> HTTPServiceConfiguration? {
        let image = section.string("image")
        if image == nil { section.problem("image", "missing; name the image the service runs, e.g. image = \"ghcr.io/example/app:1\"") }
        var service = HTTPServiceConfiguration(image: image ?? "")
        if let env = section.table("env") {
            for key in env.table.keys { if let value = env.string(key) { service.env[key] = value } }
        }
        service.allowedEnv = Set(section.stringArray("allowed_env") ?? [])
        for source in section.stringArray("allowed_mount_sources") ?? [] {
            if source.hasPrefix("/") {
                if HTTPServiceConfiguration.normalizedAbsolutePath(source) == nil {
                    section.problem("allowed_mount_sources", "'\(source)' must be an absolute path without '..'")
                    continue
                }
            } else if source.isEmpty || source.contains("/") {
                section.problem("allowed_mount_sources", "'\(source)' is neither an absolute path nor a Docker volume name")
                continue
            }
            service.allowedMountSources.append(source)
        }
        do {
            if let name = section.string("runtime_class") { service.runtimeClass = try FleetLabel(name) }
        } catch { section.problem("runtime_class", error.message) }
        do {
            if let name = section.string("pool") { service.pool = try FleetLabel(name) }
        } catch { section.problem("pool", error.message) }
        if let options = section.table("runtime_options") {
            service.runtimeOptions = DroneConfigLoader.json(options.table)
            for key in options.table.keys { _ = options.contains(key) }
        }
        if let bytes = section.integer("memory_limit_bytes", in: (1 << 20)...(1 << 50)) { service.memoryLimitBytes = bytes }
        let readinessTimeout = section.integer("readiness_timeout_secs", in: 1...Int64(ReadinessCheck.maximumTimeoutSeconds))
        if let path = section.string("readiness_path") {
            do {
                service.readiness = try ReadinessCheck(path: path, timeoutSeconds: readinessTimeout.map { DurationSeconds(UInt64($0)) })
            } catch { section.problem("readiness_path", error.message) }
        } else if readinessTimeout != nil {
            section.problem("readiness_timeout_secs", "needs readiness_path")
        }
        if let seconds = section.integer("max_lifetime_secs", in: 1...(1 << 40)) { service.maxLifetimeSeconds = DurationSeconds(UInt64(seconds)) }
        if let size = section.int("warm_pool", in: 0...WarmPoolDefinition.maximumSize) {
            service.warmPool = size
            if size > 0, !WarmPoolDefinition.isValidName(String(section.path.split(separator: ".").last ?? "")) { section.problem("warm_pool", "the service's name must be usable as a pool's: \(WarmPoolDefinition.nameRule)") }
        }
        service.allowedRuntimeClasses = Set(section.stringArray("allowed_runtime_classes") ?? [])
        service.allowedPools = Set(section.stringArray("allowed_pools") ?? [])
        service.allowedRuntimeOptions = Set(section.stringArray("allowed_runtime_options") ?? [])
        return image == nil ? nil : service
    }

    /// `token`, or the first line of the file `token_file` names (at most 4 KiB), not both.
    static func readToken(_ section: ConfigReader) -> String? {
        let inline = section.string("token")
        guard let path = section.string("token_file") else { return inline }
        if inline != nil {
            section.problem("token_file", "set token or token_file, not both")
            return nil
        }
        do {
            let bytes = try BoundedFile.read(path, limit: 4096)
            let line = String(decoding: bytes, as: UTF8.self).split(whereSeparator: \.isNewline).first.map(String.init) ?? ""
            let token = line.trimmingCharacters(in: .whitespaces)
            if token.isEmpty { section.problem("token_file", "\(path) is empty; write the token on its first line") }
            return token.isEmpty ? nil : token
        } catch {
            section.problem("token_file", "\(path) cannot be read: \(error.reason)")
            return nil
        }
    }
}

/// A NATS inbox prefix from configuration: tokens without wildcards or blanks, so that a
/// permission like `_INBOX_plane_drone_1.>` covers every reply subject made from it.
enum NATSInboxPrefix {
    static func isValid(_ prefix: String) -> Bool {
        guard !prefix.isEmpty, prefix.utf8.count <= 128 else { return false }
        return prefix.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { token in
            !token.isEmpty && token.utf8.allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 >= 65 && $0 <= 90) || ($0 >= 97 && $0 <= 122) || $0 == 95 || $0 == 45 }
        }
    }
}

/// `[nats]` as both controller.toml and drone.toml write it.
enum NATSConfigReader {
    static func read(_ section: ConfigReader?, in root: ConfigReader, name: String) -> NATSClientConfiguration? {
        guard let section else {
            root.problem("nats", "missing; add [nats] with hosts = [\"nats://127.0.0.1:4222\"]")
            return nil
        }
        guard let hosts = section.stringArray("hosts"), !hosts.isEmpty else {
            if section.table.keys.contains("hosts") == false { section.problem("hosts", "missing; list the NATS servers, e.g. hosts = [\"nats://127.0.0.1:4222\"]") }
            _ = section.table("auth")
            _ = section.string("ca_file")
            return nil
        }
        var servers: [NATSServerURL] = []
        for host in hosts {
            do { servers.append(try NATSServerURL(host)) } catch { section.problem("hosts", error.message) }
        }
        var config = NATSClientConfiguration(servers: servers, name: name)
        if let auth = section.table("auth") {
            let token = auth.string("token")
            let user = auth.string("username")
            let password = auth.string("password")
            switch (token, user, password) {
            case (let token?, nil, nil): config.auth = .token(token)
            case (nil, let user?, let password?): config.auth = .userPassword(user: user, password: password)
            default: section.problem("auth", "write either { token = \"...\" } or { username = \"...\", password = \"...\" }")
            }
        }
        if let ca = section.string("ca_file") { config.tls = .init(caFile: ca, required: true) }
        if let prefix = section.string("inbox_prefix") {
            if NATSInboxPrefix.isValid(prefix) { config.inboxPrefix = prefix } else {
                section.problem("inbox_prefix", "'\(prefix)' must be subject tokens of letters, digits, '_' and '-' separated by '.', e.g. \"_INBOX_plane_drone_1\"")
            }
        }
        // The controller retries its first connection like v0.3.10 (30 × 10 s) would, but
        // with backoff; afterwards it reconnects forever.
        config.initialConnectAttempts = 30
        return config
    }
}
