import Logging
import NIOCore
import NIOPosix
import PlaneHTTPServer
import ServiceLifecycle
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The authoritative DNS server: UDP and TCP on one address, answering through a
/// `DNSResponder`. Runs as a `Service`; `start()` binds early so callers can learn the
/// port before `run()`.
public final class DNSServer: Service, Sendable {
    public struct BoundAddress: Sendable, Hashable {
        public var host: String
        public var port: Int
    }

    struct State {
        var channels: [any Channel] = []
        var address: BoundAddress?
    }

    public let configuration: DNSServerConfiguration
    public let responder: DNSResponder
    public let counters = DNSQueryCounters()
    private let logger: Logger
    private let state = Mutex(State())
    private let tcpConnections: AddressConnectionLimit
    /// UDP answers per client network; nil when `rate_limit` is 0.
    private let rateLimiter: DNSResponseRateLimiter?
    /// Told of each limit a client hit (its key and the client's address).
    private let limitHit: @Sendable (_ key: String, _ client: SocketAddress?) -> Void

    /// `limitHit` is told of every connection refused for a limit, of every slow client
    /// closed and of every UDP query over its network's rate (`DNSServerConfiguration`'s
    /// keys), for counting and logging.
    public init(configuration: DNSServerConfiguration, responder: DNSResponder, logger: Logger,
                limitHit: @escaping @Sendable (_ key: String, _ client: SocketAddress?) -> Void = { _, _ in }) {
        self.configuration = configuration
        self.responder = responder
        self.logger = logger
        self.limitHit = limitHit
        tcpConnections = AddressConnectionLimit(limit: configuration.maxTCPConnections, limitPerAddress: configuration.maxTCPConnectionsPerAddress)
        rateLimiter = configuration.rateLimit.isEnabled ? DNSResponseRateLimiter(limit: configuration.rateLimit) : nil
    }

    /// TCP connections open now.
    public var openTCPConnections: Int { tcpConnections.count }

    /// The bound address once `start()` returned.
    public var boundAddress: BoundAddress? { state.withLock { $0.address } }

    /// Binds UDP and TCP (idempotent) and returns the address.
    @discardableResult
    public func start() async throws(DNSError) -> BoundAddress {
        if let address = state.withLock({ $0.address }) { return address }
        var lastError: (any Error)?
        for _ in 0..<(configuration.port == 0 ? 20 : 1) {
            var channels: [any Channel] = []
            do {
                let first = try await bindUDP(port: configuration.port)
                channels.append(first)
                guard let port = first.localAddress?.port else { throw DNSError(.bindFailed, "the UDP socket has no local port") }
                for _ in 1..<max(1, configuration.udpSockets) { channels.append(try await bindUDP(port: port)) }
                channels.append(try await bindTCP(port: port))
                let address = BoundAddress(host: configuration.bindHost, port: port)
                state.withLock { $0.channels = channels; $0.address = address }
                logger.info("dns.listening", metadata: ["dns.address": "\(configuration.bindHost)", "dns.port": "\(port)"])
                return address
            } catch {
                lastError = error
                for channel in channels { try? await channel.close() }
            }
        }
        let what = "\(configuration.bindHost):\(configuration.port)"
        throw DNSError(.bindFailed, "The DNS server cannot listen on \(what) (UDP and TCP); is another DNS server using the port, or does binding a port below 1024 need root? Set [dns] port and bind_ip.", cause: lastError)
    }

    public func run() async throws {
        try await start()
        try? await gracefulShutdown()
        await stop()
    }

    /// Closes every socket.
    public func stop() async {
        let channels = state.withLock { state in defer { state.channels = [] }; return state.channels }
        for channel in channels { try? await channel.close() }
    }

    private func bindUDP(port: Int) async throws -> any Channel {
        let responder = responder
        let counters = counters
        let logger = logger
        let rateLimiter = rateLimiter
        let limitHit = limitHit
        return try await DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(.socketOption(.so_reuseaddr), value: 1)
            .channelOption(ChannelOptions.socketOption(NIOBSDSocket.Option(rawValue: SO_REUSEPORT)), value: 1)
            // Read up to 32 datagrams per system call (recvmmsg); answers written during one
            // read burst go out together on the flush (sendmmsg).
            // The receive buffer is split evenly between the datagrams of one vector read,
            // so it must hold 32 of the largest queries we accept (EDNS: 4096 bytes);
            // NIO's default buffer would cut queries longer than 64 bytes.
            .channelOption(.datagramVectorReadMessageCount, value: 32)
            .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 32 * 4096))
            .channelOption(.maxMessagesPerRead, value: 64)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(DNSDatagramHandler(responder: responder, counters: counters, rateLimiter: rateLimiter,
                                                                                      logger: logger, limitHit: limitHit))
                }
            }
            .bind(host: configuration.bindHost, port: port)
            .get()
    }

    /// `SO_RCVBUF` and `SO_SNDBUF` of DNS-over-TCP sockets (Linux doubles it for its own
    /// bookkeeping): room for two of the largest messages each way, and no more.
    static let tcpSocketBufferBytes: SocketOptionValue = 65_536

    private func bindTCP(port: Int) async throws -> any Channel {
        let responder = responder
        let counters = counters
        // Whole milliseconds, at least one and at most a day (the configuration key allows 1 to 3600 s).
        let (seconds, attoseconds) = configuration.tcpTimeout.components
        let timeout = TimeAmount.milliseconds(seconds >= 86_400 ? 86_400_000 : seconds < 0 ? 1 : max(seconds * 1000 + attoseconds / 1_000_000_000_000_000, 1))
        let table = tcpConnections
        let limitHit = limitHit
        return try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(.backlog, value: 256)
            // Fixed kernel buffers, inherited by every connection (the receive buffer is set
            // before the handshake, which sizes the window from it): the kernel's
            // autotuning would let each client that never reads pin megabytes of queries
            // and answers in kernel memory, beyond anything the handler holds.
            .serverChannelOption(.socketOption(.so_rcvbuf), value: Self.tcpSocketBufferBytes)
            .serverChannelOption(.socketOption(.so_sndbuf), value: Self.tcpSocketBufferBytes)
            .childChannelInitializer { channel in
                let client = channel.remoteAddress
                let address = AddressConnectionLimit.Client(client)
                switch table.admit(address) {
                case .admitted: break
                case .full:
                    limitHit(DNSServerConfiguration.maxTCPConnectionsKey, client)
                    return channel.close()
                case .addressFull:
                    limitHit(DNSServerConfiguration.maxTCPConnectionsPerAddressKey, client)
                    return channel.close()
                }
                channel.closeFuture.whenComplete { _ in table.release(address) }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(DNSStreamHandler(responder: responder, counters: counters, timeout: timeout) { _ in
                        limitHit(DNSServerConfiguration.tcpTimeoutKey, client)
                    })
                }
            }
            .bind(host: configuration.bindHost, port: port)
            .get()
    }
}

/// Answers each datagram inline on its event loop: a query needs no I/O to be answered.
final class DNSDatagramHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>

    let responder: DNSResponder
    let counters: DNSQueryCounters
    let rateLimiter: DNSResponseRateLimiter?
    let logger: Logger
    let limitHit: @Sendable (_ key: String, _ client: SocketAddress?) -> Void

    init(responder: DNSResponder, counters: DNSQueryCounters, rateLimiter: DNSResponseRateLimiter?, logger: Logger,
         limitHit: @escaping @Sendable (_ key: String, _ client: SocketAddress?) -> Void) {
        self.responder = responder
        self.counters = counters
        self.rateLimiter = rateLimiter
        self.logger = logger
        self.limitHit = limitHit
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        var truncate = false
        if let rateLimiter {
            // Decided before the query is read: a flood over the rate costs no parsing.
            let now = Int64(clamping: NIODeadline.now().uptimeNanoseconds)
            switch rateLimiter.decide(for: envelope.remoteAddress, now: now) {
            case .answer:
                break
            case .truncate:
                truncate = true
                limitHit(DNSResponseRateLimit.key, envelope.remoteAddress)
            case .drop:
                limitHit(DNSResponseRateLimit.key, envelope.remoteAddress)
                return
            }
        }
        let response = responder.respond(to: Array(envelope.data.readableBytesView), transport: .udp, truncate: truncate)
        counters.record(response)
        guard let bytes = response.bytes else { return }
        let reply = AddressedEnvelope(remoteAddress: envelope.remoteAddress, data: context.channel.allocator.buffer(bytes: bytes))
        context.write(wrapOutboundOut(reply), promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A UDP socket reports e.g. ICMP "port unreachable" from a client that went away;
        // the socket itself is fine, so keep serving.
        logger.debug("dns.udp_error", metadata: ["error": "\(error)"])
    }
}
