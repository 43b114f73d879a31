import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import PlaneCore
import PlaneHTTPServer
import PlaneMetrics
import ServiceLifecycle
import Synchronization

/// The drone's reverse proxy: listens on `bind_ip:https_port` (TLS when a certificate
/// source is given, plain HTTP otherwise) and serves every backend route of the
/// `RouteTable`. A `Service`: `start()` binds, `run()` serves until graceful shutdown.
public final class ProxyServer: Service, Sendable {
    public let configuration: ProxyConfiguration
    public let metrics: ProxyMetrics
    private let context: ProxyContext
    private let certificates: TLSCertificateStore?
    private let logger: Logger
    private let channels = Mutex<[any Channel]>([])
    private let group: any EventLoopGroup
    /// The client connections of every listener (`max_connections`,
    /// `max_connections_per_address`).
    let connections: AddressConnectionLimit

    /// - Parameters:
    ///   - cluster: the cluster domain; hosts `{backend}.{cluster}` are routed.
    ///   - certificates: the TLS key and chain; nil serves plain HTTP.
    public init(cluster: String, configuration: ProxyConfiguration, routes: RouteTable, certificates: TLSCertificateStore? = nil,
                metrics: ProxyMetrics = ProxyMetrics(), group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, logger: Logger) {
        self.configuration = configuration
        self.group = group
        self.metrics = metrics
        self.certificates = certificates
        self.logger = logger
        connections = AddressConnectionLimit(limit: configuration.maxConnections, limitPerAddress: configuration.maxConnectionsPerAddress)
        context = ProxyContext(
            router: ProxyRouter(cluster: cluster, allowPathRouting: configuration.allowPathRouting, passthrough: configuration.passthrough),
            routes: routes, configuration: configuration, metrics: metrics, pools: UpstreamPools(maxIdle: configuration.upstreamIdleConnections, maxHeadBytes: configuration.maxHeaderBytes,
                                                                                                           maxHeaderCount: configuration.maxHeaderCount),
            logger: logger, scheme: certificates == nil ? "http" : "https")
        // The requests held now, read at a scrape (the table is captured strongly: a weak
        // reference would give it a side table and slow the reference counting of every
        // request that touches it).
        let waiting = GaugeFeed(MetricCatalog.proxyHeldRequestsWaiting, factory: metrics.registry.factory)
        let open = GaugeFeed(MetricCatalog.proxyConnections, factory: metrics.registry.factory)
        let connections = self.connections
        metrics.registry.addScrapeHook {
            waiting.set(to: Double(routes.heldRequests))
            open.set(to: Double(connections.count))
        }
    }

    /// The port the proxy listens on (its configured one, or the one picked for port 0).
    public var port: Int? { channels.withLock { $0.first?.localAddress?.port } }

    /// The port of the HTTP→HTTPS redirect listener, if there is one.
    public var redirectPort: Int? { channels.withLock { $0.count > 1 ? $0[1].localAddress?.port : nil } }

    public func start() async throws {
        guard channels.withLock({ $0.isEmpty }) else { return }
        let port = configuration.httpsPort ?? (certificates == nil ? 80 : 443)
        var bound: [any Channel] = []
        do {
            bound.append(try await bind(port: port, initializer: proxyInitializer()))
            if let redirectPort = configuration.httpRedirectPort, certificates != nil {
                bound.append(try await bind(port: redirectPort, initializer: redirectInitializer(httpsPort: bound[0].localAddress?.port ?? port)))
            }
        } catch {
            for channel in bound { try? await channel.close() }
            throw error
        }
        channels.withLock { $0 = bound }
        logger.info("proxy.listening", metadata: ["address": "\(configuration.bindHost):\(bound[0].localAddress?.port ?? port)", "tls": "\(certificates != nil)"])
    }

    public func run() async throws {
        try await start()
        let listeners = channels.withLock { $0 }
        await withGracefulShutdownHandler {
            for channel in listeners { try? await channel.closeFuture.get() }
        } onGracefulShutdown: {
            for channel in listeners { channel.close(promise: nil) }
        }
        context.pools.closeAll()
    }

    /// Stops listening (open connections finish on their own).
    public func stop() async {
        for channel in channels.withLock({ $0 }) { try? await channel.close() }
        context.pools.closeAll()
    }

    private func bind(port: Int, initializer: @escaping @Sendable (any Channel) -> EventLoopFuture<Void>) async throws -> any Channel {
        do {
            return try await ServerBootstrap(group: group)
                .serverChannelOption(.backlog, value: 1024)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                .childChannelOption(.allowRemoteHalfClosure, value: true)
                .childChannelOption(.maxMessagesPerRead, value: 16)
                .childChannelInitializer(initializer)
                .bind(host: configuration.bindHost, port: port).get()
        } catch {
            throw ProxyError(.bindFailed, "The proxy cannot listen on \(configuration.bindHost):\(port); free the port or change [proxy] https_port (ports below 1024 need root or CAP_NET_BIND_SERVICE).", cause: error)
        }
    }

    private func proxyInitializer() -> @Sendable (any Channel) -> EventLoopFuture<Void> {
        let context = self.context
        let certificates = self.certificates
        let logger = self.logger
        let admit = admission()
        return { channel in
            channel.eventLoop.makeCompletedFuture {
                guard admit(channel) else { return }
                let pipeline = channel.pipeline.syncOperations
                if let certificates {
                    guard let tls = certificates.current else {
                        // No certificate yet: refuse rather than serve a wrong one.
                        logger.debug("proxy.no_certificate")
                        channel.close(promise: nil)
                        return
                    }
                    try pipeline.addHandler(PlainHTTPOnTLSPortHandler())
                    try pipeline.addHandler(NIOSSLServerHandler(context: tls))
                }
                // The proxy frames HTTP/1.1 itself: one handler sees the bytes (after TLS), no
                // codec handlers in between; it keeps the header and idle timeouts too.
                try pipeline.addHandler(ProxyHandler(shared: context, connector: context.pools.pool(for: channel.eventLoop)))
            }
        }
    }

    private func redirectInitializer(httpsPort: Int) -> @Sendable (any Channel) -> EventLoopFuture<Void> {
        let admit = admission()
        let timeout = configuration.headerReadTimeout.timeAmount
        return { channel in
            channel.eventLoop.makeCompletedFuture {
                guard admit(channel) else { return }
                try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                try channel.pipeline.syncOperations.addHandler(HTTPRequestTimeoutHandler(limit: timeout))
                try channel.pipeline.syncOperations.addHandler(HTTPSRedirectHandler(httpsPort: httpsPort))
            }
        }
    }

    /// Takes a place for a new client connection, given back when it closes; over
    /// `max_connections` (or one client's `max_connections_per_address`) the connection is closed
    /// at once (false), counted and logged.
    private func admission() -> @Sendable (any Channel) -> Bool {
        let connections = self.connections
        let logger = self.logger
        return { channel in
            let client = AddressConnectionLimit.Client(channel.remoteAddress)
            let admission = connections.admit(client)
            guard admission == .admitted else {
                let key = admission == .full ? Self.maxConnectionsKey : Self.maxConnectionsPerAddressKey
                if let hits = LimitCounters.shared.record(key) {
                    logger.notice("limit.exceeded", metadata: ["plane.limit": "\(key)", "plane.limit_hits": "\(hits)",
                                                               "proxy.client": "\(channel.remoteAddress?.ipAddress ?? "?")"])
                }
                channel.close(promise: nil)
                return false
            }
            channel.closeFuture.whenComplete { _ in connections.release(client) }
            return true
        }
    }

    /// The key `max_connections` is counted under (`plane_input_limit_hits_total`).
    public static let maxConnectionsKey = "proxy.max_connections"
    /// The key `max_connections_per_address` is counted under.
    public static let maxConnectionsPerAddressKey = "proxy.max_connections_per_address"
}

extension Duration {
    /// Saturating: settings are range-checked, and a longer duration still does not overflow.
    var timeAmount: TimeAmount {
        let (nanoseconds, overflow) = components.seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return .nanoseconds(components.seconds < 0 ? .min : .max) }
        let (sum, overflowed) = nanoseconds.addingReportingOverflow(components.attoseconds / 1_000_000_000)
        return .nanoseconds(overflowed ? .max : sum)
    }
}
