import Logging
import NIOCore
import NIOHTTP1
import PlaneCore

/// What every connection of one listener shares.
struct ProxyContext: Sendable {
    let router: ProxyRouter
    let routes: RouteTable
    let configuration: ProxyConfiguration
    let metrics: ProxyMetrics
    let pools: UpstreamPools
    let logger: Logger
    /// `https` on the TLS listener, `http` otherwise.
    let scheme: String
}

/// One client connection, the only HTTP handler on it: frames requests itself
/// (`HTTP1Parser`), routes each (`ProxyRouter`), answers locally (404, 401, 403, the auth
/// cookie, 400, 431, 502, 504) or forwards it to the backend over a pooled keep-alive
/// connection on the same event loop. Heads are rewritten from the bytes they came in as
/// (`ForwardedHeaders`); bodies are forwarded as the slices they arrived in, chunk framing
/// included, with backpressure both ways (the side that cannot write stops the other
/// side's reads). Pipelined requests wait in the parser's buffer until the response
/// before them is done. A `101` answer to an upgrade request turns both connections into a
/// byte splice (`SpliceHandler`).
final class ProxyHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// One request forwarded to a backend.
    final class Exchange {
        /// The head for the backend, kept for a retry on a fresh connection.
        let upstreamHead: ByteBuffer
        let target: ProxyRouter.Target
        let isHEAD: Bool
        /// The client speaks HTTP/1.0.
        let clientIsHTTP10: Bool
        let keepAlive: Bool
        let isUpgrade: Bool
        /// The request has body bytes to come after its head (a length or chunks).
        let hasBody: Bool
        /// The client waits for `100 Continue` before sending the body; the proxy sends it
        /// once the backend connection is there (the backend never sees `Expect`).
        let expectsContinue: Bool
        var upstream: UpstreamHandler?
        var reused = false
        var retried = false
        /// Request body bytes that arrived while connecting.
        var buffered: [ByteBuffer] = []
        var sentBody = false
        var requestEnded = false
        var responseStarted = false
        var upstreamKeepAlive = true
        /// The client connection closes once the response is written.
        var closesClient = false
        /// The response must have started by then (set once the request is sent).
        var responseDeadline: NIODeadline?
        let started: NIODeadline
        /// The backend's open-exchange counter while this exchange counts as open (it is
        /// never idle then): from routing until the response is written to the client.
        var openAt: RouteTable.OpenExchanges?

        init(upstreamHead: ByteBuffer, target: ProxyRouter.Target, isHEAD: Bool, clientIsHTTP10: Bool, keepAlive: Bool, isUpgrade: Bool, hasBody: Bool,
             expectsContinue: Bool, started: NIODeadline) {
            self.hasBody = hasBody
            self.started = started
            self.upstreamHead = upstreamHead
            self.target = target
            self.isHEAD = isHEAD
            self.clientIsHTTP10 = clientIsHTTP10
            self.keepAlive = keepAlive
            self.isUpgrade = isUpgrade
            self.expectsContinue = expectsContinue
        }
    }

    enum State {
        /// Waiting for a request.
        case idle
        /// A local answer was sent; the rest of the request body is read and dropped.
        case discarding(keepAlive: Bool)
        case proxying(Exchange)
        /// The response is complete but the client is still sending the request body.
        case finishingRequest(keepAlive: Bool)
        /// Handed over to a splice, or closing: nothing more is read as HTTP.
        case done
    }

    /// Pipelined requests beyond this many buffered bytes stop the client's reads.
    static let maxBufferedPipeline = 64 * 1024

    private let shared: ProxyContext
    private let pool: UpstreamPool
    private var context: ChannelHandlerContext?
    private var parser: HTTP1Parser
    private var state = State.idle {
        didSet {
            // Leaving an exchange, by whatever path: it no longer keeps its backend busy.
            if case .proxying(let previous) = oldValue, previous.openAt != nil {
                if case .proxying(let current) = state, current === previous {} else { exchangeEnded(previous) }
            }
            if case .idle = state {
                let now = self.now
                headerDeadline.awaitingHead(now: now)
                headerDeadlineChanged(now: now)
                // A large head (or joined body) is not kept while the connection waits.
                if requestBuffer.capacity > Self.maxKeptHeadBuffer { requestBuffer = ByteBuffer() }
                if responseBuffer.capacity > Self.maxKeptHeadBuffer { responseBuffer = ByteBuffer() }
            }
        }
    }
    /// The time of the event being handled, read from the clock at most once per event:
    /// every entry point (from NIO, the upstream side or a timer) clears it first.
    private var eventTime: NIODeadline?
    private var now: NIODeadline {
        if let eventTime { return eventTime }
        let time = NIODeadline.now()
        eventTime = time
        return time
    }
    /// The header read and idle timeouts (no handler of their own: one handler per connection).
    private var headerDeadline: HeaderDeadline
    private var headerCheck: Scheduled<Void>?
    private var headerCheckAt: NIODeadline?
    private var responseCheck: Scheduled<Void>?
    /// Inside a read from the client: upstream writes are flushed at its end, once.
    private var inClientRead = false
    private var pendingRead = false
    /// The client sent its last byte (half-close): close once the current response is out.
    private var clientInputClosed = false
    private var clientAddress: String?
    /// Bytes not yet reported to the metrics.
    private var tally = ProxyMetrics.ByteTally()
    private var lastActivity: (backend: BackendID, at: NIODeadline)?
    static let activityInterval = TimeAmount.milliseconds(100)
    /// This connection's last route lookup.
    private var routeCache = RouteTable.Cache()
    /// The pool's bucket for this connection's last backend.
    private var poolBucket: UpstreamPool.Bucket?
    /// The counters of this connection's event loop.
    private let metrics: ProxyMetrics.Shard
    /// `[proxy] upstream_timeout_secs`.
    private let responseTimeout: TimeAmount
    /// A response head not written yet (in `responseBuffer`), with the body bytes that fit
    /// the memory reserved behind it: a small response leaves in one buffer, with one
    /// `writeAndFlush` at its end, or at the end of the read that brought it.
    private var responseHeadPending = false
    /// At most this much of the body already read is reserved behind a response head.
    static let maxJoinedBody = 8192
    /// The memory heads are written into, kept from request to request: once the socket
    /// has written a head and let go of it, the next head reuses the memory instead of
    /// allocating (`ByteBuffer.clear` allocates only while the last one is still held).
    private var requestBuffer = ByteBuffer()
    private var responseBuffer = ByteBuffer()
    /// Head memory beyond this is not kept for the next request (idle connections stay small).
    static let maxKeptHeadBuffer = 4096

    init(shared: ProxyContext, pool: UpstreamPool) {
        self.shared = shared
        self.pool = pool
        metrics = shared.metrics.shard(for: pool.eventLoop)
        responseTimeout = shared.configuration.upstreamResponseTimeout.timeAmount
        parser = HTTP1Parser(kind: .request, maxHeadBytes: shared.configuration.maxHeaderBytes, maxHeaderCount: shared.configuration.maxHeaderCount)
        headerDeadline = HeaderDeadline(headLimit: shared.configuration.headerReadTimeout.timeAmount, idleLimit: shared.configuration.idleTimeout.timeAmount)
    }

    /// The client connection takes more writes (kept from `channelWritabilityChanged`, so
    /// that the upstream side's reads need not ask the channel each time).
    private(set) var clientWritable = false

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        clientWritable = context.channel.isWritable
        clientAddress = context.channel.remoteAddress?.ipAddress
        eventTime = nil
        if context.channel.isActive {
            let now = self.now
            headerDeadline.connectionStarted(now: now)
            headerDeadlineChanged(now: now)
        }
    }

    func channelActive(context: ChannelHandlerContext) {
        clientAddress = context.channel.remoteAddress?.ipAddress
        eventTime = nil
        let now = self.now
        headerDeadline.connectionStarted(now: now)
        headerDeadlineChanged(now: now)
        context.fireChannelActive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        responseCheck?.cancel()
        responseCheck = nil
        headerCheck?.cancel()
        headerCheck = nil
        self.context = nil
        clientWritable = false
        state = .done
    }

    // MARK: Header read and idle timeouts

    /// Re-arms the timer only when the deadline moved earlier than it; a later deadline is
    /// picked up when the timer fires (no timer churn per request).
    private func headerDeadlineChanged(now: NIODeadline) {
        guard let context, let when = headerDeadline.timerTime(now: now) else { return }
        if headerCheck != nil, let armed = headerCheckAt, armed <= when { return }
        headerCheck?.cancel()
        armHeaderCheck(at: when, context: context)
    }

    private func armHeaderCheck(at when: NIODeadline, context: ChannelHandlerContext) {
        headerCheckAt = when
        // Captures self strongly (no side table for a weak reference); `handlerRemoved` cancels it.
        headerCheck = context.eventLoop.assumeIsolated().scheduleTask(deadline: when) {
            self.headerCheck = nil
            guard let context = self.context else { return }
            self.eventTime = nil
            let now = self.now
            if self.headerDeadline.isExpired(at: now) {
                self.shared.logger.debug("proxy.header_timeout")
                self.closeClient()
            } else if let next = self.headerDeadline.timerTime(now: now) {
                self.armHeaderCheck(at: next, context: context)
            }
        }
    }

    // MARK: Client → proxy

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        eventTime = nil
        if case .idle = state, buffer.readableBytes > 0 {
            let now = self.now
            headerDeadline.bytesArrived(now: now)
            headerDeadlineChanged(now: now)
        }
        tally.fromClient += buffer.readableBytes
        if tally.isLarge { metrics.report(&tally) }
        if case .done = state { return }
        inClientRead = true
        parser.append(buffer)
        processClientInput()
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        // Request bytes are written upstream unflushed as they arrive; one flush per read batch.
        inClientRead = false
        if case .proxying(let exchange) = state { exchange.upstream?.flush() }
        context.fireChannelReadComplete()
    }

    /// Handles what the client sent, request by request, until a request waits for its
    /// response (later pipelined requests stay in the parser).
    private func processClientInput() {
        loop: while true {
            switch state {
            case .proxying(let exchange) where exchange.requestEnded: break loop
            case .done: return
            default: break
            }
            let event: HTTP1Parser.Event?
            do {
                event = try parser.next()
            } catch {
                protocolError(error)
                return
            }
            guard let event else { break loop }
            switch event {
            case .head(let head):
                headerDeadline.headReceived()
                received(head: head)
            case .body(let buffer):
                guard case .proxying(let exchange) = state else { continue }
                exchange.sentBody = true
                send(buffer, on: exchange)
            case .end:
                switch state {
                case .discarding(let keepAlive), .finishingRequest(let keepAlive):
                    // Without keep-alive the local answer closes the connection once written.
                    state = keepAlive ? .idle : .done
                case .proxying(let exchange):
                    exchange.requestEnded = true
                    if let upstream = exchange.upstream, !inClientRead { upstream.flush() }
                    armResponseTimeout(exchange)
                case .idle, .done:
                    break
                }
            }
        }
        if clientInputClosed, case .idle = state { closeClient() }
        resumeClientReadsIfHeld()
    }

    private func received(head: HTTP1Head) {
        let request = ProxyRouter.Request(host: nil, uri: head.originTarget, authorization: head.values(.authorization), cookies: head.values(.cookie))
        let subdomain = head.withFirstValue(.host) { host in host.flatMap { shared.router.subdomain(ofHost: $0) } }
        let hasBody: Bool
        switch parser.framing {
        case .none, .length(0): hasBody = false
        default: hasBody = true
        }
        let expectsContinue = head.minorVersion >= 1 && hasBody && head.hasToken("100-continue", in: .expect)
        // A local answer to a client that waits for 100 Continue: its body never comes, so
        // the connection cannot carry another request.
        let keepAlive = head.isKeepAlive && !expectsContinue
        if head.methodIs("CONNECT") {
            respondLocally(.methodNotAllowed, body: "CONNECT is not supported by this proxy.", keepAlive: false)
            return
        }
        let routes = shared.routes
        switch shared.router.decide(request, subdomain: subdomain, lookup: { routes.route(for: $0, cache: &routeCache) }) {
        case .notFound:
            respondLocally(.notFound, headers: [("Access-Control-Allow-Origin", "*")], keepAlive: keepAlive)
        case .unauthorized:
            respondLocally(.unauthorized, body: "Expected bearer token.", keepAlive: keepAlive)
        case .forbidden:
            respondLocally(.forbidden, keepAlive: keepAlive)
        case .badRequest(let message):
            respondLocally(.badRequest, body: message, keepAlive: keepAlive)
        case .setAuthCookie(let token, let location, let cookiePath):
            let secure = shared.scheme == "https" ? "; Secure" : ""
            respondLocally(.found, headers: [("Location", location),
                                             ("Set-Cookie", "\(BearerTokenCheck.cookieName)=\(token); Path=\(cookiePath); HttpOnly; SameSite=Lax\(secure)")],
                           keepAlive: keepAlive)
        case .forward(let target):
            let now = self.now
            // The route just looked up is in the cache, with its backend's exchange counter.
            let openAt = target.backendID == nil ? nil : routeCache.exchanges
            if let backend = target.backendID { markActive(backend, now: now) }
            let isUpgrade = head.isUpgrade
            let capacity = ForwardedHeaders.requestCapacity(head, target: target.uri, clientAddress: clientAddress, scheme: shared.scheme)
            requestBuffer.clear(minimumCapacity: capacity)  // in place once the last head is written
            ForwardedHeaders.writeUpstreamRequest(head, target: target.uri, clientAddress: clientAddress, scheme: shared.scheme, upgrade: isUpgrade, into: &requestBuffer)
            let exchange = Exchange(upstreamHead: requestBuffer, target: target, isHEAD: head.methodIs("HEAD"), clientIsHTTP10: head.minorVersion == 0,
                                    keepAlive: head.isKeepAlive, isUpgrade: isUpgrade, hasBody: hasBody, expectsContinue: expectsContinue, started: now)
            if let openAt {
                openAt.open()
                exchange.openAt = openAt
            }
            state = .proxying(exchange)
            attachUpstream(to: exchange)
        }
    }

    /// An exchange ends: its backend's idle clock starts now, and the exchange stops counting
    /// as open. A response still on its way to a client that reads slowly keeps it open until
    /// it is written; that is asked (`bufferedWritableBytes`) only of exchanges that lasted
    /// longer than `activityInterval`: a shorter one was read whole from its backend within
    /// that time (backpressure keeps a slow client's response in the backend), so the
    /// proxy holds all of it.
    private func exchangeEnded(_ exchange: Exchange) {
        guard let openAt = exchange.openAt else { return }
        exchange.openAt = nil
        let now = self.now
        let backend = exchange.target.backendID
        if now - exchange.started >= Self.activityInterval, let context, context.channel.isActive,
           let pending = try? context.channel.syncOptions?.getOption(ChannelOptions.bufferedWritableBytes), pending > 0 {
            let routes = shared.routes
            // Writes complete in order: this one when the response's last byte is out.
            context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(capacity: 0))).assumeIsolated().whenComplete { _ in
                if let backend { routes.recordActivity(backend) }
                openAt.close()
            }
            return
        }
        // Activity first: between the two, the backend must not look idle since long ago.
        if let backend { markActive(backend, now: now) }
        openAt.close()
    }

    /// Marks the backend active in the route table, at most every `activityInterval` per
    /// connection and backend (the table is read once a second; a busy keep-alive
    /// connection need not take its lock for every request).
    private func markActive(_ backend: BackendID, now: NIODeadline) {
        if let last = lastActivity, now - last.at < Self.activityInterval, last.backend == backend { return }
        lastActivity = (backend, now)
        shared.routes.recordActivity(backend)
    }

    /// Sends request body bytes upstream, or keeps them until the connection is there.
    private func send(_ buffer: ByteBuffer, on exchange: Exchange) {
        guard let upstream = exchange.upstream else {
            exchange.buffered.append(buffer)
            return
        }
        upstream.write(buffer, flush: !inClientRead)
    }

    // MARK: Upstream connection

    private func attachUpstream(to exchange: Exchange) {
        // An upgrade gets a connection of its own: the splice uses it up anyway, and many
        // servers switch protocols only on a connection's first request (SwiftNIO's
        // upgrade handler is gone after it): on a reused one they answer 200.
        let bucket = pool.bucket(for: exchange.target.address, cached: poolBucket)
        poolBucket = bucket
        if !exchange.isUpgrade, let handler = pool.take(from: bucket, now: now) {
            exchange.reused = true
            attach(handler, to: exchange)
            return
        }
        pool.connect(exchange.target.address, timeout: shared.configuration.upstreamConnectTimeout.timeAmount).assumeIsolated().whenComplete { result in
            self.eventTime = nil
            guard case .proxying(let current) = self.state, current === exchange else {
                if case .success(let channel) = result { channel.close(promise: nil) }
                return
            }
            switch result {
            case .success(let channel):
                guard let handler = try? channel.pipeline.syncOperations.handler(type: UpstreamHandler.self) else {
                    channel.close(promise: nil)
                    self.upstreamFailed(exchange, status: .badGateway)
                    return
                }
                self.attach(handler, to: exchange)
            case .failure(let error):
                self.shared.logger.debug("proxy.upstream_connect_failed", metadata: ["plane.backend": "\(exchange.target.backendID?.rawValue ?? "passthrough")", "error": "\(error)"])
                self.upstreamFailed(exchange, status: .badGateway)
            }
        }
    }

    private func attach(_ handler: UpstreamHandler, to exchange: Exchange) {
        handler.lease(to: self, answersHEAD: exchange.isHEAD)
        exchange.upstream = handler
        // A request without a body is all there: it leaves at once (one pass through the
        // pipeline instead of a write and a flush later).
        handler.write(exchange.upstreamHead, flush: !exchange.hasBody && exchange.buffered.isEmpty)
        for buffer in exchange.buffered { handler.write(buffer, flush: false) }
        exchange.buffered = []
        if !inClientRead { handler.flush() }
        if exchange.expectsContinue, !exchange.requestEnded, !exchange.retried {
            context?.writeAndFlush(wrapOutboundOut(ByteBuffer(staticString: "HTTP/1.1 100 Continue\r\n\r\n")), promise: nil)
        }
        if exchange.requestEnded { armResponseTimeout(exchange) }
        resumeClientReadsIfHeld()
    }

    /// Once the whole request is with the backend, its response must start within
    /// `upstream_timeout_secs` (an upload may take as long as it takes). One timer per
    /// connection, re-armed when it fires early, instead of one per request.
    private func armResponseTimeout(_ exchange: Exchange) {
        guard exchange.upstream != nil, exchange.requestEnded, !exchange.responseStarted, let context else { return }
        let deadline = now + responseTimeout
        exchange.responseDeadline = deadline
        if responseCheck == nil { armResponseCheck(at: deadline, context: context) }
    }

    private func armResponseCheck(at when: NIODeadline, context: ChannelHandlerContext) {
        // Captures self strongly (no side table for a weak reference); `handlerRemoved` cancels it.
        responseCheck = context.eventLoop.assumeIsolated().scheduleTask(deadline: when) {
            self.responseCheck = nil
            self.eventTime = nil
            guard case .proxying(let exchange) = self.state, !exchange.responseStarted, let deadline = exchange.responseDeadline,
                  let context = self.context else { return }
            if deadline > self.now {
                self.armResponseCheck(at: deadline, context: context)
                return
            }
            self.shared.logger.debug("proxy.upstream_timeout", metadata: ["plane.backend": "\(exchange.target.backendID?.rawValue ?? "passthrough")"])
            self.upstreamFailed(exchange, status: .gatewayTimeout)
        }
    }

    /// The backend could not be used: a local answer if no response byte went to the
    /// client yet, else the client connection closes (its response is cut off).
    private func upstreamFailed(_ exchange: Exchange, status: HTTPResponseStatus) {
        exchange.responseDeadline = nil
        if let upstream = exchange.upstream {
            upstream.owner = nil
            upstream.close()
            exchange.upstream = nil
        }
        guard !exchange.responseStarted else {
            closeClient()
            return
        }
        // The connection can carry on only if the request is complete.
        let keepAlive = exchange.keepAlive && exchange.requestEnded && !exchange.isUpgrade
        respondLocally(status, keepAlive: keepAlive, requestEnded: exchange.requestEnded)
        if keepAlive { processClientInput() }
    }

    // MARK: Upstream → client (called by UpstreamHandler)

    func upstream(_ handler: UpstreamHandler, received event: HTTP1Parser.Event) {
        guard case .proxying(let exchange) = state, exchange.upstream === handler, let context else { return }
        switch event {
        case .head(let response):
            if response.status < 200, response.status != 101 { return }  // 1xx informational
            if response.status == 101, !exchange.isUpgrade {
                // A protocol switch nobody asked for cannot be relayed (counted as the 502).
                upstreamFailed(exchange, status: .badGateway)
                return
            }
            exchange.responseDeadline = nil
            exchange.responseStarted = true
            metrics.proxied(status: response.status, latency: now - exchange.started, bytes: &tally)
            responseBuffer.clear(minimumCapacity: ForwardedHeaders.responseCapacity(response) + min(handler.parser.bufferedBytes, Self.maxJoinedBody))
            if response.status == 101 {
                ForwardedHeaders.writeDownstreamResponse(response, connection: .upgrade, into: &responseBuffer)
                tally.toClient += responseBuffer.readableBytes
                context.write(wrapOutboundOut(responseBuffer), promise: nil)
                switchToSplice(exchange, handler: handler, context: context)
                return
            }
            exchange.upstreamKeepAlive = response.isKeepAlive && handler.parser.framing != .untilClose
            var closes = !exchange.keepAlive || exchange.isUpgrade || clientInputClosed || handler.parser.framing == .untilClose
            var keepTransferEncoding = true
            if exchange.clientIsHTTP10, handler.parser.framing == .chunked {
                // An HTTP/1.0 client cannot read chunks: the body goes as it is, ended by the close.
                handler.parser.decodeChunks = true
                keepTransferEncoding = false
                closes = true
            }
            exchange.closesClient = closes
            // An upgrade the backend declined leaves the client's parser in upgrade mode: close.
            let connection: ForwardedHeaders.ConnectionHeader = closes ? .close : exchange.clientIsHTTP10 ? .keepAlive : .none
            ForwardedHeaders.writeDownstreamResponse(response, connection: connection, keepTransferEncoding: keepTransferEncoding, into: &responseBuffer)
            tally.toClient += responseBuffer.readableBytes
            responseHeadPending = true
        case .body(var buffer):
            tally.toClient += buffer.readableBytes
            if tally.isLarge { metrics.report(&tally) }
            if responseHeadPending {
                // Small body bytes join the head where it was reserved for them (written
                // into before the buffer is shared with the socket: no copy), and the
                // response stays pending: when its end comes in the same read, head and
                // body leave with one writeAndFlush.
                if buffer.readableBytes <= responseBuffer.writableBytes {
                    responseBuffer.writeBuffer(&buffer)
                    return
                }
                responseHeadPending = false
                context.write(wrapOutboundOut(responseBuffer), promise: nil)
            }
            context.write(wrapOutboundOut(buffer), promise: nil)
        case .end:
            // Taken before `finish`: the idle state may let go of a large response buffer.
            let pending: ByteBuffer? = responseHeadPending ? responseBuffer : nil
            responseHeadPending = false
            let close = finish(exchange)
            if close {
                // Close once the response is out (a close with writes pending would cut it).
                let last = pending ?? context.channel.allocator.buffer(capacity: 0)
                context.writeAndFlush(wrapOutboundOut(last)).assumeIsolated().whenComplete { _ in
                    context.close(promise: nil)
                }
            } else {
                // The upstream connection is back in the pool: its read-complete no longer flushes here.
                if let pending {
                    context.writeAndFlush(wrapOutboundOut(pending), promise: nil)
                } else {
                    context.flush()
                }
                processClientInput()
            }
        }
    }

    /// The upstream side is about to hand over what one read brought (an entry point).
    func upstreamEventsBegin() {
        eventTime = nil
    }

    func upstreamReadComplete(_ handler: UpstreamHandler) {
        guard let context else { return }
        writeResponseHead(context)
        context.flush()
    }

    private func writeResponseHead(_ context: ChannelHandlerContext) {
        if responseHeadPending {
            responseHeadPending = false
            context.write(wrapOutboundOut(responseBuffer), promise: nil)
        }
    }

    func upstreamClosed(_ handler: UpstreamHandler, error: (any Error)?) {
        guard case .proxying(let exchange) = state, exchange.upstream === handler else { return }
        eventTime = nil
        exchange.upstream = nil
        handler.owner = nil
        // A pooled connection the backend had just closed (or reset): try once more on a new
        // one, if nothing of the request can have been consumed. Not after an answer that
        // did not parse: that backend did answer.
        if !(error is ProxyError), exchange.reused, !exchange.retried, !exchange.responseStarted, !exchange.sentBody, exchange.buffered.isEmpty {
            exchange.retried = true
            exchange.reused = false
            exchange.responseDeadline = nil
            attachUpstream(to: exchange)
            return
        }
        if let error = error as? ProxyError, let limit = error.limit, let hits = LimitCounters.shared.record(limit) {
            shared.logger.notice("limit.exceeded", metadata: ["plane.limit": "\(limit)", "plane.limit_hits": "\(hits)",
                                                             "plane.backend": "\(exchange.target.backendID?.rawValue ?? "passthrough")"])
        }
        if let error { shared.logger.debug("proxy.upstream_failed", metadata: ["error": "\(error)"]) }
        upstreamFailed(exchange, status: .badGateway)
    }

    func upstreamBecameWritable(_ handler: UpstreamHandler) {
        eventTime = nil
        resumeClientReadsIfHeld()
    }

    /// The response is complete: the upstream connection goes back to the pool (or
    /// closes), the client connection waits for its next request (or closes).
    /// Returns whether the client connection must close after the response.
    private func finish(_ exchange: Exchange) -> Bool {
        if let upstream = exchange.upstream {
            exchange.upstream = nil
            if exchange.upstreamKeepAlive, exchange.requestEnded, !exchange.isUpgrade {
                pool.give(upstream, to: pool.bucket(for: exchange.target.address, cached: poolBucket), now: now)
            } else {
                upstream.owner = nil
                upstream.close()
            }
        }
        if exchange.closesClient {
            state = .done
            return true
        } else if exchange.requestEnded {
            state = .idle
        } else {
            state = .finishingRequest(keepAlive: true)
        }
        return false
    }

    /// `101`: both connections become a byte splice; bytes either parser still holds
    /// (the client's first frames, the backend's first message) go across first.
    private func switchToSplice(_ exchange: Exchange, handler: UpstreamHandler, context: ChannelHandlerContext) {
        guard let upstreamChannel = handler.channel else { return }
        exchange.upstream = nil
        state = .done
        let fromBackend = handler.parser.takeRemaining()
        tally.toClient += fromBackend.readableBytes
        metrics.report(&tally)
        if fromBackend.readableBytes > 0 { context.write(wrapOutboundOut(fromBackend), promise: nil) }
        context.flush()
        let fromClient = parser.takeRemaining()
        if fromClient.readableBytes > 0 { handler.write(fromClient, flush: true) }
        let routes = shared.routes
        let metrics = shared.metrics
        let backend = exchange.target.backendID
        if let backend { routes.connection(backend, opened: true) }
        metrics.upgraded(opened: true)
        let (clientSide, upstreamSide) = SpliceHandler.pair(metrics: metrics) {
            if let backend { routes.connection(backend, opened: false) }
            metrics.upgraded(opened: false)
        }
        do {
            let client = context.pipeline.syncOperations
            try client.addHandler(clientSide)
            let server = upstreamChannel.pipeline.syncOperations
            try server.addHandler(upstreamSide)
            handler.owner = nil
            server.removeHandler(handler, promise: nil)
            client.removeHandler(context: context, promise: nil)
            context.channel.read()
            upstreamChannel.read()
        } catch {
            shared.logger.warning("proxy.upgrade_failed", metadata: ["error": "\(error)"])
            upstreamChannel.close(promise: nil)
            context.close(promise: nil)
        }
    }

    // MARK: Local answers

    private func respondLocally(_ status: HTTPResponseStatus, headers extra: [(String, String)] = [], body: String = "", keepAlive: Bool,
                                requestEnded: Bool = false) {
        guard let context else { return }
        // State first: the next request is only looked at once this one is settled.
        state = requestEnded ? (keepAlive ? .idle : .done) : .discarding(keepAlive: keepAlive)
        metrics.response(status: Int(status.code), bytes: &tally)
        var buffer = context.channel.allocator.buffer(capacity: 128 + body.utf8.count)
        Self.writeResponse(status, headers: extra, body: body, keepAlive: keepAlive, into: &buffer)
        let written = context.writeAndFlush(wrapOutboundOut(buffer))
        if !keepAlive { written.assumeIsolated().whenComplete { _ in context.close(promise: nil) } }
    }

    static func writeResponse(_ status: HTTPResponseStatus, headers: [(String, String)] = [], body: String = "", keepAlive: Bool, into buffer: inout ByteBuffer) {
        buffer.writeString("HTTP/1.1 \(status.code) \(status.reasonPhrase)\r\n")
        for (name, value) in headers { buffer.writeString("\(name): \(value)\r\n") }
        if !body.isEmpty { buffer.writeStaticString("Content-Type: text/plain; charset=utf-8\r\n") }
        buffer.writeString("Content-Length: \(body.utf8.count)\r\n")
        if !keepAlive { buffer.writeStaticString("Connection: close\r\n") }
        buffer.writeStaticString("\r\n")
        buffer.writeString(body)
    }

    /// A request that is not HTTP/1.x: 400 (431 for a head too large, 505 for another
    /// version) if no response is under way, and the connection closes.
    private func protocolError(_ error: ProxyError) {
        if let limit = error.limit, let hits = LimitCounters.shared.record(limit) {
            shared.logger.notice("limit.exceeded", metadata: ["plane.limit": "\(limit)", "plane.limit_hits": "\(hits)", "proxy.client": "\(clientAddress ?? "?")"])
        }
        shared.logger.debug("proxy.bad_request", metadata: ["error": "\(error)"])
        switch state {
        case .idle, .discarding, .finishingRequest:
            let status: HTTPResponseStatus = switch error.code {
            case .headTooLarge: .requestHeaderFieldsTooLarge
            case .unsupportedVersion: .httpVersionNotSupported
            default: .badRequest
            }
            respondLocally(status, body: error.message, keepAlive: false, requestEnded: true)
        case .proxying(let exchange):
            if exchange.responseStarted {
                closeClient()
            } else {
                if let upstream = exchange.upstream {
                    upstream.owner = nil
                    upstream.close()
                    exchange.upstream = nil
                }
                respondLocally(.badRequest, body: error.message, keepAlive: false, requestEnded: true)
            }
        case .done:
            break
        }
    }

    private func closeClient() {
        state = .done
        responseHeadPending = false
        context?.close(promise: nil)
    }

    // MARK: Channel events

    /// Reads from the client pause while connecting, while the backend cannot take more,
    /// while an upgrade is undecided, and while pipelined requests pile up.
    private var clientReadsHeld: Bool {
        if parser.bufferedBytes > Self.maxBufferedPipeline { return true }
        if case .proxying(let exchange) = state {
            // After an upgrade request the bytes are not HTTP until the backend decided.
            if exchange.requestEnded { return exchange.isUpgrade }
            guard let upstream = exchange.upstream, upstream.isWritable else { return true }
        }
        return false
    }

    private func resumeClientReadsIfHeld() {
        guard pendingRead, !clientReadsHeld, let context else { return }
        pendingRead = false
        context.read()
    }

    func read(context: ChannelHandlerContext) {
        if clientReadsHeld {
            pendingRead = true
        } else {
            context.read()
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        clientWritable = context.channel.isWritable
        if clientWritable, case .proxying(let exchange) = state { exchange.upstream?.resumeReading() }
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        eventTime = nil
        if let event = event as? ChannelEvent, case .inputClosed = event {
            clientInputClosed = true
            switch state {
            case .idle, .discarding, .finishingRequest:
                closeClient()
            case .proxying(let exchange):
                // A cut-off request cannot be answered; a complete one still is.
                if !exchange.requestEnded { closeClientAndUpstream(exchange) }
            case .done:
                break
            }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    private func closeClientAndUpstream(_ exchange: Exchange) {
        exchange.responseDeadline = nil
        if let upstream = exchange.upstream {
            upstream.owner = nil
            upstream.close()
            exchange.upstream = nil
        }
        closeClient()
    }

    func channelInactive(context: ChannelHandlerContext) {
        eventTime = nil
        metrics.report(&tally)
        headerCheck?.cancel()
        headerCheck = nil
        if case .proxying(let exchange) = state {
            exchange.responseDeadline = nil
            if let upstream = exchange.upstream {
                upstream.owner = nil
                upstream.close()
            }
        }
        state = .done
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        shared.logger.debug("proxy.client_error", metadata: ["error": "\(error)"])
        context.close(promise: nil)
    }
}
