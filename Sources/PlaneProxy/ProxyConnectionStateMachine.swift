import NIOCore
import NIOHTTP1

/// The HTTP/1 protocol of one client connection of the proxy, as a pure state machine:
/// `ProxyHandler` reports what happened (a request head, body bytes, the backend's answer,
/// a closed side, a timer) and performs the action that comes back. No I/O here, so every
/// path is unit-tested (`ProxyConnectionStateMachineTests`).
///
/// ```
/// idle ──head, answered here──▶ discarding ──end──▶ idle (keep-alive) / done
///   └──head, forwarded──▶ proxying(request, upstream, body, response)
///         upstream: connecting ──connected──▶ attached ──stale pooled one closed──▶ connecting(retry)
///         body:     incoming ──end──▶ ended          (the response may start before)
///         response: awaited ──head──▶ streaming      (a deadline once the request is with the backend)
///       ──response end──▶ idle, finishingRequest (body still coming) or done (close)
///       ──101 to an upgrade──▶ done (the connection becomes a splice)
///       ──failed, timed out──▶ 502 / 504 answered here, or the client closed if its response had begun
/// ```
///
/// An exchange is open from `forward` until the action that ends it (`endsExchange`,
/// `finishResponse`, `splice`, `endExchange`); every one of those lets go of the upstream
/// connection the same way (`UpstreamRelease`).
struct ProxyConnectionStateMachine {
    /// What the proxy learned from a forwarded request's head.
    struct Request: Equatable {
        var isHEAD: Bool
        /// Its method is idempotent: it may be sent again on a new connection.
        var isIdempotent: Bool
        var clientIsHTTP10: Bool
        /// The client lets the connection carry another request (`Connection`, version).
        var keepAlive: Bool
        var isUpgrade: Bool
        /// Body bytes follow the head (a length or chunks).
        var hasBody: Bool
        /// The client waits for `100 Continue` before its body.
        var expectsContinue: Bool
        /// When the head arrived (the latency is measured from here).
        var started: NIODeadline
    }

    /// The forwarded request's connection to its backend.
    enum Upstream: Equatable {
        /// Being opened or taken from the pool (attempt `id`; answers to older attempts are
        /// late). `retry`: a pooled connection turned out closed, this is the second try.
        case connecting(id: UInt32, retry: Bool)
        /// The request is on it. `reused`: it came from the pool.
        case attached(reused: Bool, retried: Bool)
    }

    enum RequestBody: Equatable {
        /// Bytes are still to come. `started`: some arrived (the request can no longer be resent).
        case incoming(started: Bool)
        case ended(started: Bool)

        var started: Bool {
            switch self {
            case .incoming(let started), .ended(let started): started
            }
        }
    }

    enum Response: Equatable {
        /// No response byte yet; it must start by `deadline`, set once the whole request is
        /// with the backend (an upload may take as long as it takes).
        case awaited(deadline: NIODeadline?)
        /// The head went to the client. `closesClient`: the client connection closes after it;
        /// `upstreamReusable`: the backend keeps its connection open after it.
        case streaming(closesClient: Bool, upstreamReusable: Bool)
    }

    enum State: Equatable {
        /// Waiting for a request head.
        case idle
        /// Answered here; the rest of the request body is read and dropped.
        case discarding(keepAlive: Bool)
        case proxying(Request, Upstream, RequestBody, Response)
        /// The response is complete, the client is still sending the request body.
        case finishingRequest(keepAlive: Bool)
        /// Closing, or handed over to a splice: nothing more is read as HTTP.
        case done
    }

    /// Where the router sends a request.
    enum Route: Equatable {
        /// Answered here; `close`: whatever the client asked, the connection closes after it.
        case answer(LocalAnswer, close: Bool = false)
        case forward
    }

    /// A response the proxy writes itself.
    struct LocalAnswer: Equatable {
        struct Field: Equatable {
            var name: String
            var value: String
        }

        var status: HTTPResponseStatus
        var fields: [Field] = []
        var body: String = ""
    }

    /// What a backend's response head says about the framing.
    struct ResponseHead: Equatable {
        var status: Int
        var keepAlive: Bool
        /// Neither a length nor chunks: the body ends with the connection.
        var delimitedByClose: Bool
        var chunked: Bool
    }

    /// How the response head is rewritten for the client.
    struct ResponsePlan: Equatable {
        var connection: ForwardedHeaders.ConnectionHeader
        /// An HTTP/1.0 client gets a chunked body decoded (and the close ends it).
        var decodeChunks: Bool
        var started: NIODeadline
    }

    /// How the upstream connection is let go of.
    enum UpstreamRelease: Equatable {
        /// Back to the pool for the next request.
        case park
        case close
    }

    /// What the handler does after a response was relayed completely.
    enum AfterResponse: Equatable {
        /// Close the client connection once the response is written.
        case closeClient
        /// Wait for the next request (and handle any pipelined one).
        case awaitRequest
        /// Keep reading (and dropping) the request body the client is still sending.
        case readRequestRest
    }

    enum UpstreamFailure: Equatable {
        /// Closed or reset by the backend (or the network).
        case closed
        /// The backend answered something that is not HTTP/1.x: it did answer, so the
        /// request is never sent again.
        case malformed
    }

    enum Action: Equatable {
        case none
        /// Write `answer` (with `Connection: close` and a close after it unless `keepAlive`).
        /// `endsExchange`: the exchange under way ends first. `awaitsRequest`: the connection
        /// then waits for its next request.
        case answer(LocalAnswer, keepAlive: Bool, endsExchange: Bool, awaitsRequest: Bool)
        /// The request goes to its backend: the exchange opens (its backend is busy) and a
        /// connection is leased for attempt `attempt`, from the pool if `pooled`, else new.
        case forward(attempt: UInt32, pooled: Bool)
        /// The leased connection closed before anything was answered: let it go and lease a
        /// new one (never from the pool) for `attempt`.
        case retry(attempt: UInt32)
        /// Body bytes: keep them until the connection is there, send them on it, or drop them.
        case holdBody
        case forwardBody
        case discardBody
        /// The connection is there: write the head, then held body bytes (`flushHead`: the
        /// head alone is the whole request). `sendContinue`: answer the client's
        /// `Expect: 100-continue`. A `responseDeadline` arms the response timer.
        /// `answersHEAD`: the response has no body whatever its head says.
        case sendRequest(flushHead: Bool, sendContinue: Bool, answersHEAD: Bool, responseDeadline: NIODeadline?)
        /// The request is complete: flush it; a `responseDeadline` arms the response timer.
        case flushRequest(responseDeadline: NIODeadline?)
        /// The response timer fired early: arm it again for this deadline.
        case armResponseTimer(NIODeadline)
        case writeResponseHead(ResponsePlan)
        case forwardResponseBody
        /// The response is complete: the exchange ends, its connection is let go of as said.
        case finishResponse(UpstreamRelease, then: AfterResponse)
        /// `101`: the exchange ends, both connections become a byte splice.
        case splice(started: NIODeadline)
        /// The connection now waits for its next request.
        case awaitRequest
        /// Close the client connection (`endsExchange`: end the exchange under way first).
        case closeClient(endsExchange: Bool)
        /// The client is gone: end the exchange under way.
        case endExchange
        /// A connection that was opened for an attempt that is over: close it.
        case closeLateConnection
        /// Reads paused for the other side can go on.
        case resumeResponseReads
        case resumeRequestReads
    }

    /// Pipelined request bytes beyond this many stop the client's reads.
    static let maxBufferedPipeline = 64 * 1024

    private(set) var state: State = .idle
    /// The client sent its last byte (half-close): the connection closes after the
    /// response under way.
    private(set) var clientInputClosed = false
    private var lastAttempt: UInt32 = 0
    /// `[proxy] upstream_timeout_secs`: a complete request's response must start within it.
    let responseTimeout: TimeAmount

    init(responseTimeout: TimeAmount) {
        self.responseTimeout = responseTimeout
    }

    // MARK: Questions the handler asks

    /// The parser's next request event is taken now: not while a complete request waits
    /// for its response (pipelined requests stay in the parser) and not once closing.
    var takesRequestEvents: Bool {
        switch state {
        case .idle, .discarding, .finishingRequest, .proxying(_, _, .incoming, _): true
        case .proxying(_, _, .ended, _), .done: false
        }
    }

    var awaitsRequest: Bool {
        if case .idle = state { true } else { false }
    }

    var isDone: Bool {
        if case .done = state { true } else { false }
    }

    /// Whether the client's reads wait: while the backend connection is not there or cannot
    /// take more, while an upgrade is undecided (the bytes after its head are not HTTP until
    /// the backend answered), and while pipelined requests pile up.
    func holdsClientReads(pipelinedBytes: Int, upstreamWritable: Bool) -> Bool {
        if pipelinedBytes > Self.maxBufferedPipeline { return true }
        guard case .proxying(let request, let upstream, let body, _) = state else { return false }
        if case .ended = body { return request.isUpgrade }
        guard case .attached = upstream else { return true }
        return !upstreamWritable
    }

    // MARK: Client events

    /// A request head arrived and the router decided where it goes.
    mutating func requestHead(_ request: Request, route: Route) -> Action {
        guard case .idle = state else {
            // The parser hands out a head only after the previous request's end.
            return protocolViolation()
        }
        switch route {
        case .answer(let answer, let close):
            // A client waiting for 100 Continue never sends the body: the connection cannot
            // carry another request.
            let keepAlive = !close && request.keepAlive && !request.expectsContinue
            state = .discarding(keepAlive: keepAlive)
            return .answer(answer, keepAlive: keepAlive, endsExchange: false, awaitsRequest: false)
        case .forward:
            let attempt = nextAttempt()
            state = .proxying(request, .connecting(id: attempt, retry: false), .incoming(started: false), .awaited(deadline: nil))
            // An upgrade gets a connection of its own: the splice uses it up, and many servers
            // switch protocols only on a connection's first request.
            return .forward(attempt: attempt, pooled: !request.isUpgrade)
        }
    }

    mutating func requestBody() -> Action {
        switch state {
        case .proxying(let request, let upstream, .incoming, let response):
            state = .proxying(request, upstream, .incoming(started: true), response)
            if case .attached = upstream { return .forwardBody }
            return .holdBody
        case .idle, .discarding, .finishingRequest, .done, .proxying(_, _, .ended, _):
            return .discardBody
        }
    }

    mutating func requestEnd(now: NIODeadline) -> Action {
        switch state {
        case .discarding(let keepAlive), .finishingRequest(let keepAlive):
            // Without keep-alive the answer already closes the connection once written.
            state = keepAlive ? .idle : .done
            return keepAlive ? .awaitRequest : .none
        case .proxying(let request, let upstream, let body, var response):
            var deadline: NIODeadline?
            if case .attached = upstream, case .awaited = response {
                deadline = now + responseTimeout
                response = .awaited(deadline: deadline)
            }
            state = .proxying(request, upstream, .ended(started: body.started), response)
            if case .attached = upstream { return .flushRequest(responseDeadline: deadline) }
            return .none
        case .idle, .done:
            return .none
        }
    }

    /// The client's request could not be parsed: 400 (431 for a head too large, 505 for
    /// another version) if no response is under way, and the connection closes.
    mutating func requestMalformed(_ error: ProxyError) -> Action {
        switch state {
        case .idle, .discarding, .finishingRequest:
            state = .done
            let status: HTTPResponseStatus = switch error.code {
            case .headTooLarge: .requestHeaderFieldsTooLarge
            case .unsupportedVersion: .httpVersionNotSupported
            default: .badRequest
            }
            return .answer(LocalAnswer(status: status, body: error.message), keepAlive: false, endsExchange: false, awaitsRequest: false)
        case .proxying(_, _, _, .streaming):
            state = .done
            return .closeClient(endsExchange: true)
        case .proxying:
            state = .done
            return .answer(LocalAnswer(status: .badRequest, body: error.message), keepAlive: false, endsExchange: true, awaitsRequest: false)
        case .done:
            return .none
        }
    }

    /// The parser has no complete event left.
    mutating func requestEventsDrained() -> Action {
        guard clientInputClosed, case .idle = state else { return .none }
        state = .done
        return .closeClient(endsExchange: false)
    }

    /// The client half-closed: a cut-off request cannot be answered, a complete one still is.
    mutating func clientInputEnded() -> Action {
        clientInputClosed = true
        switch state {
        case .idle, .discarding, .finishingRequest:
            state = .done
            return .closeClient(endsExchange: false)
        case .proxying(_, _, .incoming, _):
            state = .done
            return .closeClient(endsExchange: true)
        case .proxying(_, _, .ended, _), .done:
            return .none
        }
    }

    /// The client connection closed (or the handler left it).
    mutating func clientClosed() -> Action {
        let previous = state
        state = .done
        if case .proxying = previous { return .endExchange }
        return .none
    }

    /// The client did not send a request head in time (`HeaderDeadline`): closed.
    mutating func headerTimedOut() -> Action {
        protocolViolation()
    }

    mutating func clientBecameWritable() -> Action {
        if case .proxying(_, .attached, _, _) = state { return .resumeResponseReads }
        return .none
    }

    // MARK: Upstream events

    /// A connection for `attempt` is there (`reused`: from the pool).
    mutating func upstreamConnected(attempt: UInt32, reused: Bool, now: NIODeadline) -> Action {
        guard case .proxying(let request, .connecting(let id, let retry), let body, var response) = state, id == attempt else {
            return .closeLateConnection
        }
        var deadline: NIODeadline?
        if case .ended = body {
            deadline = now + responseTimeout
            response = .awaited(deadline: deadline)
        }
        state = .proxying(request, .attached(reused: reused, retried: retry), body, response)
        let ended = if case .ended = body { true } else { false }
        return .sendRequest(flushHead: !request.hasBody && !body.started,
                            sendContinue: request.expectsContinue && !ended && !retry,
                            answersHEAD: request.isHEAD, responseDeadline: deadline)
    }

    mutating func upstreamConnectFailed(attempt: UInt32) -> Action {
        guard case .proxying(_, .connecting(let id, _), _, _) = state, id == attempt else { return .none }
        return fail(.badGateway)
    }

    mutating func responseTimerFired(now: NIODeadline) -> Action {
        guard case .proxying(_, .attached, _, .awaited(let deadline?)) = state else { return .none }
        if deadline > now { return .armResponseTimer(deadline) }
        return fail(.gatewayTimeout)
    }

    mutating func responseHead(_ head: ResponseHead) -> Action {
        guard case .proxying(let request, .attached(let reused, let retried), let body, .awaited) = state else { return .none }
        if head.status < 200, head.status != 101 { return .none }  // informational: not relayed
        if head.status == 101 {
            // A protocol switch nobody asked for cannot be relayed.
            guard request.isUpgrade else { return fail(.badGateway) }
            state = .done
            return .splice(started: request.started)
        }
        var closes = !request.keepAlive || request.isUpgrade || clientInputClosed || head.delimitedByClose
        var decodeChunks = false
        if request.clientIsHTTP10, head.chunked {
            // An HTTP/1.0 client cannot read chunks: the body goes as it is, ended by the close.
            decodeChunks = true
            closes = true
        }
        state = .proxying(request, .attached(reused: reused, retried: retried), body,
                          .streaming(closesClient: closes, upstreamReusable: head.keepAlive && !head.delimitedByClose))
        // An upgrade the backend declined leaves the client's parser in upgrade mode: close.
        let connection: ForwardedHeaders.ConnectionHeader = closes ? .close : request.clientIsHTTP10 ? .keepAlive : .none
        return .writeResponseHead(ResponsePlan(connection: connection, decodeChunks: decodeChunks, started: request.started))
    }

    func responseBody() -> Action {
        if case .proxying(_, _, _, .streaming) = state { return .forwardResponseBody }
        return .none
    }

    mutating func responseEnd() -> Action {
        guard case .proxying(let request, _, let body, .streaming(let closes, let reusable)) = state else { return .none }
        let ended = if case .ended = body { true } else { false }
        // A connection whose request is not all sent cannot carry another one.
        let release: UpstreamRelease = reusable && ended && !request.isUpgrade ? .park : .close
        if closes {
            state = .done
            return .finishResponse(release, then: .closeClient)
        }
        if ended {
            state = .idle
            return .finishResponse(release, then: .awaitRequest)
        }
        state = .finishingRequest(keepAlive: true)
        return .finishResponse(release, then: .readRequestRest)
    }

    /// The leased connection closed or failed. `responseWritten`: whether any byte of the
    /// response went to the client (a head the handler still holds back to join it with
    /// the body has not): if none did, the client is answered `502` instead of cut off.
    mutating func upstreamClosed(_ failure: UpstreamFailure, responseWritten: Bool = true) -> Action {
        guard case .proxying(let request, .attached(let reused, let retried), let body, let response) = state else { return .none }
        // A pooled connection the backend had just closed (or reset), as a server does whose
        // keep-alive timeout ran out as the request arrived: once more on a new one, for an
        // idempotent request of which no body byte went out (RFC 9110 §9.2.2).
        if failure == .closed, reused, !retried, request.isIdempotent, case .awaited = response, !body.started {
            let attempt = nextAttempt()
            state = .proxying(request, .connecting(id: attempt, retry: true), body, .awaited(deadline: nil))
            return .retry(attempt: attempt)
        }
        return fail(.badGateway, responseWritten: responseWritten)
    }

    mutating func upstreamBecameWritable() -> Action {
        if case .proxying(_, .attached, .incoming, _) = state { return .resumeRequestReads }
        return .none
    }

    // MARK: Helpers

    /// The backend could not be used: answered here if no response byte went to the client
    /// yet, else the client connection closes (its response is cut off).
    private mutating func fail(_ status: HTTPResponseStatus, responseWritten: Bool = true) -> Action {
        guard case .proxying(let request, _, let body, let response) = state else { return .none }
        if case .streaming = response, responseWritten {
            state = .done
            return .closeClient(endsExchange: true)
        }
        // The connection can carry on only if the request is complete.
        let ended = if case .ended = body { true } else { false }
        let keepAlive = request.keepAlive && ended && !request.isUpgrade
        state = ended ? (keepAlive ? .idle : .done) : .discarding(keepAlive: keepAlive)
        return .answer(LocalAnswer(status: status), keepAlive: keepAlive, endsExchange: true, awaitsRequest: ended && keepAlive)
    }

    /// The connection closes, with the exchange under way if there is one.
    private mutating func protocolViolation() -> Action {
        let previous = state
        state = .done
        if case .proxying = previous { return .closeClient(endsExchange: true) }
        return .closeClient(endsExchange: false)
    }

    private mutating func nextAttempt() -> UInt32 {
        lastAttempt &+= 1
        return lastAttempt
    }
}
