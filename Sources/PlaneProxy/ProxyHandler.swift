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

/// One client connection, the only HTTP handler on it. It frames requests itself
/// (`HTTP1Parser`), routes each (`ProxyRouter`), and hands every event to the connection's
/// `ProxyConnectionStateMachine`, which decides; the handler performs what it is told:
/// answer here (404, 401, 403, the auth cookie, 400, 431, 502, 504), lease a connection to
/// the backend from its `UpstreamConnector` (the event loop's keep-alive pool), forward,
/// let the connection go, splice, close. Heads are rewritten from the bytes they came in as
/// (`ForwardedHeaders`); bodies are forwarded as the slices they arrived in, chunk framing
/// included, with backpressure both ways (the side that cannot write stops the other
/// side's reads). Pipelined requests wait in the parser's buffer until the response
/// before them is done. A `101` answer to an upgrade request turns both connections into a
/// byte splice (`SpliceHandler`).
final class ProxyHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    typealias Machine = ProxyConnectionStateMachine

    private let shared: ProxyContext
    private let connector: any UpstreamConnector
    private let eventLoop: any EventLoop
    private var context: ChannelHandlerContext?
    private var parser: HTTP1Parser
    private var machine: Machine

    // What the exchange under way holds (the machine decides, these are its resources).
    /// The connection leased for it.
    private var upstream: UpstreamHandler?
    /// Where it goes.
    private var target: ProxyRouter.Target?
    /// Request body bytes that arrived while the connection was being leased.
    private var heldBody: [ByteBuffer] = []
    /// Its backend's counter of open exchanges while it counts as open, and when it began.
    private var openExchange: (counter: RouteTable.OpenExchanges, started: NIODeadline)?
    /// The connector's hint for the last backend address.
    private var connectorHint: UpstreamPool.Bucket?
    /// A request held until its backend, still starting, is Ready (its head; the client's
    /// reads stop meanwhile and its further bytes wait in the parser).
    private var held: Held?
    private struct Held {
        var head: HTTP1Head
        var wait: RouteTable.StartWait
        var timer: Scheduled<Void>?
        /// The client half-closed meanwhile (handed to the machine after the request).
        var inputEnded = false
    }

    /// The time of the event being handled, read from the loop's clock at most once per
    /// event: every entry point (from NIO, the upstream side or a timer) clears it first.
    /// (The loop's clock is the system's, or a test's `EmbeddedEventLoop` time.)
    private var eventTime: NIODeadline?
    private var now: NIODeadline {
        if let eventTime { return eventTime }
        let time = eventLoop.now
        eventTime = time
        return time
    }
    /// The header read and idle timeouts (no handler of their own: one handler per connection).
    private var headerDeadline: HeaderDeadline
    private var headerCheck: Scheduled<Void>?
    private var headerCheckAt: NIODeadline?
    /// One response timer per connection, re-armed when it fires early (the machine keeps
    /// the deadline), instead of one per request.
    private var responseCheck: Scheduled<Void>?
    /// Inside a read from the client: upstream writes are flushed at its end, once.
    private var inClientRead = false
    private var pendingRead = false
    private var clientAddress: String?
    /// Bytes not yet reported to the metrics.
    private var tally = ProxyMetrics.ByteTally()
    private var lastActivity: (backend: BackendID, at: NIODeadline)?
    static let activityInterval = TimeAmount.milliseconds(100)
    /// This connection's last route lookup.
    private var routeCache = RouteTable.Cache()
    /// The counters of this connection's event loop.
    private let metrics: ProxyMetrics.Shard
    /// A response head not written yet (in `responseBuffer`), with the body bytes that fit
    /// the memory reserved behind it: a small response leaves in one buffer, with one
    /// `writeAndFlush` at its end, or at the end of the read that brought it. Until then
    /// nothing of the response has reached the client, so a fault in the rest of the read
    /// still turns into a 502.
    private var responseHeadPending = false
    /// Body pieces of the pending response too large to join its head, held with it until
    /// the read that brought them ends (slices of that read: no copy, no memory beyond it).
    private var responseHeld: [ByteBuffer] = []
    /// The pending response's status and time to its head, counted when the head goes out
    /// (a response replaced by a 502 is counted once, as the 502).
    private var pendingStatus = 0
    private var pendingLatency = TimeAmount.zero
    /// At most this much of the body already read is reserved behind a response head.
    static let maxJoinedBody = 8192
    /// The memory heads are written into, kept from request to request: once the socket
    /// has written a head and let go of it, the next head reuses the memory instead of
    /// allocating (`ByteBuffer.clear` allocates only while the last one is still held).
    private var requestBuffer = ByteBuffer()
    private var responseBuffer = ByteBuffer()
    /// Head memory beyond this is not kept for the next request (idle connections stay small).
    static let maxKeptHeadBuffer = 4096

    init(shared: ProxyContext, connector: any UpstreamConnector) {
        self.shared = shared
        self.connector = connector
        eventLoop = connector.eventLoop
        metrics = shared.metrics.shard(for: connector.eventLoop)
        machine = Machine(responseTimeout: shared.configuration.upstreamResponseTimeout.timeAmount)
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
        cancelHold()
        responseCheck?.cancel()
        responseCheck = nil
        headerCheck?.cancel()
        headerCheck = nil
        self.context = nil
        clientWritable = false
        perform(machine.clientClosed())
    }

    // MARK: Performing the machine's actions

    /// Performs an action that needs nothing but the handler's own state (the ones that
    /// carry bytes are performed where the bytes are).
    private func perform(_ action: Machine.Action) {
        switch action {
        case .none, .discardBody:
            break
        case .answer(let answer, let keepAlive, let endsExchange, let awaitsRequest):
            if endsExchange { endExchange(.close) }
            respondLocally(answer, keepAlive: keepAlive)
            if awaitsRequest {
                awaitRequest()
                processClientInput()
            }
        case .forward(let attempt, let pooled):
            lease(attempt: attempt, pooled: pooled)
        case .retry(let attempt):
            releaseUpstream(.close)
            lease(attempt: attempt, pooled: false)
        case .sendRequest(let flushHead, let sendContinue, let answersHEAD, let deadline):
            sendRequest(flushHead: flushHead, sendContinue: sendContinue, answersHEAD: answersHEAD)
            if let deadline { armResponseTimer(deadline) }
            resumeClientReadsIfHeld()
        case .flushRequest(let deadline):
            if !inClientRead { upstream?.flush() }
            if let deadline { armResponseTimer(deadline) }
        case .armResponseTimer(let deadline):
            armResponseTimer(deadline)
        case .awaitRequest:
            awaitRequest()
        case .closeClient(let endsExchange):
            if endsExchange { endExchange(.close) }
            dropPendingResponse()
            context?.close(promise: nil)
        case .endExchange:
            endExchange(.close)
        case .resumeResponseReads:
            upstream?.resumeReading()
        case .resumeRequestReads:
            resumeClientReadsIfHeld()
        case .holdBody, .forwardBody, .writeResponseHead, .forwardResponseBody, .finishResponse, .splice, .closeLateConnection:
            // Performed where their bytes or connection are (never handed here).
            assertionFailure("\(action) is performed by the event's own handler")
        }
    }

    /// Lets go of the exchange's upstream connection: back to the pool or closed. The
    /// only place a leased connection is let go of.
    private func releaseUpstream(_ release: Machine.UpstreamRelease) {
        guard let upstream else { return }
        self.upstream = nil
        if release == .park, let address = target?.address {
            connector.park(upstream, address: address, hint: &connectorHint, now: now)
        } else {
            upstream.owner = nil
            upstream.close()
        }
    }

    /// The exchange under way ends: its connection is let go of, and it no longer keeps its
    /// backend busy.
    private func endExchange(_ release: Machine.UpstreamRelease) {
        releaseUpstream(release)
        if !heldBody.isEmpty { heldBody.removeAll() }
        exchangeClosed()
    }

    /// The exchange stops counting as open, and its backend's idle clock starts. A response
    /// still on its way to a client that reads slowly keeps it open until it is written;
    /// that is asked (`bufferedWritableBytes`) only of exchanges that lasted longer than
    /// `activityInterval`: a shorter one was read whole from its backend within that time
    /// (backpressure keeps a slow client's response in the backend), so the proxy holds all
    /// of it.
    private func exchangeClosed() {
        guard let (counter, started) = openExchange else { return }
        openExchange = nil
        let now = self.now
        let backend = target?.backendID
        if now - started >= Self.activityInterval, let context, context.channel.isActive,
           let pending = try? context.channel.syncOptions?.getOption(ChannelOptions.bufferedWritableBytes), pending > 0 {
            let routes = shared.routes
            // Writes complete in order: this one when the response's last byte is out.
            context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(capacity: 0))).assumeIsolated().whenComplete { _ in
                if let backend { routes.recordActivity(backend) }
                counter.close()
            }
            return
        }
        // Activity first: between the two, the backend must not look idle since long ago.
        if let backend { markActive(backend, now: now) }
        counter.close()
    }

    /// The connection waits for its next request: the header timeout runs again, and a
    /// large head (or joined body) is not kept meanwhile.
    private func awaitRequest() {
        let now = self.now
        headerDeadline.awaitingHead(now: now)
        headerDeadlineChanged(now: now)
        if requestBuffer.capacity > Self.maxKeptHeadBuffer { requestBuffer = ByteBuffer() }
        if responseBuffer.capacity > Self.maxKeptHeadBuffer { responseBuffer = ByteBuffer() }
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
                self.perform(self.machine.headerTimedOut())
            } else if let next = self.headerDeadline.timerTime(now: now) {
                self.armHeaderCheck(at: next, context: context)
            }
        }
    }

    // MARK: Client → proxy

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        eventTime = nil
        if machine.awaitsRequest, buffer.readableBytes > 0 {
            let now = self.now
            headerDeadline.bytesArrived(now: now)
            headerDeadlineChanged(now: now)
        }
        tally.fromClient += buffer.readableBytes
        if tally.isLarge { metrics.report(&tally) }
        if machine.isDone { return }
        inClientRead = true
        parser.append(buffer)
        processClientInput()
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        // Request bytes are written upstream unflushed as they arrive; one flush per read batch.
        inClientRead = false
        upstream?.flush()
        context.fireChannelReadComplete()
    }

    /// Hands what the client sent to the machine, event by event, until a request waits for
    /// its response (later pipelined requests stay in the parser).
    private func processClientInput() {
        while held == nil, machine.takesRequestEvents {
            let event: HTTP1Parser.Event?
            do {
                event = try parser.next()
            } catch {
                if let limit = error.limit, let hits = LimitCounters.shared.record(limit) {
                    shared.logger.notice("limit.exceeded", metadata: ["plane.limit": "\(limit)", "plane.limit_hits": "\(hits)", "proxy.client": "\(clientAddress ?? "?")"])
                }
                shared.logger.debug("proxy.bad_request", metadata: ["error": "\(error)"])
                perform(machine.requestMalformed(error))
                return
            }
            guard let event else { break }
            switch event {
            case .head(let head):
                headerDeadline.headReceived()
                received(head: head)
            case .body(let buffer):
                switch machine.requestBody() {
                case .forwardBody: upstream?.write(buffer, flush: !inClientRead)
                case .holdBody: heldBody.append(buffer)
                default: break
                }
            case .end:
                perform(machine.requestEnd(now: now))
            }
        }
        if held != nil { return }
        perform(machine.requestEventsDrained())
        resumeClientReadsIfHeld()
    }

    /// A request head: routed, then handed to the machine. `afterHold`: how the wait for
    /// its starting backend ended (it was held before).
    private func received(head: HTTP1Head, afterHold: RouteTable.StartOutcome? = nil) {
        let request = ProxyRouter.Request(host: nil, uri: head.originTarget, authorization: head.values(.authorization), cookies: head.values(.cookie))
        let subdomain = head.withFirstValue(.host) { host in host.flatMap { shared.router.subdomain(ofHost: $0) } }
        let hasBody: Bool
        switch parser.framing {
        case .none, .length(0): hasBody = false
        default: hasBody = true
        }
        let now = self.now
        let facts = Machine.Request(isHEAD: head.methodIs("HEAD"), isIdempotent: head.hasIdempotentMethod, clientIsHTTP10: head.minorVersion == 0, keepAlive: head.isKeepAlive, isUpgrade: head.isUpgrade,
                                    hasBody: hasBody, expectsContinue: head.minorVersion >= 1 && hasBody && head.hasToken("100-continue", in: .expect), started: now)
        let route: Machine.Route
        var forwardTo: ProxyRouter.Target?
        if let afterHold, afterHold != .ready {
            route = .answer(Self.notReadyAnswer(afterHold, holdLimit: shared.configuration.holdWhileStarting))
        } else if head.methodIs("CONNECT") {
            route = .answer(.init(status: .methodNotAllowed, body: "CONNECT is not supported by this proxy."), close: true)
        } else {
            let routes = shared.routes
            switch shared.router.decide(request, subdomain: subdomain, lookup: { routes.route(for: $0, cache: &routeCache) }) {
            case .notFound:
                route = .answer(.init(status: .notFound, fields: [.init(name: "Access-Control-Allow-Origin", value: "*")]))
            case .unauthorized:
                route = .answer(.init(status: .unauthorized, body: "Expected bearer token."))
            case .forbidden:
                route = .answer(.init(status: .forbidden))
            case .badRequest(let message):
                route = .answer(.init(status: .badRequest, body: message))
            case .setAuthCookie(let token, let location, let cookiePath):
                let secure = shared.scheme == "https" ? "; Secure" : ""
                route = .answer(.init(status: .found, fields: [.init(name: "Location", value: location),
                                                               .init(name: "Set-Cookie", value: "\(BearerTokenCheck.cookieName)=\(token); Path=\(cookiePath); HttpOnly; SameSite=Lax\(secure)")]))
            case .forward(let target):
                route = .forward
                forwardTo = target
            case .hold(let backend):
                if afterHold == nil, shared.configuration.holdWhileStarting > .zero {
                    guard let outcome = hold(head, for: backend) else { return }
                    received(head: head, afterHold: outcome)
                    return
                }
                route = .answer(Self.notReadyAnswer(.cancelled, holdLimit: shared.configuration.holdWhileStarting))
            }
        }
        let action = machine.requestHead(facts, route: route)
        guard case .forward = action, let target = forwardTo else {
            perform(action)
            return
        }
        // The exchange opens: its backend is busy until it ends. The route just looked up
        // is in the cache, with its backend's exchange counter.
        self.target = target
        if let backend = target.backendID {
            markActive(backend, now: now)
            if let counter = routeCache.exchanges {
                counter.open()
                openExchange = (counter, now)
            }
        }
        let capacity = ForwardedHeaders.requestCapacity(head, target: target.uri, clientAddress: clientAddress, scheme: shared.scheme)
        requestBuffer.clear(minimumCapacity: capacity)  // in place once the last head is written
        ForwardedHeaders.writeUpstreamRequest(head, target: target.uri, clientAddress: clientAddress, scheme: shared.scheme, upgrade: facts.isUpgrade, into: &requestBuffer)
        perform(action)
    }

    // MARK: Requests held while their backend starts

    /// Holds the request until its backend is Ready, gone, or the hold's time is over;
    /// meanwhile the client's reads stop (bytes already read wait in the parser). Returns
    /// the outcome instead when it is known at once.
    private func hold(_ head: HTTP1Head, for backend: BackendID) -> RouteTable.StartOutcome? {
        var immediate = RouteTable.StartOutcome.ended
        guard let wait = shared.routes.waitUntilReady(backend, on: eventLoop, immediate: &immediate) else {
            metrics.held(immediate)
            return immediate
        }
        let routes = shared.routes
        let timer = eventLoop.assumeIsolated().scheduleTask(in: shared.configuration.holdWhileStarting.timeAmount) {
            routes.stopWaiting(wait)
        }
        held = Held(head: head, wait: wait, timer: timer)
        // Completed later, on this loop, by the table or the timer.
        wait.outcome.assumeIsolated().whenSuccess { outcome in
            guard let held = self.held, held.wait.id == wait.id else { return }
            self.held = nil
            held.timer?.cancel()
            self.eventTime = nil
            self.metrics.held(outcome)
            if outcome != .ready {
                self.shared.logger.debug("proxy.held_request_refused", metadata: ["plane.backend": "\(backend)", "proxy.outcome": "\(outcome)"])
            }
            self.received(head: held.head, afterHold: outcome)
            // The request's body (and anything pipelined) waited in the parser.
            self.processClientInput()
            if held.inputEnded { self.perform(self.machine.clientInputEnded()) }
        }
        return nil
    }

    /// The client went: a held request is let go of.
    private func cancelHold() {
        guard let held else { return }
        self.held = nil
        held.timer?.cancel()
        shared.routes.stopWaiting(held.wait)
    }

    /// 503 for a request whose backend did not become Ready.
    static func notReadyAnswer(_ outcome: RouteTable.StartOutcome, holdLimit: Duration) -> Machine.LocalAnswer {
        let body = switch outcome {
        case .cancelled where holdLimit <= .zero: "The backend is starting; try again."
        case .cancelled: "The backend did not become ready within \(holdLimit.components.seconds) s; try again."
        case .overLimit: "Too many requests are waiting for starting backends; try again."
        case .ended, .ready: "The backend is not ready: it ended before it was. Ask for a new one."
        }
        return .init(status: .serviceUnavailable, fields: [.init(name: "Retry-After", value: "1")], body: body)
    }

    /// Marks the backend active in the route table, at most every `activityInterval` per
    /// connection and backend (the table is read once a second; a busy keep-alive
    /// connection need not take its lock for every request).
    private func markActive(_ backend: BackendID, now: NIODeadline) {
        if let last = lastActivity, now - last.at < Self.activityInterval, last.backend == backend { return }
        lastActivity = (backend, now)
        shared.routes.recordActivity(backend)
    }

    // MARK: Upstream connection

    /// Leases a connection for `attempt`: a kept-alive one if `pooled` and one is idle, else a new one.
    private func lease(attempt: UInt32, pooled: Bool) {
        guard let address = target?.address else { return }
        if pooled, let handler = connector.take(address, hint: &connectorHint, now: now) {
            connected(handler, attempt: attempt, reused: true)
            return
        }
        connector.connect(address, timeout: shared.configuration.upstreamConnectTimeout.timeAmount).assumeIsolated().whenComplete { result in
            self.eventTime = nil
            switch result {
            case .success(let handler):
                self.connected(handler, attempt: attempt, reused: false)
            case .failure(let error):
                let action = self.machine.upstreamConnectFailed(attempt: attempt)
                if action != .none {
                    self.shared.logger.debug("proxy.upstream_connect_failed", metadata: ["plane.backend": "\(self.backendName)", "error": "\(error)"])
                }
                self.perform(action)
            }
        }
    }

    private func connected(_ handler: UpstreamHandler, attempt: UInt32, reused: Bool) {
        let action = machine.upstreamConnected(attempt: attempt, reused: reused, now: now)
        guard case .sendRequest = action else {
            // Late: its exchange is over (or the client is gone).
            handler.close()
            return
        }
        upstream = handler
        perform(action)
    }

    /// Writes the request head and the body bytes held while connecting.
    private func sendRequest(flushHead: Bool, sendContinue: Bool, answersHEAD: Bool) {
        guard let upstream else { return }
        upstream.lease(to: self, answersHEAD: answersHEAD)
        // A request without a body is all there: it leaves at once (one pass through the
        // pipeline instead of a write and a flush later).
        upstream.write(requestBuffer, flush: flushHead)
        if !heldBody.isEmpty {
            for buffer in heldBody { upstream.write(buffer, flush: false) }
            heldBody.removeAll()
        }
        if !inClientRead { upstream.flush() }
        if sendContinue {
            context?.writeAndFlush(wrapOutboundOut(ByteBuffer(staticString: "HTTP/1.1 100 Continue\r\n\r\n")), promise: nil)
        }
    }

    private func armResponseTimer(_ deadline: NIODeadline) {
        guard responseCheck == nil, let context else { return }
        // Captures self strongly (no side table for a weak reference); `handlerRemoved` cancels it.
        responseCheck = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) {
            self.responseCheck = nil
            self.eventTime = nil
            let action = self.machine.responseTimerFired(now: self.now)
            if case .answer = action {
                self.shared.logger.debug("proxy.upstream_timeout", metadata: ["plane.backend": "\(self.backendName)"])
            }
            self.perform(action)
        }
    }

    private var backendName: String { target?.backendID?.rawValue ?? "passthrough" }

    // MARK: Upstream → client (called by UpstreamHandler)

    func upstream(_ handler: UpstreamHandler, received event: HTTP1Parser.Event) {
        guard handler === upstream, let context else { return }
        switch event {
        case .head(let response):
            let framing = handler.parser.framing
            let action = machine.responseHead(.init(status: response.status, keepAlive: response.isKeepAlive,
                                                    delimitedByClose: framing == .untilClose, chunked: framing == .chunked))
            switch action {
            case .writeResponseHead(let plan):
                pendingStatus = response.status
                pendingLatency = now - plan.started
                if plan.decodeChunks { handler.parser.decodeChunks = true }
                responseBuffer.clear(minimumCapacity: ForwardedHeaders.responseCapacity(response) + min(handler.parser.bufferedBytes, Self.maxJoinedBody))
                ForwardedHeaders.writeDownstreamResponse(response, connection: plan.connection, keepTransferEncoding: !plan.decodeChunks, into: &responseBuffer)
                tally.toClient += responseBuffer.readableBytes
                responseHeadPending = true
            case .splice(let started):
                metrics.proxied(status: response.status, latency: now - started, bytes: &tally)
                responseBuffer.clear(minimumCapacity: ForwardedHeaders.responseCapacity(response))
                ForwardedHeaders.writeDownstreamResponse(response, connection: .upgrade, into: &responseBuffer)
                tally.toClient += responseBuffer.readableBytes
                context.write(wrapOutboundOut(responseBuffer), promise: nil)
                switchToSplice(handler, context: context)
            default:
                if case .answer = action { shared.logger.debug("proxy.unasked_upgrade", metadata: ["plane.backend": "\(backendName)"]) }
                perform(action)
            }
        case .body(var buffer):
            guard machine.responseBody() == .forwardResponseBody else { return }
            tally.toClient += buffer.readableBytes
            if tally.isLarge { metrics.report(&tally) }
            if responseHeadPending {
                // Small body bytes join the head where it was reserved for them (written
                // into before the buffer is shared with the socket: no copy), and the
                // response stays pending: when its end comes in the same read, head and
                // body leave with one writeAndFlush.
                if responseHeld.isEmpty, buffer.readableBytes <= responseBuffer.writableBytes {
                    responseBuffer.writeBuffer(&buffer)
                    return
                }
                // Too large to join: held with the head until the read ends.
                responseHeld.append(buffer)
                return
            }
            context.write(wrapOutboundOut(buffer), promise: nil)
        case .end:
            guard case .finishResponse(let release, let then) = machine.responseEnd() else { return }
            // Taken first: waiting for the next request may let go of a large response buffer.
            var pending: ByteBuffer?
            if responseHeadPending {
                if responseHeld.isEmpty {
                    responseHeadPending = false
                    countPendingResponse()
                    pending = responseBuffer
                } else {
                    writePendingResponse(context)
                }
            }
            endExchange(release)
            switch then {
            case .closeClient:
                // Close once the response is out (a close with writes pending would cut it).
                let last = pending ?? context.channel.allocator.buffer(capacity: 0)
                context.writeAndFlush(wrapOutboundOut(last)).assumeIsolated().whenComplete { _ in
                    context.close(promise: nil)
                }
            case .awaitRequest, .readRequestRest:
                // The upstream connection is let go of: its read-complete no longer flushes here.
                if let pending {
                    context.writeAndFlush(wrapOutboundOut(pending), promise: nil)
                } else {
                    context.flush()
                }
                if then == .awaitRequest { awaitRequest() }
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
        writePendingResponse(context)
        context.flush()
    }

    /// Hands the pending response (head, joined body bytes, held pieces) to the client
    /// connection, unflushed, and counts it.
    private func writePendingResponse(_ context: ChannelHandlerContext) {
        guard responseHeadPending else { return }
        responseHeadPending = false
        countPendingResponse()
        context.write(wrapOutboundOut(responseBuffer), promise: nil)
        guard !responseHeld.isEmpty else { return }
        for piece in responseHeld { context.write(wrapOutboundOut(piece), promise: nil) }
        responseHeld.removeAll(keepingCapacity: true)
    }

    private func countPendingResponse() {
        metrics.proxied(status: pendingStatus, latency: pendingLatency, bytes: &tally)
    }

    /// The pending response never reaches the client (it is replaced or the client is closed).
    private func dropPendingResponse() {
        responseHeadPending = false
        if !responseHeld.isEmpty { responseHeld.removeAll(keepingCapacity: true) }
    }

    func upstreamClosed(_ handler: UpstreamHandler, error: (any Error)?) {
        guard handler === upstream else { return }
        eventTime = nil
        // Already closed (or closing): only forgotten here.
        upstream = nil
        handler.owner = nil
        if let error = error as? ProxyError, let limit = error.limit, let hits = LimitCounters.shared.record(limit) {
            shared.logger.notice("limit.exceeded", metadata: ["plane.limit": "\(limit)", "plane.limit_hits": "\(hits)", "plane.backend": "\(backendName)"])
        }
        if let error { shared.logger.debug("proxy.upstream_failed", metadata: ["error": "\(error)"]) }
        // A response head still held back (to leave with its body) has not reached the
        // client: the client gets a 502 in its place, not a connection closed on nothing.
        let action = machine.upstreamClosed(error is ProxyError ? .malformed : .closed, responseWritten: !responseHeadPending)
        dropPendingResponse()
        perform(action)
    }

    func upstreamBecameWritable(_ handler: UpstreamHandler) {
        eventTime = nil
        perform(machine.upstreamBecameWritable())
    }

    /// `101`: both connections become a byte splice; bytes either parser still holds
    /// (the client's first frames, the backend's first message) go across first. The
    /// exchange ends here; the spliced connection counts as open instead.
    private func switchToSplice(_ handler: UpstreamHandler, context: ChannelHandlerContext) {
        let backend = target?.backendID
        upstream = nil  // handed over, not let go of
        endExchange(.close)
        guard let upstreamChannel = handler.channel else {
            context.close(promise: nil)
            return
        }
        let fromBackend = handler.parser.takeRemaining()
        tally.toClient += fromBackend.readableBytes
        metrics.report(&tally)
        if fromBackend.readableBytes > 0 { context.write(wrapOutboundOut(fromBackend), promise: nil) }
        context.flush()
        let fromClient = parser.takeRemaining()
        if fromClient.readableBytes > 0 { handler.write(fromClient, flush: true) }
        let routes = shared.routes
        let metrics = shared.metrics
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

    private func respondLocally(_ answer: Machine.LocalAnswer, keepAlive: Bool) {
        guard let context else { return }
        metrics.response(status: Int(answer.status.code), bytes: &tally)
        var buffer = context.channel.allocator.buffer(capacity: 128 + answer.body.utf8.count)
        Self.writeResponse(answer.status, headers: answer.fields.map { ($0.name, $0.value) }, body: answer.body, keepAlive: keepAlive, into: &buffer)
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

    // MARK: Channel events

    private var clientReadsHeld: Bool {
        held != nil || machine.holdsClientReads(pipelinedBytes: parser.bufferedBytes, upstreamWritable: upstream?.isWritable ?? false)
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
        if clientWritable { perform(machine.clientBecameWritable()) }
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        eventTime = nil
        if let event = event as? ChannelEvent, case .inputClosed = event {
            if held != nil {
                held?.inputEnded = true
            } else {
                perform(machine.clientInputEnded())
            }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        eventTime = nil
        cancelHold()
        metrics.report(&tally)
        headerCheck?.cancel()
        headerCheck = nil
        perform(machine.clientClosed())
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        shared.logger.debug("proxy.client_error", metadata: ["error": "\(error)"])
        context.close(promise: nil)
    }
}
