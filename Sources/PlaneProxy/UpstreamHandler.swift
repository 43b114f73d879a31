import NIOCore

/// The proxy's end of a connection to a backend, the only handler on it: frames the
/// backend's responses (`HTTP1Parser`) and hands them to the client connection's
/// `ProxyHandler` that leased it, reads only while that client can take more, and tells
/// the pool when an idle connection closes.
final class UpstreamHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// The client side currently using this connection (nil while pooled). Strong, not
    /// weak: every path that ends an exchange sets it to nil, a closed channel drops its
    /// handlers anyway, and a weak reference would give the `ProxyHandler` a side table,
    /// which sends each of its retains and releases down the runtime's slow path.
    var owner: ProxyHandler?
    private(set) var context: ChannelHandlerContext?
    var parser: HTTP1Parser
    private var pendingRead = false
    /// While parked: the pool to tell when the connection closes, and its bucket there.
    private var parkedIn: (pool: UpstreamPool, bucket: UpstreamPool.Bucket)?
    /// False once the backend sent more than it was asked for.
    private(set) var reusable = true
    /// The connection is open (kept here: cheaper to read than the channel's own state,
    /// which the pool would ask for on every take and give).
    private(set) var isActive = false
    /// The connection takes more writes (kept from `channelWritabilityChanged`).
    private(set) var isWritable = false
    /// Bytes were written and not flushed yet: a flush without them is skipped.
    private var needsFlush = false

    init(maxHeadBytes: Int, maxHeaderCount: Int = 100) {
        parser = HTTP1Parser(kind: .response, maxHeadBytes: maxHeadBytes, maxHeaderCount: maxHeaderCount)
    }

    var channel: (any Channel)? { context?.channel }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        isActive = context.channel.isActive
        isWritable = context.channel.isWritable
    }

    func channelActive(context: ChannelHandlerContext) {
        isActive = true
        context.fireChannelActive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        isActive = false
        isWritable = false
        owner = nil
        parkedIn = nil
    }

    /// The pool holds this connection now: no owner, and a close must be reported.
    func parked(in pool: UpstreamPool, bucket: UpstreamPool.Bucket) {
        owner = nil
        parkedIn = (pool, bucket)
    }

    func lease(to owner: ProxyHandler, answersHEAD: Bool) {
        self.owner = owner
        parkedIn = nil
        parser.answersHEAD = answersHEAD
        parser.decodeChunks = false
    }

    /// The client can take more again.
    func resumeReading() {
        guard pendingRead, let context else { return }
        pendingRead = false
        context.read()
    }

    func write(_ buffer: ByteBuffer, flush: Bool) {
        guard let context else { return }
        if flush {
            needsFlush = false
            context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        } else {
            needsFlush = true
            context.write(wrapOutboundOut(buffer), promise: nil)
        }
    }

    func flush() {
        guard needsFlush, let context else { return }
        needsFlush = false
        context.flush()
    }

    func close() { context?.close(promise: nil) }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let owner, !parser.hasSwitchedProtocols else {
            // Bytes from a backend nobody asked: the connection cannot be trusted with a request.
            if self.owner == nil { context.close(promise: nil) }
            return
        }
        parser.append(unwrapInboundIn(data))
        deliver(to: owner, context: context)
    }

    /// Hands out parsed events while this connection still belongs to `owner`.
    private func deliver(to owner: ProxyHandler, context: ChannelHandlerContext) {
        owner.upstreamEventsBegin()
        while self.owner === owner, !parser.hasSwitchedProtocols {
            let event: HTTP1Parser.Event?
            do {
                event = try parser.next()
            } catch {
                self.owner = nil
                owner.upstreamClosed(self, error: error)
                context.close(promise: nil)
                return
            }
            guard let event else { return }
            if case .end = event {
                // One response per request: bytes after it came unasked, so the
                // connection goes no further (the pool closes it).
                if parser.bufferedBytes > 0 { reusable = false }
                owner.upstream(self, received: event)
                return
            }
            owner.upstream(self, received: event)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        owner?.upstreamReadComplete(self)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, case .inputClosed = event {
            // The backend finished sending: a body delimited by the close ends here.
            if parser.inputEnded() == .completedMessage, let owner { deliver(to: owner, context: context) }
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        isActive = false
        if let (pool, bucket) = parkedIn {
            parkedIn = nil
            pool.drop(self, from: bucket)
        }
        if let owner {
            if parser.inputEnded() == .completedMessage { deliver(to: owner, context: context) }
            self.owner?.upstreamClosed(self, error: nil)
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        owner?.upstreamClosed(self, error: error)
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        isWritable = context.channel.isWritable
        if isWritable { owner?.upstreamBecameWritable(self) }
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
