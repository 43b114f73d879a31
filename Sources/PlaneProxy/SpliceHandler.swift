import NIOCore

/// One side of an upgraded (WebSocket) connection: bytes read here are written to the
/// partner's channel, byte for byte. Reads are only requested while the partner can take
/// more (backpressure both ways); an end of input on one side half-closes the other's
/// output; a close or error on either side closes both. Both sides live on one event loop.
final class SpliceHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var partner: SpliceHandler?
    private var context: ChannelHandlerContext?
    private var pendingRead = false
    private let onClose: (() -> Void)?
    /// The client side counts the bytes of the stream for the metrics.
    private let metrics: ProxyMetrics?
    private var tally = ProxyMetrics.ByteTally()

    init(metrics: ProxyMetrics? = nil, onClose: (() -> Void)? = nil) {
        self.metrics = metrics
        self.onClose = onClose
    }

    /// Two handlers that forward to each other; the first (the client's) reports to `metrics`.
    static func pair(metrics: ProxyMetrics? = nil, onClose: (() -> Void)? = nil) -> (SpliceHandler, SpliceHandler) {
        let first = SpliceHandler(metrics: metrics, onClose: onClose)
        let second = SpliceHandler()
        first.partner = second
        second.partner = first
        return (first, second)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        partner = nil
    }

    // MARK: Partner calls

    private func partnerWrite(_ data: ByteBuffer) {
        count(toClient: data.readableBytes)
        context?.write(wrapOutboundOut(data), promise: nil)
    }

    private func count(fromClient: Int = 0, toClient: Int = 0) {
        guard let metrics else { return }
        tally.fromClient += fromClient
        tally.toClient += toClient
        if tally.isLarge { metrics.report(&tally) }
    }

    private func partnerFlush() {
        context?.flush()
    }

    private var partnerWritable: Bool { context?.channel.isWritable ?? false }

    private func partnerCloseOutput() {
        guard let context else { return }
        context.close(mode: .output).assumeIsolated().whenFailure { _ in
            // Half-closure unsupported (or the channel is gone): close it all.
            self.context?.close(promise: nil)
        }
    }

    private func partnerClose() {
        context?.close(promise: nil)
    }

    private func partnerBecameWritable() {
        if pendingRead {
            pendingRead = false
            context?.read()
        }
    }

    // MARK: Channel events

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        count(fromClient: buffer.readableBytes)
        partner?.partnerWrite(buffer)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        partner?.partnerFlush()
    }

    func channelInactive(context: ChannelHandlerContext) {
        metrics?.report(&tally)
        partner?.partnerClose()
        onClose?()
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, case .inputClosed = event {
            partner?.partnerCloseOutput()
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
        partner?.partnerClose()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { partner?.partnerBecameWritable() }
        context.fireChannelWritabilityChanged()
    }

    func read(context: ChannelHandlerContext) {
        if partner?.partnerWritable ?? false {
            context.read()
        } else {
            pendingRead = true
        }
    }
}
