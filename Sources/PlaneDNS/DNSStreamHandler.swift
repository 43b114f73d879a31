import NIOCore

/// A DNS-over-TCP connection: performs what its `DNSStreamConnection` decides. Answers each
/// whole query through the `DNSResponder` while the socket takes more (an answer waits while
/// it does not, and so do reads), and closes the connection when its deadline passes.
final class DNSStreamHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// Why a connection was closed by the server, for the caller's counting.
    enum Closed: Equatable {
        /// Its deadline passed within a query, or with answers it did not read.
        case slowClient
    }

    let responder: DNSResponder
    let counters: DNSQueryCounters
    private let timeout: TimeAmount
    private let closed: (Closed) -> Void
    private var connection: DNSStreamConnection?
    private var timer: Scheduled<Void>?
    /// The channel asked for a read that waits for the socket to take more, or for the
    /// waiting bytes to be answered.
    private var readPending = false
    /// Answers were written and not flushed yet.
    private var needsFlush = false

    init(responder: DNSResponder, counters: DNSQueryCounters, timeout: TimeAmount, closed: @escaping (Closed) -> Void = { _ in }) {
        self.responder = responder
        self.counters = counters
        self.timeout = timeout
        self.closed = closed
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { begin(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        begin(context)
        context.fireChannelActive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        context.fireChannelInactive()
    }

    private func begin(_ context: ChannelHandlerContext) {
        guard connection == nil else { return }
        let connection = DNSStreamConnection(timeout: timeout, now: context.eventLoop.now)
        self.connection = connection
        schedule(context, at: connection.deadline)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        connection?.received(&bytes)
        answer(context)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        flushIfNeeded(context)
    }

    /// Answers whole queries while the socket takes more.
    private func answer(_ context: ChannelHandlerContext) {
        guard connection != nil else { return }
        let now = context.eventLoop.now
        while context.channel.isWritable, let query = connection?.nextQuery(now: now) {
            let response = responder.respond(to: Array(query.readableBytesView), transport: .tcp)
            counters.record(response)
            // Nothing to answer (a response sent to us) or nothing that fits a frame (the
            // responder never writes more than 65535 bytes): the connection goes.
            guard let bytes = response.bytes, let length = UInt16(exactly: bytes.count) else {
                context.close(promise: nil)
                return
            }
            var buffer = context.channel.allocator.buffer(capacity: bytes.count + 2)
            buffer.writeInteger(length)
            buffer.writeBytes(bytes)
            context.write(wrapOutboundOut(buffer), promise: nil)
            needsFlush = true
        }
    }

    private func flushIfNeeded(_ context: ChannelHandlerContext) {
        guard needsFlush else { return }
        needsFlush = false
        context.flush()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            answer(context)
            flushIfNeeded(context)
            readIfPending(context)
        }
        context.fireChannelWritabilityChanged()
    }

    func read(context: ChannelHandlerContext) {
        if context.channel.isWritable, connection?.wantsInput ?? true {
            context.read()
        } else {
            readPending = true
        }
    }

    private func readIfPending(_ context: ChannelHandlerContext) {
        guard readPending, connection?.wantsInput ?? true else { return }
        readPending = false
        context.read()
    }

    private func schedule(_ context: ChannelHandlerContext, at deadline: NIODeadline) {
        timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) {
            self.timerFired(context)
        }
    }

    private func timerFired(_ context: ChannelHandlerContext) {
        timer = nil
        guard let connection else { return }
        switch connection.timerFired(now: context.eventLoop.now) {
        case .wait(let deadline):
            schedule(context, at: deadline)
        case .close:
            // Idle between queries is routine; within one, or with answers unread, is slow.
            if connection.isWithinQuery || !context.channel.isWritable { closed(.slowClient) }
            context.close(promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
