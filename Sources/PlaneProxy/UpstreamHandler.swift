import NIOCore
import NIOHTTP1

/// The proxy's end of a connection to a backend: hands response parts to the client
/// connection's `ProxyHandler` that leased it, reads only while that client can take more,
/// and tells the pool when an idle connection closes.
final class UpstreamHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = HTTPClientRequestPart
    typealias OutboundOut = HTTPClientRequestPart

    /// The client side currently using this connection (nil while pooled).
    weak var owner: ProxyHandler?
    private(set) var context: ChannelHandlerContext?
    private var pendingRead = false
    private var onIdleClose: (() -> Void)?

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    /// The pool holds this connection now: no owner, and a close must be reported.
    func parkedInPool(onClose: @escaping () -> Void) {
        owner = nil
        onIdleClose = onClose
    }

    func lease(to owner: ProxyHandler) {
        self.owner = owner
        onIdleClose = nil
    }

    /// The client can take more again.
    func resumeReading() {
        guard pendingRead, let context else { return }
        pendingRead = false
        context.read()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        owner?.upstream(self, received: unwrapInboundIn(data))
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        owner?.upstreamReadComplete(self)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let onIdleClose {
            self.onIdleClose = nil
            onIdleClose()
        }
        owner?.upstreamClosed(self, error: nil)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        owner?.upstreamClosed(self, error: error)
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { owner?.upstreamBecameWritable(self) }
        context.fireChannelWritabilityChanged()
    }

    func read(context: ChannelHandlerContext) {
        if let owner, !owner.clientWritable {
            pendingRead = true
        } else {
            context.read()
        }
    }
}
