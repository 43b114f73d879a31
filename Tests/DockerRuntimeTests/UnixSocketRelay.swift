import NIOCore
import NIOPosix
import Synchronization

/// A TCP listener on 127.0.0.1 that relays each connection to a unix socket (the Docker
/// daemon's), and can cut every open connection: a daemon stream "ending" on demand.
final class UnixSocketRelay: Sendable {
    final class OpenChannels: Sendable {
        let channels = Mutex<[ObjectIdentifier: any Channel]>([:])
    }

    let server: any Channel
    private let open = OpenChannels()
    var port: Int { server.localAddress!.port! }

    init(unixSocket: String) async throws {
        let open = self.open
        server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.autoRead, value: false)
            .childChannelInitializer { inbound in
                ClientBootstrap(group: inbound.eventLoop)
                    .connect(unixDomainSocketPath: unixSocket)
                    .flatMap { outbound in
                        open.channels.withLock {
                            $0[ObjectIdentifier(inbound)] = inbound
                            $0[ObjectIdentifier(outbound)] = outbound
                        }
                        return inbound.eventLoop.makeCompletedFuture {
                            try inbound.pipeline.syncOperations.addHandler(Forwarder(peer: outbound))
                            try outbound.pipeline.syncOperations.addHandler(Forwarder(peer: inbound))
                        }.flatMap { outbound.setOption(.autoRead, value: true) }
                         .flatMap { inbound.setOption(.autoRead, value: true) }
                    }
            }
            .bind(host: "127.0.0.1", port: 0).get()
    }

    /// Closes every relayed connection (the listener stays).
    func cutConnections() {
        let channels = open.channels.withLock { all in defer { all.removeAll() }; return Array(all.values) }
        for channel in channels { channel.close(promise: nil) }
    }

    func close() async {
        cutConnections()
        try? await server.close()
    }

    final class Forwarder: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        let peer: any Channel
        init(peer: any Channel) { self.peer = peer }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            peer.writeAndFlush(unwrapInboundIn(data), promise: nil)
        }
        func channelInactive(context: ChannelHandlerContext) {
            peer.close(promise: nil)
        }
        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }
    }
}
