import NIOCore
import NIOHTTP1

/// Closes an HTTP connection that does not deliver a whole request (head and body) within
/// `limit` of starting to wait for one: from the connection's start, or from the end of the
/// response before (the controller's `[http] request_timeout_secs`; the drone's HTTP→HTTPS
/// redirect and metrics listeners use `[proxy] header_read_timeout_secs`). That bounds idle
/// keep-alive connections and clients that send slowly (a head never finished, a body a
/// byte at a time), which would otherwise hold a connection for as long as they like.
/// While a request is answered (a response of any length, such as an event stream) there is
/// no limit. Sits after NIO's HTTP server pipeline, which holds a pipelined request back
/// until the response before it has ended.
public final class HTTPRequestTimeoutHandler: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = HTTPServerRequestPart
    public typealias InboundOut = HTTPServerRequestPart
    public typealias OutboundIn = HTTPServerResponsePart
    public typealias OutboundOut = HTTPServerResponsePart

    public let limit: TimeAmount
    /// Told when a connection is closed for its limit (with whether a request had begun).
    private let timedOut: (_ requestBegun: Bool) -> Void
    private var timer: Scheduled<Void>?
    /// A request's head arrived and its end has not.
    private var requestBegun = false

    public init(limit: TimeAmount, timedOut: @escaping (_ requestBegun: Bool) -> Void = { _ in }) {
        self.limit = limit
        self.timedOut = timedOut
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { arm(context) }
    }

    public func channelActive(context: ChannelHandlerContext) {
        arm(context)
        context.fireChannelActive()
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        disarm()
    }

    public func channelInactive(context: ChannelHandlerContext) {
        disarm()
        context.fireChannelInactive()
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head: requestBegun = true
        case .body: break
        case .end:
            // Whole: it is being answered now, for as long as that takes.
            requestBegun = false
            disarm()
        }
        context.fireChannelRead(data)
    }

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) { arm(context) }
        context.write(data, promise: promise)
    }

    private func arm(_ context: ChannelHandlerContext) {
        timer?.cancel()
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: limit) {
            self.timer = nil
            self.timedOut(self.requestBegun)
            context.close(promise: nil)
        }
    }

    private func disarm() {
        timer?.cancel()
        timer = nil
    }
}
