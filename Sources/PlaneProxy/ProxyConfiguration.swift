/// `[proxy]` in `drone.toml` (docs/configuration.md lists every key).
public struct ProxyConfiguration: Sendable, Hashable {
    public var bindHost: String = "0.0.0.0"
    /// HTTPS port (plain HTTP when `[cert]` is absent). Default 443 with `[cert]`, 80 without
    /// (v0.3.10 served plain HTTP on 443).
    public var httpsPort: Int?
    /// A plain-HTTP port that redirects every request to HTTPS (only with `[cert]`).
    public var httpRedirectPort: Int?
    /// Optional `host:port` upstream for requests with no route.
    public var passthrough: String?
    /// Route `/_plane_backend={backend}/...` to that backend (prefix stripped), for hosts
    /// without wildcard DNS or certificates.
    public var allowPathRouting = false
    /// Connecting to a backend may take this long; then 502.
    public var upstreamConnectTimeout: Duration = .seconds(5)
    /// A backend must start its response within this time; then 504.
    public var upstreamResponseTimeout: Duration = .seconds(60)
    /// A client must send a complete request head within this time; then the connection closes.
    public var headerReadTimeout: Duration = .seconds(30)
    /// A keep-alive connection with no request in flight closes after this time.
    public var idleTimeout: Duration = .seconds(120)
    /// Largest request head accepted (431 beyond); also the largest response head (502).
    public var maxHeaderBytes: Int = 64 * 1024
    /// Most header lines in a request head (431 beyond) or a response head (502), and
    /// trailer lines in a body.
    public var maxHeaderCount: Int = 100
    /// Idle keep-alive connections kept per backend and event loop.
    public var upstreamIdleConnections: Int = 32
    /// A request for a backend that is `Loading` or `Starting` is held this long for it to
    /// be Ready (then forwarded); 503 with `Retry-After` when it ends or the time runs out.
    /// Zero: no hold, 503 at once.
    public var holdWhileStarting: Duration = .seconds(30)
    /// Most requests held for starting backends at once, all backends together (503
    /// beyond). Held by the route table (`RouteTable(maxHeldRequests:)`).
    public var maxHeldRequests: Int = 4096
    /// Client connections open at once, on the proxy's listeners together (each proxied
    /// one uses two descriptors); one more is closed as soon as it is accepted.
    public var maxConnections: Int = 10_000
    /// Of those, the most from one client (an IPv4 address, or an IPv6 /64), so that one
    /// client cannot take every place; one more from it is closed as soon as it is accepted.
    public var maxConnectionsPerAddress: Int = 1000

    public init() {}
}
