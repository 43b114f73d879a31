import NATS
import PlaneCore
import PlaneDNS
import PlaneMessaging

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
    /// `PLANE_*` environment variables that name no configuration key: ignored (logged once).
    public var ignoredVariables: [String] = []
    /// `[log_forwarding]`: the controller's log events on `logs.controller`.
    public var logForwarding = LogForwarding.Settings()
    /// `[tracing]`: spans exported over OTLP/HTTP (nil: nothing is traced).
    public var tracing: TracingConfiguration?

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
    /// A backend holding a lock is reported `Lost` (and its lock freed) only once its
    /// drone's lease has not been renewed for this long, and never before the drone's own
    /// `lease_hard` plus `leaseMargin` (docs/architecture.md, "Locks across partitions").
    public var lockReassignAfter: Duration = .seconds(30)
    /// What the wait beyond a drone's `lease_hard` allows for: clock rate differences,
    /// message delays and the time a kill takes.
    public var leaseMargin: Duration = .seconds(5)
    /// State changes kept per backend in the `backend_status` stream.
    public var statusHistoryMessages: Int64 = 100
    /// Age after which state changes leave the `backend_status` stream.
    public var statusHistoryMaxAge: Duration = .seconds(7 * 24 * 3600)
    /// JetStream KV bucket replicas (raise in a NATS cluster).
    public var replicas: Int = 1
    /// Drones the scheduler keeps track of (heartbeats come from anyone who can publish).
    public var maxDrones: Int = 10_000
    /// How long a starting controller waits for JetStream (a NATS cluster electing its
    /// leader, or not yet holding `replicas` servers) before it gives up.
    public var jetStreamWait: Duration = .seconds(120)

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
    /// Loopback by default: beyond this host the API needs `token`.
    public var bindHost: String = "127.0.0.1"
    public var port: Int = 9090
    /// The cluster spawns go to.
    public var cluster: ClusterName
    /// Service name → what a spawn of it runs and what callers may add.
    public var services: [String: HTTPServiceConfiguration] = [:]
    /// The token callers present as `Authorization: Bearer <token>` (`token` or
    /// `token_file`). Nil: no authentication, allowed only on a loopback address.
    public var token: String?
    /// `request_timeout_secs`: a connection closes unless a whole request arrives within
    /// this time of waiting for one (its start, or the response before).
    public var requestTimeout: Duration = .seconds(30)
    /// `max_connections`: connections open at once; one more is answered 503 and closed.
    public var maxConnections = 1024
    /// `max_connections_per_address`: connections open at once from one client (an IPv4
    /// address or an IPv6 /64); one more is answered 503 and closed. Nil: no bound per
    /// client (the API's usual callers are a few app servers, each may hold many status
    /// streams; set it when clients you do not run can reach the API).
    public var maxConnectionsPerAddress: Int?
    /// `max_status_streams`: `GET /backend/{id}/status/stream` streams open at once (each
    /// holds a JetStream consumer; anyone may open one); one more is answered 503.
    public var maxStatusStreams = 512
    /// The keys these limits are counted under (`plane_input_limit_hits_total{limit=...}`).
    public static let maxConnectionsKey = "http.max_connections"
    public static let maxConnectionsPerAddressKey = "http.max_connections_per_address"
    public static let maxStatusStreamsKey = "http.max_status_streams"

    public init(cluster: ClusterName) { self.cluster = cluster }

    /// Whether `bindHost` is a loopback address (127.0.0.0/8, `::1`, `localhost`): only
    /// this host can connect.
    public var bindsLoopbackOnly: Bool { Self.isLoopback(bindHost) }

    public static func isLoopback(_ host: String) -> Bool {
        if host == "localhost" || host == "::1" || host == "[::1]" { return true }
        let octets = host.split(separator: ".", omittingEmptySubsequences: false)
        guard octets.count == 4, octets.allSatisfy({ $0.count <= 3 && UInt8($0) != nil }) else { return false }
        return octets[0] == "127"
    }

    /// The shortest token accepted: 16 characters.
    public static let minimumTokenLength = 16

    /// Why this configuration must not start, or nil: an API reachable from other hosts
    /// without a token, or a token that is too short or not printable ASCII.
    public var exposureProblem: String? {
        if let token {
            if token.utf8.count < Self.minimumTokenLength {
                return "the token has \(token.utf8.count) characters; use at least \(Self.minimumTokenLength) (e.g. openssl rand -hex 32)"
            }
            if !token.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) {
                return "the token must be printable ASCII without spaces"
            }
            return nil
        }
        if !bindsLoopbackOnly {
            return "bind_ip \(bindHost) makes the HTTP API reachable from other hosts without authentication; set token (or token_file), or bind_ip = \"127.0.0.1\""
        }
        return nil
    }
}
