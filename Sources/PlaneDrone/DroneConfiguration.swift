import NATS
import PlaneACME
import PlaneCore
import PlaneMessaging
import PlaneProxy

/// Everything `plane drone` runs with (`drone.toml`, see docs/configuration.md).
public struct DroneConfiguration: Sendable {
    /// Nil: generated once and kept in the state directory.
    public var droneID: DroneID?
    public var cluster: ClusterName
    /// Files the drone keeps: the SQLite store, the generated drone id, runtime state.
    public var stateDirectory: String = "/var/lib/plane"
    /// The SQLite store (v0.3.10's `db_path`). Default: `{state_dir}/drone.sqlite3`.
    public var databasePath: String?
    public var nats: NATSClientConfiguration?
    /// `[agent]`: the backend agent.
    public var agent: AgentConfiguration?
    /// `[proxy]`: the HTTPS/WebSocket proxy to the backends.
    public var proxy: ProxyConfiguration?
    /// `[cert]`: the certificate and key files (issues 05 and 07).
    public var certificate: CertificateFiles?
    /// `[acme]` (issue 07).
    public var acme: ACMEConfiguration?
    /// `[metrics]`: where `/metrics` is served.
    public var metrics: MetricsEndpointConfiguration?

    /// `PLANE_*` environment variables that name no configuration key: ignored (logged once).
    public var ignoredVariables: [String] = []
    /// `[log_forwarding]`: the drone's log events on `logs.drone.{id}`.
    public var logForwarding = LogForwarding.Settings()
    /// `[tracing]`: spans exported over OTLP/HTTP (nil: nothing is traced).
    public var tracing: TracingConfiguration?

    public init(cluster: ClusterName) { self.cluster = cluster }

    public var effectiveDatabasePath: String { databasePath ?? stateDirectory + "/drone.sqlite3" }
}

/// Where the drone's public IP comes from (v0.3.10's `agent.ip`).
public enum PublicIPSource: Sendable, Hashable {
    case literal(String)
    /// HTTP GET; the body (trimmed) must be an IP address.
    case lookup(url: String)
}

public struct AgentConfiguration: Sendable {
    public var ip: PublicIPSource
    /// The runtime's name in the `RuntimeRegistry` (`docker`, `oci` or a plugin).
    public var runtime: String = "docker"
    /// The runtime's own section (`[agent.docker]`, `[agent.oci]`, `[agent.<plugin>]`).
    public var runtimeConfiguration: JSONObject = JSONObject()
    /// Ports assigned to backends on host networking (`PORT`).
    public var portRange: ClosedRange<Int> = 20000...29999
    /// The readiness probe: `GET {path}` until any HTTP answer.
    public var readinessPath: String = "/"
    /// One probe attempt may take this long.
    public var probeTimeout: Duration = .seconds(2)
    /// A backend that does not answer within this time after starting is
    /// `TimedOutBeforeReady`.
    public var startupTimeout: Duration = .seconds(30)
    /// Grace period between SIGTERM and SIGKILL when a backend is stopped.
    public var stopGrace: Duration = .seconds(10)
    /// On SIGTERM, terminate the backends (true) or leave them running for the next start
    /// to re-attach (false, default).
    public var drainOnShutdown = false
    /// Keep the warm pools the controllers publish (issue 15; `[agent] warm_pools`).
    public var warmPools = true
    /// Whether spawn requests may mount volumes (v0.3.10's `allow_volume_mounts`, under
    /// `[agent.docker]` there).
    public var allowVolumeMounts = false
    /// Where out-of-process runtime plugins are found (`<name>/runtime.toml`); nil: the
    /// default (the source tree's `runtimes/` when run from a build directory, else
    /// `/usr/local/lib/plane/runtimes`).
    public var runtimesDirectory: String?
    /// The longest a call to a runtime plugin may take (`prepare` and `start`: `pluginStartTimeout`).
    public var pluginCallTimeout: Duration = .seconds(30)
    public var pluginStartTimeout: Duration = .seconds(600)
    /// `[limits]`: bounds on wire messages and on what one spawn may carry.
    public var limits = InputLimits()
    /// `max_log_line_bytes`: a backend's output line longer than this is cut (and marked);
    /// runtimes split lines at `LogLine.maximumLength` (16 KiB) already.
    public var maxLogLineBytes = 16 << 10
    /// `max_log_bytes_per_minute`: a backend's output beyond this many bytes in a minute is
    /// not published (the drone says how much it dropped).
    public var maxLogBytesPerMinute = 4 << 20
    /// `lease_renew_secs`, `lease_soft_secs`, `lease_hard_secs`: the lease lock-holding
    /// backends run under (`DroneLease`).
    public var lease = DroneLease.Timing()
    /// `runtime_classes`: the classes spawns may ask for to land here (issue 14).
    public var runtimeClasses: [FleetLabel] = []
    /// `pool`: the drone's pool; nil: the default pool.
    public var pool: FleetLabel?
    /// `memory_bytes`: memory the drone offers to backends; nil: the host's total memory.
    public var memoryBytes: UInt64?
    /// `cpus`: CPUs the drone offers to backends; nil: the CPUs online.
    public var cpus: Double?
    /// `max_backends`: live backends the drone runs at most.
    public var maxBackends = 1000

    public init(ip: PublicIPSource) { self.ip = ip }
}
