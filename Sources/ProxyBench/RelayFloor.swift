import NIOCore
import NIOPosix

/// The least SwiftNIO work a proxied request can cost, for `scripts/bench-proxy.sh`: each
/// client connection gets its own backend connection and bytes are relayed both ways as
/// they come, without HTTP framing, routing or pooling (so it is no proxy: it cannot
/// route, and it is not correct HTTP for anything but one backend). What our proxy costs
/// above it is the price of doing HTTP; what it costs alone is NIO's event loop.
enum RelayFloor {
    /// One side of a relayed pair: what it reads is written to the other side, flushed once
    /// per read batch. Confined to the pair's event loop.
    final class Side: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer

        private(set) var context: ChannelHandlerContext?
        private var peer: ChannelHandlerContext?
        /// Bytes read before the other side was connected.
        private var waiting: [ByteBuffer] = []

        func handlerAdded(context: ChannelHandlerContext) { self.context = context }

        func connect(to peer: ChannelHandlerContext) {
            self.peer = peer
            for buffer in waiting { peer.write(NIOAny(buffer), promise: nil) }
            waiting = []
            peer.flush()
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            if let peer {
                peer.write(data, promise: nil)
            } else {
                waiting.append(unwrapInboundIn(data))
            }
        }

        func channelReadComplete(context: ChannelHandlerContext) { peer?.flush() }

        func channelInactive(context: ChannelHandlerContext) {
            peer?.close(promise: nil)
            context.fireChannelInactive()
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) { context.close(promise: nil) }
    }

    /// Serves on `port` until the process ends.
    static func run(port: Int, upstreamHost: String, upstreamPort: Int) async throws {
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                let client = Side()
                let backend = Side()
                do {
                    try channel.pipeline.syncOperations.addHandler(client)
                } catch {
                    return channel.eventLoop.makeFailedFuture(error)
                }
                ClientBootstrap(group: channel.eventLoop)
                    .channelOption(.socketOption(.tcp_nodelay), value: 1)
                    .channelInitializer { upstream in
                        upstream.eventLoop.makeCompletedFuture { try upstream.pipeline.syncOperations.addHandler(backend) }
                    }
                    .connect(host: upstreamHost, port: upstreamPort)
                    .assumeIsolatedUnsafeUnchecked()
                    .whenComplete { result in
                        guard case .success = result, let clientContext = client.context, let backendContext = backend.context else {
                            channel.close(promise: nil)
                            return
                        }
                        backend.connect(to: clientContext)
                        client.connect(to: backendContext)
                    }
                return channel.eventLoop.makeSucceededVoidFuture()
            }
            .bind(host: "127.0.0.1", port: port).get()
        try await server.closeFuture.get()
    }
}
