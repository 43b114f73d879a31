import NIOCore

/// Where and how the DNS server listens.
public struct DNSServerConfiguration: Sendable, Hashable {
    /// Address to bind UDP and TCP to (`[dns] bind_ip`, default 0.0.0.0).
    public var bindHost: String = "0.0.0.0"
    /// Port for both UDP and TCP (`[dns] port`, default 53). 0 picks a free port, the same
    /// number for both.
    public var port: Int = 53
    /// UDP sockets bound with SO_REUSEPORT, so the kernel spreads queries over threads.
    public var udpSockets: Int = System.coreCount
    /// `tcp_timeout_secs`: a TCP connection closes unless a whole query arrives within this
    /// time of waiting for one (its start, or the answer before): idle connections, queries
    /// sent a byte at a time and clients that stop reading their answers all end.
    public var tcpTimeout: Duration = .seconds(10)
    /// `tcp_max_connections`: TCP connections at once; more are closed as they arrive.
    public var maxTCPConnections: Int = 512
    /// `tcp_max_connections_per_address`: TCP connections at once from one client address.
    public var maxTCPConnectionsPerAddress: Int = 32
    /// `rate_limit*`: UDP answers per client network (`DNSResponseRateLimit`).
    public var rateLimit = DNSResponseRateLimit()

    /// The keys these limits are counted under (`plane_input_limit_hits_total{limit=...}`).
    public static let maxTCPConnectionsKey = "dns.tcp_max_connections"
    public static let maxTCPConnectionsPerAddressKey = "dns.tcp_max_connections_per_address"
    public static let tcpTimeoutKey = "dns.tcp_timeout_secs"

    public init(bindHost: String = "0.0.0.0", port: Int = 53) {
        self.bindHost = bindHost
        self.port = port
    }
}
