import NIOCore
import NIOPosix
import Synchronization

/// A TCP listener on 127.0.0.1 that relays each connection to a target (a TCP port or a
/// unix socket) and that a test can cut and heal: a network partition between a process and
/// the server it talks to, made of real sockets.
///
/// - `cutConnections()` closes every relayed connection; new ones are relayed again at once
///   (the target "restarted").
/// - `partition()` closes every relayed connection and holds new ones open without relaying
///   a byte, as a network that drops packets does; `heal()` relays new connections again and
///   closes the held ones, so their clients reconnect.
public final class NetworkRelay: Sendable {
    public enum Target: Sendable {
        case tcp(host: String, port: Int)
        case unixSocket(String)
    }

    final class Connections: Sendable {
        struct State {
            var open: [ObjectIdentifier: any Channel] = [:]
            var held: [ObjectIdentifier: any Channel] = [:]
            var partitioned = false
        }
        let state = Mutex(State())
    }

    let server: any Channel
    private let connections = Connections()
    public var port: Int { server.localAddress?.port ?? 0 }
    /// `nats://127.0.0.1:{port}` for a relay in front of a nats-server.
    public var natsURL: String { "nats://127.0.0.1:\(port)" }

    public init(to target: Target) async throws {
        let connections = self.connections
        server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.autoRead, value: false)
            .childChannelInitializer { inbound in
                let held = connections.state.withLock { state -> Bool in
                    guard state.partitioned else { return false }
                    state.held[ObjectIdentifier(inbound)] = inbound
                    return true
                }
                if held { return inbound.eventLoop.makeSucceededVoidFuture() }
                let bootstrap = ClientBootstrap(group: inbound.eventLoop)
                let connecting: EventLoopFuture<any Channel> = switch target {
                case .tcp(let host, let port): bootstrap.connect(host: host, port: port)
                case .unixSocket(let path): bootstrap.connect(unixDomainSocketPath: path)
                }
                return connecting.flatMap { outbound in
                    connections.state.withLock {
                        $0.open[ObjectIdentifier(inbound)] = inbound
                        $0.open[ObjectIdentifier(outbound)] = outbound
                    }
                    return inbound.eventLoop.makeCompletedFuture {
                        try inbound.pipeline.syncOperations.addHandler(Forwarder(peer: outbound, connections: connections))
                        try outbound.pipeline.syncOperations.addHandler(Forwarder(peer: inbound, connections: connections))
                    }.flatMap { outbound.setOption(.autoRead, value: true) }
                     .flatMap { inbound.setOption(.autoRead, value: true) }
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
    }

    /// Closes every relayed connection (the listener stays and relays new ones).
    public func cutConnections() {
        let channels = connections.state.withLock { state in defer { state.open.removeAll() }; return Array(state.open.values) }
        for channel in channels { channel.close(promise: nil) }
    }

    /// Cuts every connection and holds new ones silent until `heal()`.
    public func partition() {
        connections.state.withLock { $0.partitioned = true }
        cutConnections()
    }

    /// Relays new connections again; the ones held during the partition are closed.
    public func heal() {
        let held = connections.state.withLock { state in
            state.partitioned = false
            defer { state.held.removeAll() }
            return Array(state.held.values)
        }
        for channel in held { channel.close(promise: nil) }
    }

    public var isPartitioned: Bool { connections.state.withLock { $0.partitioned } }

    public func close() async {
        heal()
        cutConnections()
        try? await server.close()
    }

    final class Forwarder: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let peer: any Channel
        let connections: Connections
        init(peer: any Channel, connections: Connections) {
            self.peer = peer
            self.connections = connections
        }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            peer.writeAndFlush(unwrapInboundIn(data), promise: nil)
        }
        func channelInactive(context: ChannelHandlerContext) {
            _ = connections.state.withLock { $0.open.removeValue(forKey: ObjectIdentifier(context.channel)) }
            peer.close(promise: nil)
        }
        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }
    }
}
