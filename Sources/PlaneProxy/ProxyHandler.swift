import Logging
import NIOCore
import NIOHTTP1

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

/// One client connection: routes each request (`ProxyRouter`), answers locally (404, 401,
/// 403, the auth cookie, 502, 504) or forwards it to the backend over a pooled keep-alive
/// connection on the same event loop, streaming bodies both ways with backpressure (the
/// side that cannot write stops the other side's reads). A `101` answer to an upgrade
/// request turns both connections into a byte splice (`SpliceHandler`).
final class ProxyHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    /// One request forwarded to a backend.
    final class Exchange {
        let request: HTTPRequestHead
        let upstreamHead: HTTPRequestHead
        let target: ProxyRouter.Target
        let keepAlive: Bool
        let isUpgrade: Bool
        /// The client waits for `100 Continue` before sending the body; the proxy sends it
        /// once the backend connection is there (the backend never sees `Expect`).
        let expectsContinue: Bool
        var upstream: (channel: any Channel, handler: UpstreamHandler)?
        var reused = false
        var retried = false
        /// Request parts that arrived while connecting.
        var buffered: [HTTPClientRequestPart] = []
        var sentBody = false
        var requestEnded = false
        var responseStarted = false
        var upstreamKeepAlive = true
        var switching = false
        /// The response must have started by then (set once the request is sent).
        var responseDeadline: NIODeadline?
        let started = ContinuousClock.now

        init(request: HTTPRequestHead, upstreamHead: HTTPRequestHead, target: ProxyRouter.Target, keepAlive: Bool, isUpgrade: Bool, expectsContinue: Bool) {
            self.request = request
            self.upstreamHead = upstreamHead
            self.target = target
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
        /// Handed over to a splice; this handler is on its way out.
        case upgraded
    }

    private let shared: ProxyContext
    private let pool: UpstreamPool
    private var context: ChannelHandlerContext?
    private var state = State.idle {
        didSet { if case .idle = state { headerTimeout?.awaitingHead() } }
    }
    private var headerTimeout: HeaderTimeoutHandler?
    private var responseCheck: Scheduled<Void>?
    /// Inside a read from the client: upstream writes are flushed at its end, once.
    private var inClientRead = false
    private var pendingRead = false
    private var clientAddress: String?

    init(shared: ProxyContext, pool: UpstreamPool) {
        self.shared = shared
        self.pool = pool
    }

    var clientWritable: Bool { context?.channel.isWritable ?? false }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        clientAddress = context.channel.remoteAddress?.ipAddress
        headerTimeout = try? context.pipeline.syncOperations.handler(type: HeaderTimeoutHandler.self)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    // MARK: Client → proxy

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        inClientRead = true
        switch unwrapInboundIn(data) {
        case .head(let head): received(head: head, context: context)
        case .body(let buffer):
            shared.metrics.bytes(fromClient: buffer.readableBytes)
            guard case .proxying(let exchange) = state else { return }
            exchange.sentBody = true
            send(.body(.byteBuffer(buffer)), on: exchange)
        case .end(let trailers):
            switch state {
            case .discarding(let keepAlive), .finishingRequest(let keepAlive):
                // Without keep-alive the local answer closes the connection once written.
                if keepAlive { state = .idle }
            case .proxying(let exchange):
                exchange.requestEnded = true
                send(.end(trailers), on: exchange, flush: true)
                if exchange.upstream != nil { armResponseTimeout(exchange) }
            case .idle, .upgraded:
                break
            }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        // Request parts are written upstream unflushed as they arrive; one flush per read batch.
        inClientRead = false
        if case .proxying(let exchange) = state { exchange.upstream?.channel.flush() }
        context.fireChannelReadComplete()
    }

    private func received(head: HTTPRequestHead, context: ChannelHandlerContext) {
        headerTimeout?.headReceived()
        let headers = head.headers
        let request = ProxyRouter.Request(host: headers.first(name: "host"), uri: head.uri,
                                          authorization: headers["authorization"], cookies: headers["cookie"])
        let expectsContinue = head.version == .http1_1 && headers[canonicalForm: "expect"].contains { $0.lowercased() == "100-continue" }
        let hasBody = headers.first(name: "content-length").map { $0 != "0" } ?? headers.contains(name: "transfer-encoding")
        // A local answer to a client that waits for 100 Continue: its body never comes, so
        // the connection cannot carry another request.
        let keepAlive = head.isKeepAlive && !(expectsContinue && hasBody)
        switch shared.router.decide(request, lookup: shared.routes.route(for:)) {
        case .notFound:
            respondLocally(.notFound, headers: [("Access-Control-Allow-Origin", "*")], keepAlive: keepAlive, version: head.version)
        case .unauthorized:
            respondLocally(.unauthorized, body: "Expected bearer token.", keepAlive: keepAlive, version: head.version)
        case .forbidden:
            respondLocally(.forbidden, keepAlive: keepAlive, version: head.version)
        case .badRequest(let message):
            respondLocally(.badRequest, body: message, keepAlive: keepAlive, version: head.version)
        case .setAuthCookie(let token, let location, let cookiePath):
            let secure = shared.scheme == "https" ? "; Secure" : ""
            respondLocally(.found, headers: [("Location", location),
                                             ("Set-Cookie", "\(BearerTokenCheck.cookieName)=\(token); Path=\(cookiePath); HttpOnly; SameSite=Lax\(secure)")],
                           keepAlive: keepAlive, version: head.version)
        case .forward(let target):
            if let backend = target.backendID { shared.routes.recordActivity(backend) }
            let isUpgrade = ForwardedHeaders.isUpgrade(headers)
            var upstreamHead = HTTPRequestHead(version: .http1_1, method: head.method, uri: target.uri)
            upstreamHead.headers = ForwardedHeaders.upstreamRequest(headers, clientAddress: clientAddress, scheme: shared.scheme, upgrade: isUpgrade)
            upstreamHead.headers.remove(name: "expect")
            let exchange = Exchange(request: head, upstreamHead: upstreamHead, target: target, keepAlive: head.isKeepAlive, isUpgrade: isUpgrade,
                                    expectsContinue: expectsContinue && hasBody)
            state = .proxying(exchange)
            attachUpstream(to: exchange)
        }
    }

    /// Sends a request part upstream, or keeps it until the connection is there.
    private func send(_ part: HTTPClientRequestPart, on exchange: Exchange, flush: Bool = false) {
        guard let upstream = exchange.upstream else {
            exchange.buffered.append(part)
            return
        }
        if flush, !inClientRead {
            upstream.channel.writeAndFlush(part, promise: nil)
        } else {
            upstream.channel.write(part, promise: nil)
        }
    }

    // MARK: Upstream connection

    private func attachUpstream(to exchange: Exchange) {
        if let (channel, handler) = pool.take(exchange.target.address) {
            exchange.reused = true
            attach(channel, handler, to: exchange)
            return
        }
        pool.connect(exchange.target.address, timeout: shared.configuration.upstreamConnectTimeout.timeAmount).assumeIsolated().whenComplete { result in
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
                self.attach(channel, handler, to: exchange)
            case .failure(let error):
                self.shared.logger.debug("proxy.upstream_connect_failed", metadata: ["plane.backend": "\(exchange.target.backendID?.rawValue ?? "passthrough")", "error": "\(error)"])
                self.upstreamFailed(exchange, status: .badGateway)
            }
        }
    }

    private func attach(_ channel: any Channel, _ handler: UpstreamHandler, to exchange: Exchange) {
        handler.lease(to: self)
        exchange.upstream = (channel, handler)
        channel.write(HTTPClientRequestPart.head(exchange.upstreamHead), promise: nil)
        for part in exchange.buffered { channel.write(part, promise: nil) }
        exchange.buffered = []
        if !inClientRead { channel.flush() }
        if exchange.expectsContinue, !exchange.requestEnded, !exchange.retried {
            context?.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .continue))), promise: nil)
        }
        if exchange.requestEnded { armResponseTimeout(exchange) }
        if pendingRead, channel.isWritable {
            pendingRead = false
            context?.read()
        }
    }

    /// Once the whole request is with the backend, its response must start within
    /// `upstream_timeout_secs` (an upload may take as long as it takes). One timer per
    /// connection, re-armed when it fires early, instead of one per request.
    private func armResponseTimeout(_ exchange: Exchange) {
        guard exchange.upstream != nil, !exchange.responseStarted, let context else { return }
        let deadline = NIODeadline.now() + shared.configuration.upstreamResponseTimeout.timeAmount
        exchange.responseDeadline = deadline
        if responseCheck == nil { armResponseCheck(at: deadline, context: context) }
    }

    private func armResponseCheck(at when: NIODeadline, context: ChannelHandlerContext) {
        responseCheck = context.eventLoop.assumeIsolated().scheduleTask(deadline: when) { [weak self] in
            guard let self else { return }
            self.responseCheck = nil
            guard case .proxying(let exchange) = self.state, !exchange.responseStarted, let deadline = exchange.responseDeadline,
                  let context = self.context else { return }
            if deadline > .now() {
                self.armResponseCheck(at: deadline, context: context)
                return
            }
            self.shared.logger.debug("proxy.upstream_timeout", metadata: ["plane.backend": "\(exchange.target.backendID?.rawValue ?? "passthrough")"])
            self.upstreamFailed(exchange, status: .gatewayTimeout)
        }
    }

    /// The backend could not be used before any response byte went to the client.
    private func upstreamFailed(_ exchange: Exchange, status: HTTPResponseStatus) {
        exchange.responseDeadline = nil
        if let upstream = exchange.upstream {
            upstream.handler.owner = nil
            upstream.channel.close(promise: nil)
            exchange.upstream = nil
        }
        guard !exchange.responseStarted else {
            context?.close(promise: nil)
            return
        }
        // The connection can carry on only if the request is complete.
        let keepAlive = exchange.keepAlive && exchange.requestEnded && !exchange.isUpgrade
        respondLocally(status, keepAlive: keepAlive, version: exchange.request.version, requestEnded: exchange.requestEnded)
    }

    // MARK: Upstream → client (called by UpstreamHandler)

    func upstream(_ handler: UpstreamHandler, received part: HTTPClientResponsePart) {
        guard case .proxying(let exchange) = state, exchange.upstream?.handler === handler, let context else { return }
        switch part {
        case .head(let response):
            if response.status.code < 200, response.status != .switchingProtocols { return }  // 1xx informational
            exchange.responseDeadline = nil
            exchange.responseStarted = true
            shared.metrics.proxied(status: Int(response.status.code), latency: ContinuousClock.now - exchange.started)
            if response.status == .switchingProtocols, exchange.isUpgrade {
                exchange.switching = true
                var head = HTTPResponseHead(version: exchange.request.version, status: .switchingProtocols)
                head.headers = ForwardedHeaders.downstreamResponse(response.headers, upgrade: true)
                context.write(wrapOutboundOut(.head(head)), promise: nil)
                return
            }
            exchange.upstreamKeepAlive = response.isKeepAlive
            var head = HTTPResponseHead(version: exchange.request.version, status: response.status)
            head.headers = ForwardedHeaders.downstreamResponse(response.headers, upgrade: false)
            // An upgrade the backend declined leaves the client's HTTP parser in upgrade mode.
            if !exchange.keepAlive || exchange.isUpgrade {
                head.headers.replaceOrAdd(name: "Connection", value: "close")
            } else if exchange.request.version == .http1_0 {
                head.headers.replaceOrAdd(name: "Connection", value: "keep-alive")
            }
            context.write(wrapOutboundOut(.head(head)), promise: nil)
        case .body(let buffer):
            shared.metrics.bytes(toClient: buffer.readableBytes)
            context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        case .end(let trailers):
            if exchange.switching {
                switchToSplice(exchange, context: context)
                return
            }
            // State first: writing the end lets the pipelining handler deliver the next
            // request at once, re-entrantly.
            let close = finish(exchange)
            let written = context.writeAndFlush(wrapOutboundOut(.end(trailers)))
            // Close once the response is out (a close with writes pending would cut it).
            if close { written.assumeIsolated().whenComplete { _ in context.close(promise: nil) } }
        }
    }

    func upstreamReadComplete(_ handler: UpstreamHandler) {
        context?.flush()
    }

    func upstreamClosed(_ handler: UpstreamHandler, error: (any Error)?) {
        guard case .proxying(let exchange) = state, exchange.upstream?.handler === handler else { return }
        exchange.upstream = nil
        // A pooled connection the backend had just closed: try once more on a new one, if
        // nothing of the request can have been consumed.
        if exchange.reused, !exchange.retried, !exchange.responseStarted, !exchange.sentBody, exchange.buffered.isEmpty {
            exchange.retried = true
            exchange.reused = false
            exchange.responseDeadline = nil
            if exchange.requestEnded { exchange.buffered = [.end(nil)] }
            attachUpstream(to: exchange)
            return
        }
        if let error { shared.logger.debug("proxy.upstream_failed", metadata: ["error": "\(error)"]) }
        upstreamFailed(exchange, status: .badGateway)
    }

    func upstreamBecameWritable(_ handler: UpstreamHandler) {
        if pendingRead, let context {
            pendingRead = false
            context.read()
        }
    }

    /// The response is complete: the upstream connection goes back to the pool (or
    /// closes), the client connection waits for its next request (or closes).
    /// Returns whether the client connection must close after the response.
    private func finish(_ exchange: Exchange) -> Bool {
        if let upstream = exchange.upstream {
            exchange.upstream = nil
            if exchange.upstreamKeepAlive, exchange.requestEnded, !exchange.isUpgrade {
                pool.give(upstream.channel, handler: upstream.handler, address: exchange.target.address)
            } else {
                upstream.handler.owner = nil
                upstream.channel.close(promise: nil)
            }
        }
        let keepAlive = exchange.keepAlive && !exchange.isUpgrade
        if !keepAlive {
            state = .idle
            return true
        } else if exchange.requestEnded {
            state = .idle
        } else {
            state = .finishingRequest(keepAlive: true)
        }
        return false
    }

    /// `101`: both connections become a byte splice.
    private func switchToSplice(_ exchange: Exchange, context: ChannelHandlerContext) {
        guard let upstream = exchange.upstream else { return }
        exchange.upstream = nil
        state = .upgraded
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        let routes = shared.routes
        let metrics = shared.metrics
        let backend = exchange.target.backendID
        if let backend { routes.connection(backend, opened: true) }
        metrics.upgraded(opened: true)
        let (clientSide, upstreamSide) = SpliceHandler.pair {
            if let backend { routes.connection(backend, opened: false) }
            metrics.upgraded(opened: false)
        }
        do {
            let client = context.pipeline.syncOperations
            try client.addHandler(clientSide)
            let server = upstream.channel.pipeline.syncOperations
            try server.addHandler(upstreamSide)
            // HTTP handlers go; the decoders last, so bytes they still hold reach the splice.
            upstream.handler.owner = nil
            server.removeHandler(upstream.handler, promise: nil)
            if let validator = try? server.handler(type: NIOHTTPRequestHeadersValidator.self) { server.removeHandler(validator, promise: nil) }
            if let encoder = try? server.handler(type: HTTPRequestEncoder.self) { server.removeHandler(encoder, promise: nil) }
            if let decoder = try? server.handler(type: ByteToMessageHandler<HTTPResponseDecoder>.self) { server.removeHandler(decoder, promise: nil) }
            if let pipelining = try? client.handler(type: HTTPServerPipelineHandler.self) { client.removeHandler(pipelining, promise: nil) }
            if let errors = try? client.handler(type: HTTPServerProtocolErrorHandler.self) { client.removeHandler(errors, promise: nil) }
            if let validator = try? client.handler(type: NIOHTTPResponseHeadersValidator.self) { client.removeHandler(validator, promise: nil) }
            if let timeout = headerTimeout { client.removeHandler(timeout, promise: nil) }
            if let encoder = try? client.handler(type: HTTPResponseEncoder.self) { client.removeHandler(encoder, promise: nil) }
            client.removeHandler(context: context, promise: nil)
            if let decoder = try? client.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self) { client.removeHandler(decoder, promise: nil) }
            context.channel.read()
            upstream.channel.read()
        } catch {
            shared.logger.warning("proxy.upgrade_failed", metadata: ["error": "\(error)"])
            upstream.channel.close(promise: nil)
            context.close(promise: nil)
        }
    }

    // MARK: Local answers

    private func respondLocally(_ status: HTTPResponseStatus, headers extra: [(String, String)] = [], body: String = "", keepAlive: Bool, version: HTTPVersion,
                                requestEnded: Bool = false) {
        guard let context else { return }
        // State first: writing the end may deliver the next pipelined request re-entrantly.
        state = requestEnded ? .idle : .discarding(keepAlive: keepAlive)
        shared.metrics.response(status: Int(status.code))
        SimpleHTTPResponse.write(status, headers: extra, body: body, contentType: body.isEmpty ? nil : "text/plain; charset=utf-8", version: version,
                                 keepAlive: keepAlive, context: context)
    }

    // MARK: Channel events

    func read(context: ChannelHandlerContext) {
        if case .proxying(let exchange) = state {
            // Hold the client while connecting, while the backend cannot take more, and
            // while an upgrade is undecided.
            guard let upstream = exchange.upstream, upstream.channel.isWritable, !exchange.isUpgrade else {
                pendingRead = true
                return
            }
        }
        context.read()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, case .proxying(let exchange) = state { exchange.upstream?.handler.resumeReading() }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if case .proxying(let exchange) = state {
            exchange.responseDeadline = nil
            if let upstream = exchange.upstream {
                upstream.handler.owner = nil
                upstream.channel.close(promise: nil)
            }
        }
        state = .idle
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        shared.logger.debug("proxy.client_error", metadata: ["error": "\(error)"])
        context.close(promise: nil)
    }
}
