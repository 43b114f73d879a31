import NATS
import PlaneCore
import PlaneDNS

/// Everything `plane controller` runs with (`controller.toml`, see
/// docs/configuration.md). Each optional section switches one part on, as in v0.3.10.
public struct ControllerConfiguration: Sendable {
    public var nats: NATSClientConfiguration
    /// `[scheduler]`: the scheduler, the state relay and the lock table.
    public var scheduler: SchedulerConfiguration?
    /// `[dns]`: the authoritative DNS server.
    public var dns: ControllerDNSConfiguration?
    /// `[http]`: the HTTP API.
    public var http: HTTPAPIConfiguration?
    /// `[limits]`: bounds on wire messages and spawns.
    public var limits: InputLimits

    public init(nats: NATSClientConfiguration, scheduler: SchedulerConfiguration? = nil,
                dns: ControllerDNSConfiguration? = nil, http: HTTPAPIConfiguration? = nil, limits: InputLimits = InputLimits()) {
        self.nats = nats
        self.scheduler = scheduler
        self.dns = dns
        self.http = http
        self.limits = limits
    }
}

public struct SchedulerConfiguration: Sendable, Hashable {
    /// A drone is a candidate while ready and heard from within this time (v0.3.10: 5 s).
    public var droneTimeout: Duration = .seconds(5)
    /// How long a drone has to answer a spawn request before another one is tried.
    public var spawnTimeout: Duration = .seconds(10)
    /// Spawns this controller assigned count as load on a drone for this long (until the
    /// drone's heartbeats include them in `running_backends`).
    public var recentSpawnWindow: Duration = .seconds(10)
    /// At most this many drones are tried for one request.
    public var maxSpawnAttempts: Int = 3
    /// A drone not heard from for this long has its backends reported `Lost` and their
    /// locks released.
    public var droneLostGrace: Duration = .seconds(60)
    /// State changes kept per backend in the `backend_status` stream.
    public var statusHistoryMessages: Int64 = 100
    /// Age after which state changes leave the `backend_status` stream.
    public var statusHistoryMaxAge: Duration = .seconds(7 * 24 * 3600)
    /// JetStream KV bucket replicas (raise in a NATS cluster).
    public var replicas: Int = 1
    /// Drones the scheduler keeps track of (heartbeats come from anyone who can publish).
    public var maxDrones: Int = 10_000

    public init() {}
}

public struct ControllerDNSConfiguration: Sendable, Hashable {
    public var server = DNSServerConfiguration()
    /// SOA MNAME and NS target (`nameserver`). Nil: the zone apex.
    public var nameServer: DNSName?
    /// SOA RNAME (from `soa_email`). Nil: `hostmaster.{zone}`.
    public var mailbox: DNSName?
    /// Zones answered authoritatively besides every cluster a drone publishes records for.
    public var zones: [DNSName] = []
    /// `max_records`, `max_txt_per_name`, `max_txt_bytes`, `max_zones`.
    public var limits = DNSRecordStore.Limits()

    public init() {}
}

public struct HTTPAPIConfiguration: Sendable, Hashable {
    public var bindHost: String = "0.0.0.0"
    public var port: Int = 9090
    /// The cluster spawns go to.
    public var cluster: ClusterName
    /// Service name → image.
    public var services: [String: String] = [:]

    public init(cluster: ClusterName) { self.cluster = cluster }
}
