import ContainerRuntime
import DockerRuntime
import Foundation
import NATS
import PlaneACME
import PlaneCore
import PlaneDrone
import PlaneProxy
import PlaneTestSupport
import Testing
@testable import PlaneCommands

struct DroneConfigTests {
    func load(_ toml: String, environment: [String: String] = [:]) throws(ConfigError) -> DroneConfiguration {
        var table = try TOMLConfigFile.parse(toml, source: "drone.toml")
        table.applyEnvironment(environment)
        return try DroneConfigLoader.configuration(from: table, source: "drone.toml")
    }

    func problems(_ toml: String) -> [String] {
        do {
            _ = try load(toml)
            return []
        } catch {
            return error.problems
        }
    }

    @Test func v0310SampleStillWorks() throws {
        // spec §5.9, every key as v0.3.10 wrote it.
        let config = try load("""
            drone_id = "my-drone-1"
            db_path = "drone.sqlite3"
            cluster_domain = "plane.test"

            [nats]
            hosts = ["nats"]
            auth = { token = "secret" }

            [cert]
            key_path = "/etc/plane/auth/site-key.pem"
            cert_path = "/etc/plane/auth/site-cert.pem"

            [acme]
            server = "https://acme-v02.api.letsencrypt.org/directory"
            admin_email = "admin@plane.dev"
            [acme.eab]
            key_id = "my-key-id"
            key = "bXkgYmFzZTY0IGtleQ=="

            [agent]
            ip = "203.0.113.7"
            drone_id = "my-drone-1"
            [agent.docker]
            runtime = "runsc"
            connection = { socket = "/var/run/docker.sock" }
            network = "plane"
            insecure_gpu = false
            allow_volume_mounts = true
            syslog = "udp://10.0.0.5:514"

            [proxy]
            bind_ip = "0.0.0.0"
            https_port = 443
            passthrough = "10.0.0.9:8080"
            """)
        #expect(config.droneID?.rawValue == "my-drone-1" && config.cluster == "plane.test" && config.effectiveDatabasePath == "drone.sqlite3")
        #expect(config.nats?.auth == .token("secret"))
        #expect(config.certificate == CertificateFiles(keyPath: "/etc/plane/auth/site-key.pem", certificatePath: "/etc/plane/auth/site-cert.pem"))
        #expect(config.acme?.externalAccountBinding?.keyID == "my-key-id")
        let agent = try #require(config.agent)
        #expect(agent.ip == .literal("203.0.113.7") && agent.runtime == "docker" && agent.allowVolumeMounts)
        #expect(agent.runtimeConfiguration["oci_runtime"]?.stringValue == "runsc" && agent.runtimeConfiguration["endpoint"]?.stringValue == "/var/run/docker.sock")
        #expect(agent.runtimeConfiguration["log_driver"]?.stringValue == "syslog" && agent.runtimeConfiguration["network"]?.stringValue == "plane")
        #expect(config.proxy == { var p = ProxyConfiguration(); p.bindHost = "0.0.0.0"; p.httpsPort = 443; p.passthrough = "10.0.0.9:8080"; return p }())
        // v0.3.10's network is used as named (the compose sample's "plane").
        #expect(try DroneCommand.dockerConfiguration(agent.runtimeConfiguration).network == .named("plane"))
    }

    /// Without network settings Docker backends go on the drone's own isolated network;
    /// `network = "host"` opts into host networking.
    @Test func dockerNetworkSettings() throws {
        let base = "cluster_domain = \"plane.test\"\n[nats]\nhosts = [\"x\"]\n[agent]\nip = \"1.2.3.4\"\n[agent.docker]\n"
        func network(_ keys: String) throws -> DockerRuntimeConfiguration.Network {
            try DroneCommand.dockerConfiguration(try #require(try load(base + keys).agent).runtimeConfiguration).network
        }
        #expect(try network("") == .managed(name: "plane-backends", subnet: "10.214.0.0/16"))
        #expect(try network("network = \"host\"\n") == .host)
        #expect(try network("managed_network = \"tenants\"\nsubnet = \"10.99.0.0/24\"\n") == .managed(name: "tenants", subnet: "10.99.0.0/24"))
        #expect(try network("", ) == network("insecure_gpu = false\n"))
        func egress(_ keys: String) throws -> EgressPolicy {
            try DroneCommand.dockerConfiguration(try #require(try load(base + keys).agent).runtimeConfiguration).egress
        }
        #expect(try egress("egress = \"deny\"\n") == .denyAll)
        #expect(try egress("") == .allowAll)
        #expect(try egress("egress = [\"10.0.0.0/8\", \"203.0.113.7/32\"]\n") == .allowList([try IPv4Subnet("10.0.0.0/8"), try IPv4Subnet("203.0.113.7/32")]))
        for (keys, prefix) in [("network = \"a/b\"\n", "agent.docker.network:"), ("subnet = \"10.0.0.0/30\"\n", "agent.docker.subnet:"),
                               ("subnet = \"10.0.0.1/24\"\n", "agent.docker.subnet:"), ("network = \"plane\"\nsubnet = \"10.9.0.0/16\"\n", "agent.docker.network:"),
                               ("managed_network = \"host\"\n", "agent.docker.managed_network:"), ("egress = \"some\"\n", "agent.docker.egress:"), ("egress = [\"10.0.0.1/8\"]\n", "agent.docker.egress:"),
                               ("egress = []\n", "agent.docker.egress:"), ("egress = [5]\n", "agent.docker.egress:"),
                               ("network = \"plane\"\negress = \"deny\"\n", "agent.docker.network:")] {
            #expect(problems(base + keys).contains { $0.hasPrefix(prefix) }, "\(keys) → \(problems(base + keys))")
        }
    }

    /// Per-backend ceilings when the spawn sets none: memory (0: none) and processes.
    @Test func dockerBackendLimits() throws {
        let base = "cluster_domain = \"plane.test\"\n[nats]\nhosts = [\"x\"]\n[agent]\nip = \"1.2.3.4\"\n[agent.docker]\n"
        func docker(_ keys: String) throws -> DockerRuntimeConfiguration {
            try DroneCommand.dockerConfiguration(try #require(try load(base + keys).agent).runtimeConfiguration)
        }
        #expect(try docker("").memoryLimitBytes == 4 << 30 && docker("").pidsLimit == 4096)
        #expect(try docker("memory_limit_bytes = 268435456\npids_limit = 64\n").memoryLimitBytes == 256 << 20)
        #expect(try docker("pids_limit = 64\n").pidsLimit == 64)
        #expect(try docker("memory_limit_bytes = 0\n").memoryLimitBytes == nil, "0: no limit")
        #expect(try docker("").writableLayerBytes == nil)
        #expect(try docker("writable_layer_bytes = 0\n").writableLayerBytes == nil, "0: no limit")
        #expect(try docker("writable_layer_bytes = 1073741824\n").writableLayerBytes == 1 << 30)
        #expect(try docker("").pullTimeout == .seconds(600) && docker("pull_timeout_secs = 45\n").pullTimeout == .seconds(45))
        for keys in ["memory_limit_bytes = 1024\n", "memory_limit_bytes = -5\n", "memory_limit_bytes = \"4G\"\n", "pids_limit = 0\n",
                     "writable_layer_bytes = 4096\n", "writable_layer_bytes = -1\n", "writable_layer_bytes = 9223372036854775807\n",
                     "pull_timeout_secs = 0\n", "pull_timeout_secs = 100000\n"] {
            let found = problems(base + keys)
            #expect(found.count == 1 && found[0].hasPrefix("agent.docker.\(keys.prefix { $0 != " " }):"), "\(keys) → \(found)")
        }
    }

    @Test func ourKeysAndOtherRuntimes() throws {
        let config = try load("""
            cluster_domain = "plane.test"
            state_dir = "/srv/plane"
            [nats]
            hosts = ["127.0.0.1:4222"]
            [agent]
            ip = { api = "http://127.0.0.1:9999/ip" }
            runtime = "oci"
            port_range = "40000-40099"
            readiness_path = "/healthz"
            probe_timeout_ms = 500
            startup_timeout_secs = 60
            stop_grace_secs = 3
            drain_on_shutdown = true
            runtimes_dir = "/opt/plane/runtimes"
            plugin_call_timeout_secs = 5
            plugin_start_timeout_secs = 120
            [agent.oci]
            runtime = "crun"
            """, environment: ["PLANE_AGENT__STARTUP_TIMEOUT_SECS": "45"])
        let agent = try #require(config.agent)
        #expect(config.effectiveDatabasePath == "/srv/plane/drone.sqlite3" && config.droneID == nil)
        #expect(agent.ip == .lookup(url: "http://127.0.0.1:9999/ip") && agent.runtime == "oci" && agent.portRange == 40000...40099)
        #expect(agent.readinessPath == "/healthz" && agent.probeTimeout == .milliseconds(500) && agent.startupTimeout == .seconds(45))
        #expect(agent.stopGrace == .seconds(3) && agent.drainOnShutdown && agent.runtimeConfiguration["runtime"]?.stringValue == "crun")
        #expect(agent.runtimesDirectory == "/opt/plane/runtimes" && agent.pluginCallTimeout == .seconds(5) && agent.pluginStartTimeout == .seconds(120))
        #expect(throws: (any Error).self) {
            try load("cluster_domain = \"plane.test\"\n[nats]\nhosts = [\"127.0.0.1\"]\n[agent]\nip = \"127.0.0.1\"\nruntimes_dir = \"runtimes\"\n")
        }
    }

    @Test func acmeKeysWithDefaultsAndOverrides() throws {
        let base = """
            cluster_domain = "plane.test"
            [nats]
            hosts = ["127.0.0.1:4222"]
            [cert]
            key_path = "/tls/key.pem"
            cert_path = "/tls/cert.pem"
            [acme]
            server = "https://ca.test/dir"
            admin_email = "ops@plane.test"

            """
        let defaults = try #require(try load(base).acme)
        #expect(defaults.includeApex && defaults.coordinate && defaults.caBundlePath == nil && defaults.externalAccountBinding == nil)
        #expect(abs(defaults.renewWhenRemaining - 1.0 / 3.0) < 1e-9 && defaults.checkInterval == .seconds(3600) && defaults.retryInterval == .seconds(10))
        #expect(defaults.validationTimeout == .seconds(120))
        let set = try #require(try load(base + """
            ca_bundle = "/etc/plane/acme-ca.pem"
            include_apex = false
            renew_when_remaining = 0.5
            check_interval_secs = 600
            retry_interval_secs = 30
            validation_timeout_secs = 300
            coordinate = false
            [acme.eab]
            key_id = "kid-1"
            key = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"
            """, environment: ["PLANE_ACME__RENEW_WHEN_REMAINING": "0.25"]).acme)
        #expect(set.caBundlePath == "/etc/plane/acme-ca.pem" && !set.includeApex && set.renewWhenRemaining == 0.25 && !set.coordinate)
        #expect(set.checkInterval == .seconds(600) && set.retryInterval == .seconds(30) && set.validationTimeout == .seconds(300))
        #expect(set.externalAccountBinding?.keyID == "kid-1" && set.externalAccountBinding?.macKey.count == 48)
        let bad = problems(base + """
            renew_when_remaining = 1.5
            check_interval_secs = 0
            [acme.eab]
            key_id = "kid-1"
            key = "not base64!"
            """)
        for prefix in ["acme.renew_when_remaining:", "acme.check_interval_secs:", "acme.eab.key:"] {
            #expect(bad.contains { $0.hasPrefix(prefix) }, "\(prefix) in \(bad)")
        }
        #expect(problems(base.replacingOccurrences(of: "https://ca.test/dir", with: "ca.test")).contains { $0.hasPrefix("acme.server:") })
    }

    @Test func badConfigurationsNameTheirKeys() {
        let all = problems("""
            drone_id = "Not Valid"
            [agent]
            port_range = "9-2"
            readiness_path = "healthz"
            [agent.docker]
            connection = { socket = "/a", http = "http://b" }
            alow_volume_mounts = true
            [acme]
            server = "https://ca"
            """)
        for prefix in ["cluster_domain: missing", "drone_id:", "agent.ip: missing", "agent.port_range:", "agent.readiness_path:",
                       "agent.docker.connection:", "agent.docker.alow_volume_mounts: unknown key", "acme.admin_email: missing",
                       "acme.cert:", "agent.nats:"] {
            #expect(all.contains { $0.hasPrefix(prefix) }, "\(prefix) in \(all)")
        }
        #expect(problems("cluster_domain = \"plane.test\"\n[agent]\nip = \"1.2.3.4\"\ndrone_id = \"a\"\n[nats]\nhosts=[\"x\"]\n").isEmpty)
        #expect(problems("cluster_domain = \"plane.test\"\ndrone_id = \"b\"\n[agent]\nip = \"1.2.3.4\"\ndrone_id = \"a\"\n[nats]\nhosts=[\"x\"]\n")
            .contains { $0.hasPrefix("agent.drone_id:") })
        #expect(problems("cluster_domain = \"plane.test\"\n").contains { $0.contains("no part is enabled") })
    }

    @Test func leaseKeysAndTheirOrder() throws {
        let base = "cluster_domain = \"plane.test\"\n[nats]\nhosts=[\"x\"]\n[agent]\nip = \"1.2.3.4\"\n"
        let defaults = try #require(try load(base).agent)
        #expect(defaults.lease == DroneLease.Timing(renewInterval: .seconds(2), soft: .seconds(10), hard: .seconds(20)))
        let set = try #require(try load(base + "lease_renew_secs = 1\nlease_soft_secs = 3\nlease_hard_secs = 5\n").agent)
        #expect(set.lease == DroneLease.Timing(renewInterval: .seconds(1), soft: .seconds(3), hard: .seconds(5)))
        #expect(problems(base + "lease_soft_secs = 30\n").contains { $0.hasPrefix("agent.lease_hard_secs:") && $0.contains("longer than lease_soft_secs") })
        #expect(problems(base + "lease_renew_secs = 10\n").contains { $0.contains("lease_soft_secs must be longer than lease_renew_secs") })
        #expect(problems(base + "lease_hard_secs = 0\n").contains { $0.hasPrefix("agent.lease_hard_secs:") })
    }

    @Test func heldRequestKeys() throws {
        let base = "cluster_domain = \"plane.test\"\n[nats]\nhosts=[\"x\"]\n[agent]\nip = \"1.2.3.4\"\n[proxy]\n"
        let defaults = try #require(try load(base).proxy)
        #expect(defaults.holdWhileStarting == .seconds(30) && defaults.maxHeldRequests == 4096)
        let set = try #require(try load(base + "hold_while_starting_secs = 0\nmax_held_requests = 10\n").proxy)
        #expect(set.holdWhileStarting == .zero && set.maxHeldRequests == 10)
        #expect(problems(base + "hold_while_starting_secs = 3601\n").contains { $0.hasPrefix("proxy.hold_while_starting_secs:") })
        #expect(problems(base + "max_held_requests = -1\n").contains { $0.hasPrefix("proxy.max_held_requests:") })
        let limited = try load(base + "max_connections = 50\n").proxy
        #expect(defaults.maxConnections == 10_000 && limited?.maxConnections == 50)
        #expect(problems(base + "max_connections = 0\n").contains { $0.hasPrefix("proxy.max_connections:") })
        let perClient = try load(base + "max_connections_per_address = 20\n").proxy
        #expect(defaults.maxConnectionsPerAddress == 1000 && perClient?.maxConnectionsPerAddress == 20)
        #expect(problems(base + "max_connections_per_address = 0\n").contains { $0.hasPrefix("proxy.max_connections_per_address:") })
    }

    @Test func environmentVariablesThatNameNoKeyAreIgnored() throws {
        let base = "cluster_domain = \"plane.test\"\n[nats]\nhosts=[\"x\"]\n[agent]\nip = \"1.2.3.4\"\n"
        let config = try load(base, environment: ["PLANE_BIN": "/x", "PLANE_AGENT__PORT_RANG": "1-2", "PLANE_AGENT__STOP_GRACE_SECS": "3"])
        #expect(config.ignoredVariables == ["PLANE_AGENT__PORT_RANG", "PLANE_BIN"] && config.agent?.stopGrace == .seconds(3))
        #expect(problems(base + "port_rang = \"1-2\"\n").contains { $0.hasPrefix("agent.port_rang:") })
    }

    @Test func fleetKeys() throws {
        let base = "cluster_domain = \"plane.test\"\n[nats]\nhosts=[\"x\"]\n[agent]\nip = \"1.2.3.4\"\n"
        let defaults = try #require(try load(base).agent)
        #expect(defaults.runtimeClasses.isEmpty && defaults.pool == nil && defaults.memoryBytes == nil && defaults.cpus == nil && defaults.maxBackends == 1000)
        let set = try #require(try load(base + "runtime_classes = [\"sandbox\", \"fast\"]\npool = \"eu\"\nmemory_bytes = 1073741824\ncpus = 1.5\nmax_backends = 40\n").agent)
        #expect(set.runtimeClasses == ["sandbox", "fast"] && set.pool == "eu" && set.memoryBytes == 1 << 30 && set.cpus == 1.5 && set.maxBackends == 40)
        #expect(try load(base + "pool = \"\"\n").agent?.pool == nil)
        for (line, key) in [("runtime_classes = [\"Sand Box\"]", "agent.runtime_classes:"), ("pool = \"-x\"", "agent.pool:"), ("memory_bytes = 5", "agent.memory_bytes:"),
                            ("cpus = -1", "agent.cpus:"), ("max_backends = 0", "agent.max_backends:"),
                            ("runtime_classes = [\((0..<33).map { "\"c\($0)\"" }.joined(separator: ","))]", "agent.runtime_classes:")] {
            #expect(problems(base + line + "\n").contains { $0.hasPrefix(key) }, "\(line)")
        }
    }

    @Test func theCommandDumpsItsConfigurationAndRefusesAnUnknownRuntime() async throws {
        let directory = try TestEnvironment.temporaryDirectory("drone-config")
        let good = directory + "/drone.toml"
        try """
            cluster_domain = "plane.test"
            state_dir = "\(directory)"
            [nats]
            hosts = ["127.0.0.1:9"]
            auth = { token = "secret-token" }
            [agent]
            ip = "10.0.0.5"
            [agent.docker]
            connection = { socket = "/run/docker.sock" }
            """.write(toFile: good, atomically: true, encoding: .utf8)
        let plane = try TestExecutables.path("plane")
        // PLANE_LOG is the log level, not a configuration key (it was taken for one).
        let (status, output) = try await SystemProgram.run(executable: plane, ["drone", "--dump-config", good],
                                                     environment: ["PLANE_AGENT__PORT_RANGE": "40000-40999", "PLANE_LOG": "debug", "PLANE_TEST_ANYTHING": "x"])
        #expect(status == 0, "\(output)")
        for line in ["cluster_domain = \"plane.test\"", "db_path = \"\(directory)/drone.sqlite3\"", "runtime = \"docker\"", "port_range = \"40000-40999\"",
                     "startup_timeout_secs = 30", "probe_timeout_ms = 2000", "auth = { token = \"(set)\" }", "endpoint = \"/run/docker.sock\""] {
            #expect(output.contains(line), "\(line) in:\n\(output)")
        }
        #expect(!output.contains("secret-token"))

        let unknown = directory + "/unknown.toml"
        try "cluster_domain = \"plane.test\"\nstate_dir = \"\(directory)\"\n[nats]\nhosts = [\"127.0.0.1:9\"]\n[agent]\nip = \"10.0.0.5\"\nruntime = \"gvisor-vm\"\n"
            .write(toFile: unknown, atomically: true, encoding: .utf8)
        let (refused, message) = try await SystemProgram.run(executable: plane, ["drone", unknown])
        #expect(refused == 1 && message.contains("gvisor-vm") && message.contains("docker"), "\(message)")
    }
}
