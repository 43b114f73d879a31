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
    /// A TCP connection with no query for this long is closed.
    public var tcpIdleTimeout: Duration = .seconds(10)
    /// At most this many TCP connections at once; more are closed as they arrive.
    public var maxTCPConnections: Int = 512

    public init(bindHost: String = "0.0.0.0", port: Int = 53) {
        self.bindHost = bindHost
        self.port = port
    }
}

