import Logging
import NIOCore
import NIOPosix
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
    private let tcpConnections = ConnectionCount()

    public init(configuration: DNSServerConfiguration, responder: DNSResponder, logger: Logger) {
        self.configuration = configuration
        self.responder = responder
        self.logger = logger
    }

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
                    try channel.pipeline.syncOperations.addHandler(DNSDatagramHandler(responder: responder, counters: counters, logger: logger))
                }
            }
            .bind(host: configuration.bindHost, port: port)
            .get()
    }

    private func bindTCP(port: Int) async throws -> any Channel {
        let responder = responder
        let counters = counters
        let idle = TimeAmount.nanoseconds(Int64(configuration.tcpIdleTimeout.components.seconds) * 1_000_000_000
                                          + configuration.tcpIdleTimeout.components.attoseconds / 1_000_000_000)
        let limit = configuration.maxTCPConnections
        let connections = tcpConnections
        return try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(.backlog, value: 256)
            .childChannelInitializer { channel in
                guard connections.value.wrappingAdd(1, ordering: .relaxed).newValue <= limit else {
                    connections.value.wrappingSubtract(1, ordering: .relaxed)
                    return channel.close()
                }
                channel.closeFuture.whenComplete { _ in connections.value.wrappingSubtract(1, ordering: .relaxed) }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(IdleStateHandler(readTimeout: idle))
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(DNSStreamFrameDecoder()))
                    try channel.pipeline.syncOperations.addHandler(DNSStreamHandler(responder: responder, counters: counters))
                }
            }
            .bind(host: configuration.bindHost, port: port)
            .get()
    }
}

/// Open TCP connections (an `Atomic` cannot be captured by the channel initializer itself).
final class ConnectionCount: Sendable {
    let value = Atomic<Int>(0)
}

/// Answers each datagram inline on its event loop: a query needs no I/O to be answered.
final class DNSDatagramHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>

    let responder: DNSResponder
    let counters: DNSQueryCounters
    let logger: Logger

    init(responder: DNSResponder, counters: DNSQueryCounters, logger: Logger) {
        self.responder = responder
        self.counters = counters
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        let response = responder.respond(to: Array(envelope.data.readableBytesView), transport: .udp)
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

/// DNS over TCP frames every message with a two-byte length (RFC 1035 §4.2.2).
struct DNSStreamFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt16.self),
              buffer.readableBytes >= 2 + Int(length) else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: 2)
        context.fireChannelRead(wrapInboundOut(buffer.readSlice(length: Int(length))!))
        return .continue
    }
}

final class DNSStreamHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let responder: DNSResponder
    let counters: DNSQueryCounters

    init(responder: DNSResponder, counters: DNSQueryCounters) {
        self.responder = responder
        self.counters = counters
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let response = responder.respond(to: Array(unwrapInboundIn(data).readableBytesView), transport: .tcp)
        counters.record(response)
        guard let bytes = response.bytes else {
            context.close(promise: nil)
            return
        }
        // The responder never answers more than 65535 bytes (`DNSMessageWriter.maximumLength`).
        guard let length = UInt16(exactly: bytes.count) else {
            context.close(promise: nil)
            return
        }
        var buffer = context.channel.allocator.buffer(capacity: bytes.count + 2)
        buffer.writeInteger(length)
        buffer.writeBytes(bytes)
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
