import NIOCore

/// Bounds how long a client may take to send a request head once it started one (a
/// client that stalls mid-head is closed after `limit`), and how long a keep-alive
/// connection may sit without a request (`idleLimit`). Sits before `ProxyHandler`; the
/// `ProxyHandler` tells it when a head was complete and when the next one may start.
final class HeaderTimeoutHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let limit: TimeAmount
    private let idleLimit: TimeAmount
    private var waitingForHead = true
    /// When the connection closes unless something changes it; nil: no limit now.
    private var deadline: NIODeadline?
    /// Whether `deadline` is the shorter head limit (set once per partial head).
    private var headStarted = false
    /// One timer at a time, re-armed when it fires early (no timer per request).
    private var check: Scheduled<Void>?
    private var context: ChannelHandlerContext?

    init(limit: TimeAmount, idleLimit: TimeAmount) {
        self.limit = limit
        self.idleLimit = idleLimit
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { set(.now() + idleLimit) }
    }

    func channelActive(context: ChannelHandlerContext) {
        set(.now() + idleLimit)
        context.fireChannelActive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        check?.cancel()
        check = nil
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        check?.cancel()
        check = nil
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if waitingForHead, !headStarted, unwrapInboundIn(data).readableBytes > 0 {
            headStarted = true
            set(.now() + limit)
        }
        context.fireChannelRead(data)
    }

    /// A complete request head arrived: no limit until the exchange is over.
    func headReceived() {
        waitingForHead = false
        headStarted = false
        deadline = nil
    }

    /// The exchange is over: the next request may take `idleLimit` to begin.
    func awaitingHead() {
        waitingForHead = true
        headStarted = false
        set(.now() + idleLimit)
    }

    /// Sets the deadline; the timer is only replaced when the new deadline is earlier than
    /// the armed one (a later one is picked up when the timer fires).
    private func set(_ new: NIODeadline) {
        deadline = new
        guard let context else { return }
        if let armedAt, check != nil, armedAt <= new { return }
        check?.cancel()
        arm(at: new, context: context)
    }

    private var armedAt: NIODeadline?

    /// Arms at most `limit` ahead, so that a head starting later (deadline now + limit) is
    /// never earlier than the armed time: no timer churn per request.
    private func arm(at requested: NIODeadline, context: ChannelHandlerContext) {
        let when = min(requested, .now() + limit)
        armedAt = when
        // Captures self strongly (no side table for a weak reference); a removed or closed
        // handler cancels it.
        check = context.eventLoop.assumeIsolated().scheduleTask(deadline: when) {
            guard let context = self.context else { return }
            self.check = nil
            guard let deadline = self.deadline else { return }
            if deadline <= .now() {
                context.close(promise: nil)
            } else {
                self.arm(at: deadline, context: context)
            }
        }
    }
}
