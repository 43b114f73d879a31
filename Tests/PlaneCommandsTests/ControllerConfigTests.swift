import Foundation
import NATS
import PlaneController
import PlaneCore
import PlaneTestSupport
import Testing
@testable import PlaneCommands

struct ControllerConfigTests {
    func load(_ toml: String, environment: [String: String] = [:]) throws(ConfigError) -> ControllerConfiguration {
        var table = try TOMLConfigFile.parse(toml, source: "controller.toml")
        table.applyEnvironment(environment)
        return try ControllerConfigLoader.configuration(from: table, source: "controller.toml")
    }

    func problems(_ toml: String, environment: [String: String] = [:]) -> [String] {
        do {
            _ = try load(toml, environment: environment)
            return []
        } catch {
            return error.problems
        }
    }

    @Test func v0310ConfigurationStillWorks() throws {
        // spec §4.5's sample, as a v0.3.10 deployment wrote it.
        let config = try load("""
            [nats]
            hosts = ["nats", "nats2:4223", "nats://nats3:4224"]
            auth = { token = "secret" }

            [scheduler]

            [dns]
            port = 53
            bind_ip = "0.0.0.0"
            soa_email = "admin@plane.test"
            """)
        #expect(config.nats.servers.map(\.host) == ["nats", "nats2", "nats3"] && config.nats.servers.map(\.port) == [4222, 4223, 4224])
        #expect(config.nats.auth == .token("secret"))
        #expect(config.scheduler == SchedulerConfiguration())
        #expect(config.dns?.server.port == 53 && config.dns?.mailbox?.description == "admin.plane.test." && config.http == nil)
    }

    @Test func everyKeyOfOurOwn() throws {
        let config = try load("""
            [nats]
            hosts = ["127.0.0.1:4222"]
            auth = { username = "u", password = "p" }
            ca_file = "/etc/plane/nats-ca.pem"

            [scheduler]
            drone_timeout_secs = 7
            spawn_timeout_secs = 3
            recent_spawn_window_secs = 20
            max_spawn_attempts = 5
            drone_lost_grace_secs = 90
            lock_reassign_after_secs = 45
            lease_margin_secs = 7
            status_history_messages = 50
            status_history_max_age_secs = 86400
            replicas = 3
            jetstream_wait_secs = 300

            [dns]
            port = 5353
            bind_ip = "127.0.0.1"
            nameserver = "ns1.plane.example"
            zones = ["plane.example", "other.example"]
            tcp_timeout_secs = 4
            tcp_max_connections = 2000
            tcp_max_connections_per_address = 8
            rate_limit = 50
            rate_limit_slip = 1
            rate_limit_ipv4_prefix = 32
            rate_limit_ipv6_prefix = 64

            [http]
            port = 9191
            bind_ip = "127.0.0.1"
            cluster = "plane.example"
            request_timeout_secs = 12
            max_connections = 300
            max_connections_per_address = 20
            max_status_streams = 40
            services.hello-world = "plane-test-server:latest"
            services.notebook = "registry.example/nb:3"
            """)
        let s = try #require(config.scheduler)
        #expect(s.droneTimeout == .seconds(7) && s.spawnTimeout == .seconds(3) && s.recentSpawnWindow == .seconds(20) && s.maxSpawnAttempts == 5)
        #expect(s.droneLostGrace == .seconds(90) && s.statusHistoryMessages == 50 && s.statusHistoryMaxAge == .seconds(86400) && s.replicas == 3)
        #expect(s.lockReassignAfter == .seconds(45) && s.leaseMargin == .seconds(7) && s.jetStreamWait == .seconds(300))
        #expect(config.nats.auth == .userPassword(user: "u", password: "p") && config.nats.tls?.caFile == "/etc/plane/nats-ca.pem")
        #expect(config.dns?.nameServer?.description == "ns1.plane.example." && config.dns?.zones.map(\.key) == ["plane.example", "other.example"])
        let server = try #require(config.dns?.server)
        #expect(server.tcpTimeout == .seconds(4) && server.maxTCPConnections == 2000 && server.maxTCPConnectionsPerAddress == 8)
        #expect(server.rateLimit.responsesPerSecond == 50 && server.rateLimit.slip == 1)
        #expect(server.rateLimit.ipv4PrefixLength == 32 && server.rateLimit.ipv6PrefixLength == 64)
        #expect(config.http?.port == 9191 && config.http?.cluster == "plane.example")
        #expect(config.http?.requestTimeout == .seconds(12) && config.http?.maxConnections == 300 && config.http?.maxStatusStreams == 40)
        #expect(config.http?.maxConnectionsPerAddress == 20)
        #expect(config.http?.services == ["hello-world": "plane-test-server:latest", "notebook": "registry.example/nb:3"])
    }

    @Test func environmentOverrides() throws {
        let config = try load("[nats]\nhosts = [\"a\"]\n[dns]\nport = 53\n", environment: [
            "PLANE_NATS__HOSTS": "nats1,nats2:4300", "PLANE_DNS__PORT": "5353", "PLANE_DNS__SOA_EMAIL": "ops@plane.test",
            "PLANE_SCHEDULER__DRONE_TIMEOUT_SECS": "9", "PATH": "/usr/bin",
        ])
        #expect(config.nats.servers.map(\.host) == ["nats1", "nats2"] && config.nats.servers[1].port == 4300)
        #expect(config.dns?.server.port == 5353 && config.dns?.mailbox?.description == "ops.plane.test.")
        #expect(config.scheduler?.droneTimeout == .seconds(9))
    }

    @Test func environmentVariablesThatNameNoKeyAreIgnored() throws {
        let file = "[nats]\nhosts = [\"a\"]\n[dns]\nport = 53\n"
        var table = try TOMLConfigFile.parse(file, source: "controller.toml")
        let notApplied = table.applyEnvironment(["PLANE_BIN": "/opt/other/bin", "PLANE_DNS__PROT": "54", "PLANE_DNS": "text",
                                                 "PLANE_NATS__HOSTS__X": "1", "PLANE_": "x", "PLANE_A____B": "y", "PLANE_LOG": "debug"])
        // The file's table and list stay; names that are no key path are not applied.
        #expect(notApplied == ["PLANE_", "PLANE_A____B", "PLANE_DNS", "PLANE_NATS__HOSTS__X"])
        let config = try ControllerConfigLoader.configuration(from: table, source: "controller.toml")
        #expect(config.dns?.server.port == 53 && config.nats.servers.map(\.host) == ["a"])
        #expect(config.ignoredVariables == ["PLANE_BIN", "PLANE_DNS__PROT"])
        // A whole section made by variables alone is ignored too; one naming a key is applied.
        let sectioned = try load(file, environment: ["PLANE_OTHER_TOOL__MODE": "fast", "PLANE_DNS__PORT": "5353"])
        #expect(sectioned.ignoredVariables == ["PLANE_OTHER_TOOL__MODE"] && sectioned.dns?.server.port == 5353)
        // A wrong value for a key it names, and a mistake in the file, stay errors.
        #expect(problems(file, environment: ["PLANE_DNS__PORT": "x"]).contains { $0.contains("PLANE_DNS__PORT") })
        #expect(problems(file + "prot = 54\n", environment: ["PLANE_BIN": "x"]).contains { $0.hasPrefix("dns.prot: unknown key") })
    }

    @Test func theCommandWarnsOnceOfIgnoredVariables() async throws {
        let directory = try TestEnvironment.temporaryDirectory("controller-env")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/controller.toml"
        try "[nats]\nhosts=[\"127.0.0.1:4222\"]\n[scheduler]\n".write(toFile: path, atomically: true, encoding: .utf8)
        // The warning comes before anything starts (here: before the configuration is printed).
        let (status, output) = try await SystemProgram.run(executable: try TestExecutables.path("plane"), ["controller", "--dump-config", path],
                                                           environment: ["PLANE_BIN": "/opt/elsewhere/plane", "PLANE_SCHEDULER__DRONE_TIMEOUT": "secret-value"])
        #expect(status == 0 && output.contains("[scheduler]"), "\(output)")
        let warnings = output.split(separator: "\n").filter { $0.contains("config.environment_ignored") }
        #expect(warnings.count == 1, "\(output)")
        #expect(warnings.first?.contains("PLANE_BIN, PLANE_SCHEDULER__DRONE_TIMEOUT") == true, "\(output)")
        #expect(!output.contains("secret-value"))
    }

    @Test func badConfigurationsNameTheirKeys() {
        let all = problems("""
            [nats]
            hosts = "nats"
            [dns]
            prot = 53
            port = "fifty-three"
            soa_email = "nobody"
            [scheduler]
            drone_timeout_secs = 0
            [http]
            port = 9090
            """)
        #expect(all.contains { $0.hasPrefix("nats.hosts: expected a list of strings") }, "\(all)")
        #expect(all.contains { $0.hasPrefix("dns.prot: unknown key") && $0.contains("port") }, "\(all)")
        #expect(all.contains { $0.hasPrefix("dns.port: expected an integer") }, "\(all)")
        #expect(all.contains { $0.hasPrefix("dns.soa_email:") }, "\(all)")
        #expect(all.contains { $0.hasPrefix("scheduler.drone_timeout_secs: 0 is out of range") }, "\(all)")
        #expect(all.contains { $0.hasPrefix("http.cluster: missing") }, "\(all)")
        let http = "[nats]\nhosts=[\"a\"]\n[http]\ncluster=\"plane.test\"\n"
        #expect(problems(http + "max_connections = 0\n").contains { $0.hasPrefix("http.max_connections: 0 is out of range") })
        #expect(problems(http + "max_connections_per_address = -1\n").contains { $0.hasPrefix("http.max_connections_per_address: -1 is out of range") })
        #expect(problems(http + "request_timeout_secs = 99999\n").contains { $0.hasPrefix("http.request_timeout_secs:") })
        #expect(problems(http + "max_status_streams = -1\n").contains { $0.hasPrefix("http.max_status_streams:") })
        let dns = "[nats]\nhosts=[\"a\"]\n[dns]\n"
        #expect(problems(dns + "tcp_timeout_secs = 0\n").contains { $0.hasPrefix("dns.tcp_timeout_secs: 0 is out of range") })
        #expect(problems(dns + "tcp_max_connections = 0\n").contains { $0.hasPrefix("dns.tcp_max_connections:") })
        #expect(problems(dns + "tcp_max_connections_per_address = 9999999999\n").contains { $0.hasPrefix("dns.tcp_max_connections_per_address:") })
        #expect(problems(dns + "rate_limit = -1\n").contains { $0.hasPrefix("dns.rate_limit:") })
        #expect(problems(dns + "rate_limit = 99999999999\n").contains { $0.hasPrefix("dns.rate_limit:") })
        #expect(problems(dns + "rate_limit_ipv4_prefix = 33\n").contains { $0.hasPrefix("dns.rate_limit_ipv4_prefix:") })
        #expect(problems(dns + "rate_limit_ipv6_prefix = 129\n").contains { $0.hasPrefix("dns.rate_limit_ipv6_prefix:") })
        #expect(problems(dns + "rate_limit_slip = 101\n").contains { $0.hasPrefix("dns.rate_limit_slip:") })
        #expect(problems("[nats]\nhosts=[\"a\"]\n").contains { $0.contains("no part is enabled") })
        #expect(problems("[dns]\n").contains { $0.hasPrefix("nats: missing") })
        #expect(problems("[nats]\nhosts=[\"a\"]\n[dns]\n", environment: ["PLANE_DNS__PORT": "x"]).contains { $0.contains("PLANE_DNS__PORT") })
        #expect(problems("[nats]\nhosts=[\"a\"]\nauth = { token = \"t\", username = \"u\" }\n[dns]\n").contains { $0.hasPrefix("nats.auth:") })
        do {
            _ = try load("[nats\nhosts=1")
            Issue.record("a syntax error must be reported")
        } catch {
            #expect(error.code == .syntax && error.message.contains("line 1"))
        }
    }

    @Test func theHTTPAPIIsLoopbackOnlyUnlessItHasAToken() throws {
        let base = "[nats]\nhosts = [\"a\"]\n[http]\ncluster = \"plane.test\"\n"
        let local = try load(base)
        #expect(local.http?.bindHost == "127.0.0.1" && local.http?.token == nil)
        // Exposed without a token: refused, saying what to do.
        let exposed = problems(base + "bind_ip = \"0.0.0.0\"\n")
        #expect(exposed.contains { $0.hasPrefix("http.bind_ip:") && $0.contains("token") }, "\(exposed)")
        #expect(problems(base + "bind_ip = \"127.0.0.2\"\n").isEmpty && problems(base + "bind_ip = \"::1\"\n").isEmpty)
        #expect(problems(base + "bind_ip = \"127.0.0.1.5\"\n").contains { $0.hasPrefix("http.bind_ip:") })
        // A token: inline, from the environment or from a file; short ones and both at once refused.
        let token = String(repeating: "a1", count: 16)
        #expect(try load(base + "bind_ip = \"0.0.0.0\"\ntoken = \"\(token)\"\n").http?.token == token)
        #expect(try load(base + "bind_ip = \"0.0.0.0\"\n", environment: ["PLANE_HTTP__TOKEN": token]).http?.token == token)
        #expect(problems(base + "token = \"short\"\n").contains { $0.hasPrefix("http.token:") && $0.contains("at least 16") })
        #expect(problems(base + "token = \"has a space in it ok\"\n").contains { $0.hasPrefix("http.token:") })
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("plane-token-\(UInt32.random(in: 0...UInt32.max))").path
        defer { try? FileManager.default.removeItem(atPath: file) }
        try Data((token + "\n").utf8).write(to: URL(fileURLWithPath: file))
        #expect(try load(base + "bind_ip = \"0.0.0.0\"\ntoken_file = \"\(file)\"\n").http?.token == token)
        #expect(problems(base + "token = \"\(token)\"\ntoken_file = \"\(file)\"\n").contains { $0.hasPrefix("http.token_file:") })
        #expect(problems(base + "token_file = \"/nonexistent/plane-token\"\n").contains { $0.hasPrefix("http.token_file:") })
    }

    @Test func servicesTakeV0310sFormAndTablesWithWhatCallersMayAdd() throws {
        let config = try load("""
            [nats]
            hosts = ["a"]
            [http]
            cluster = "plane.test"
            services.plain = "img:1"
            [http.services.notebook]
            image = "nb:3"
            env = { MODE = "shared" }
            allowed_env = ["USER_NAME"]
            allowed_mount_sources = ["/srv/notebooks", "scratch"]
            """)
        let services = try #require(config.http?.services)
        #expect(services["plain"] == HTTPServiceConfiguration(image: "img:1"))
        #expect(services["notebook"] == HTTPServiceConfiguration(image: "nb:3", env: ["MODE": "shared"], allowedEnv: ["USER_NAME"],
                                                                 allowedMountSources: ["/srv/notebooks", "scratch"]))
        let bad = problems("[nats]\nhosts = [\"a\"]\n[http]\ncluster = \"plane.test\"\n[http.services.x]\nallowed_mount_sources = [\"/srv/../etc\", \"a/b\"]\nimag = \"y\"\n")
        #expect(bad.contains { $0.hasPrefix("http.services.x.image: missing") }, "\(bad)")
        #expect(bad.contains { $0.hasPrefix("http.services.x.imag: unknown key") }, "\(bad)")
        #expect(bad.contains { $0.hasPrefix("http.services.x.allowed_mount_sources: '/srv/../etc'") }, "\(bad)")
        #expect(bad.contains { $0.hasPrefix("http.services.x.allowed_mount_sources: 'a/b'") }, "\(bad)")
    }

    @Test func servicesPlaceTheirSpawns() throws {
        let config = try load("""
            [nats]
            hosts = ["a"]
            [http]
            cluster = "plane.test"
            [http.services.sandbox]
            image = "sb:1"
            runtime_class = "sandbox"
            pool = "eu"
            runtime_options = { pids_limit = 64 }
            memory_limit_bytes = 268435456
            readiness_path = "/healthz"
            readiness_timeout_secs = 20
            max_lifetime_secs = 3600
            allowed_runtime_classes = ["fast"]
            allowed_pools = ["*"]
            allowed_runtime_options = ["pids_limit"]
            """)
        let service = try #require(config.http?.services["sandbox"])
        #expect(service.runtimeClass == "sandbox" && service.pool == "eu" && service.runtimeOptions["pids_limit"] == .integer(64))
        let readiness = try ReadinessCheck(path: "/healthz", timeoutSeconds: 20)
        #expect(service.memoryLimitBytes == 268_435_456 && service.readiness == readiness)
        #expect(service.maxLifetimeSeconds == 3600 && service.allowedRuntimeClasses == ["fast"] && service.allowedPools == ["*"])
        let bad = problems("[nats]\nhosts = [\"a\"]\n[http]\ncluster = \"plane.test\"\n[http.services.x]\nimage = \"y\"\nruntime_class = \"Big\"\nreadiness_timeout_secs = 5\nmax_lifetime_secs = 0\n")
        for prefix in ["http.services.x.runtime_class:", "http.services.x.readiness_timeout_secs: needs readiness_path", "http.services.x.max_lifetime_secs:"] {
            #expect(bad.contains { $0.hasPrefix(prefix) }, "\(prefix) in \(bad)")
        }
    }

    @Test func theCommandRefusesABadFileAndDumpsAGoodOne() async throws {
        let directory = try TestEnvironment.temporaryDirectory("controller-config")
        let bad = directory + "/bad.toml"
        let good = directory + "/good.toml"
        try "[nats]\nhosts=[\"127.0.0.1:4222\"]\n[dsn]\n".write(toFile: bad, atomically: true, encoding: .utf8)
        try "[nats]\nhosts=[\"127.0.0.1:4222\"]\n[dns]\nport=5353\n[http]\ncluster=\"plane.test\"\nbind_ip=\"0.0.0.0\"\ntoken=\"secret-token-0123456789\"\n[http.services.nb]\nimage=\"nb:1\"\nallowed_env=[\"U\"]\n"
            .write(toFile: good, atomically: true, encoding: .utf8)
        let plane = try TestExecutables.path("plane")
        let (badStatus, badOutput) = try await run(plane, ["controller", bad])
        #expect(badStatus == 2 && badOutput.contains("dsn: unknown key"))
        let (missingStatus, missingOutput) = try await run(plane, ["controller", "--config", directory + "/missing.toml"])
        #expect(missingStatus == 2 && missingOutput.contains("Cannot read the configuration"))
        let (goodStatus, goodOutput) = try await run(plane, ["controller", "--dump-config", "--config", good])
        #expect(goodStatus == 0 && goodOutput.contains("port = 5353"))
        #expect(goodOutput.contains("token = (set)") && !goodOutput.contains("secret-token") && goodOutput.contains("allowed_env = [\"U\"]"), "\(goodOutput)")
    }

    func run(_ path: String, _ arguments: [String]) async throws -> (Int32, String) {
        try await SystemProgram.run(executable: path, arguments)
    }

    /// `[tracing]` (issue 16): the OTLP/HTTP traces URL, the protocol, a service name and the
    /// export delay; anything else is an error that names the key.
    @Test func tracingSectionIsCheckedKeyByKey() throws {
        let base = "[nats]\nhosts=[\"a\"]\n[dns]\n"
        #expect(try load(base).tracing == nil)
        let traced = try load(base + "[tracing]\nendpoint = \"http://127.0.0.1:4318/v1/traces\"\nprotocol = \"http/json\"\nservice_name = \"ctl-a\"\nexport_delay_ms = 250\n").tracing
        #expect(traced?.endpoint == "http://127.0.0.1:4318/v1/traces" && traced?.exportProtocol == .httpJSON && traced?.serviceName == "ctl-a")
        #expect(traced?.exportDelay == .milliseconds(250))
        #expect(try load(base + "[tracing]\nendpoint = \"https://collector.example:4318/v1/traces\"\n").tracing?.exportProtocol == .httpProtobuf)
        for (section, key) in [("[tracing]\n", "tracing.endpoint"), ("[tracing]\nendpoint = \"ftp://x/v1/traces\"\n", "tracing.endpoint"),
                               ("[tracing]\nendpoint = \"http://\"\n", "tracing.endpoint"), ("[tracing]\nendpoint = \"http://u:p@h/\"\n", "tracing.endpoint"),
                               ("[tracing]\nendpoint = \"http://h/\"\nprotocol = \"grpc\"\n", "tracing.protocol"),
                               ("[tracing]\nendpoint = \"http://h/\"\nexport_delay_ms = 0\n", "tracing.export_delay_ms"),
                               ("[tracing]\nendpoint = \"http://h/\"\nservice_name = \"\"\n", "tracing.service_name"),
                               ("[tracing]\nendpoint = \"http://h/\"\nsampler = 1\n", "tracing.sampler")] {
            let found = problems(base + section)
            #expect(found.contains { $0.hasPrefix(key) }, "\(section): \(found)")
        }
    }
}
