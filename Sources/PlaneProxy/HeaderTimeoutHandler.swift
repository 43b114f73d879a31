import NIOCore

/// Bounds how long a client may take to send a request head once it started one (a
/// client that stalls mid-head is closed after `limit`), and how long a keep-alive
/// connection may sit without a request (`idleLimit`). Sits before the HTTP decoder; the
/// `ProxyHandler` tells it when a head was complete and when the next one may start.
final class HeaderTimeoutHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let limit: TimeAmount
    private let idleLimit: TimeAmount
    private var waitingForHead = true
    private var timer: Scheduled<Void>?
    private var context: ChannelHandlerContext?

    init(limit: TimeAmount, idleLimit: TimeAmount) {
        self.limit = limit
        self.idleLimit = idleLimit
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { arm(idleLimit) }
    }

    func channelActive(context: ChannelHandlerContext) {
        arm(idleLimit)
        context.fireChannelActive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if waitingForHead, unwrapInboundIn(data).readableBytes > 0 { arm(limit, onlyIfLonger: true) }
        context.fireChannelRead(data)
    }

    /// A complete request head arrived: no limit until the exchange is over.
    func headReceived() {
        waitingForHead = false
        timer?.cancel()
        timer = nil
    }

    /// The exchange is over: the next request may take `idleLimit` to begin.
    func awaitingHead() {
        waitingForHead = true
        arm(idleLimit)
    }

    private var armedFor: TimeAmount?

    private func arm(_ amount: TimeAmount, onlyIfLonger: Bool = false) {
        guard let context else { return }
        // While waiting on a partial head, the shorter head limit replaces the idle one once.
        if onlyIfLonger, armedFor == amount { return }
        timer?.cancel()
        armedFor = amount
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: amount) { [weak self] in
            self?.context?.close(promise: nil)
        }
    }
}
