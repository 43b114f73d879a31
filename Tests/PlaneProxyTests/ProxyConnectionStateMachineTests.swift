import NIOCore
import NIOHTTP1
@testable import PlaneProxy
import Testing

/// The client connection's protocol as a state machine, on a made-up clock: every event in
/// every state it can meet, and the actions that come out.
struct ProxyConnectionStateMachineTests {
    typealias Machine = ProxyConnectionStateMachine
    let start = NIODeadline.uptimeNanoseconds(1_000_000_000_000)
    let timeout = TimeAmount.seconds(30)

    func request(keepAlive: Bool = true, http10: Bool = false, body: Bool = false, upgrade: Bool = false, expectsContinue: Bool = false,
                 head: Bool = false, idempotent: Bool = true) -> Machine.Request {
        Machine.Request(isHEAD: head, isIdempotent: idempotent, clientIsHTTP10: http10, keepAlive: keepAlive, isUpgrade: upgrade, hasBody: body,
                        expectsContinue: expectsContinue, started: start)
    }

    static let ok = Machine.ResponseHead(status: 200, keepAlive: true, delimitedByClose: false, chunked: false)

    /// A machine with `request` forwarded and its connection attached (attempt 1, pooled or not).
    func attached(_ request: Machine.Request, reused: Bool = false) -> Machine {
        var machine = Machine(responseTimeout: timeout)
        #expect(machine.requestHead(request, route: .forward) == .forward(attempt: 1, pooled: !request.isUpgrade))
        let sent = machine.upstreamConnected(attempt: 1, reused: reused, now: start)
        #expect(sent == .sendRequest(flushHead: !request.hasBody, sendContinue: request.expectsContinue, answersHEAD: request.isHEAD, responseDeadline: nil))
        return machine
    }

    @Test func aKeepAliveExchangeEndsIdleAndParksItsConnection() {
        var machine = attached(request())
        #expect(machine.takesRequestEvents)
        // The end of the request arms the response deadline and stops taking pipelined requests.
        #expect(machine.requestEnd(now: start + .seconds(1)) == .flushRequest(responseDeadline: start + .seconds(31)))
        #expect(!machine.takesRequestEvents)
        #expect(machine.responseHead(Self.ok) == .writeResponseHead(.init(connection: .none, decodeChunks: false, started: start)))
        #expect(machine.responseBody() == .forwardResponseBody)
        #expect(machine.responseEnd() == .finishResponse(.park, then: .awaitRequest))
        #expect(machine.state == .idle && machine.awaitsRequest && machine.takesRequestEvents)
        // The next request leases its own attempt.
        #expect(machine.requestHead(request(), route: .forward) == .forward(attempt: 2, pooled: true))
    }

    @Test func closeOnEitherSideClosesTheClientAndTheUpstreamConnection() {
        // The client asked to close.
        var machine = attached(request(keepAlive: false))
        _ = machine.requestEnd(now: start)
        #expect(machine.responseHead(Self.ok) == .writeResponseHead(.init(connection: .close, decodeChunks: false, started: start)))
        #expect(machine.responseEnd() == .finishResponse(.park, then: .closeClient))
        #expect(machine.isDone && !machine.takesRequestEvents)
        // The backend said close: its connection is not parked, the client's stays.
        machine = attached(request())
        _ = machine.requestEnd(now: start)
        _ = machine.responseHead(.init(status: 200, keepAlive: false, delimitedByClose: false, chunked: false))
        #expect(machine.responseEnd() == .finishResponse(.close, then: .awaitRequest))
        // A body delimited by the close ends both.
        machine = attached(request())
        _ = machine.requestEnd(now: start)
        #expect(machine.responseHead(.init(status: 200, keepAlive: true, delimitedByClose: true, chunked: false))
            == .writeResponseHead(.init(connection: .close, decodeChunks: false, started: start)))
        #expect(machine.responseEnd() == .finishResponse(.close, then: .closeClient))
    }

    @Test func anHTTP10ClientGetsChunksDecodedAndAKeepAliveHeader() {
        var machine = attached(request(http10: true))
        _ = machine.requestEnd(now: start)
        #expect(machine.responseHead(Self.ok) == .writeResponseHead(.init(connection: .keepAlive, decodeChunks: false, started: start)))
        #expect(machine.responseEnd() == .finishResponse(.park, then: .awaitRequest))
        machine = attached(request(http10: true))
        _ = machine.requestEnd(now: start)
        #expect(machine.responseHead(.init(status: 200, keepAlive: true, delimitedByClose: false, chunked: true))
            == .writeResponseHead(.init(connection: .close, decodeChunks: true, started: start)))
        #expect(machine.responseEnd() == .finishResponse(.park, then: .closeClient))
    }

    @Test func localAnswersDiscardTheBodyAndKeepTheConnectionIfTheyMay() {
        var machine = Machine(responseTimeout: timeout)
        let notFound = Machine.LocalAnswer(status: .notFound)
        #expect(machine.requestHead(request(body: true), route: .answer(notFound)) == .answer(notFound, keepAlive: true, endsExchange: false, awaitsRequest: false))
        #expect(machine.requestBody() == .discardBody)
        #expect(machine.requestEnd(now: start) == .awaitRequest)
        #expect(machine.awaitsRequest)
        // A client waiting for 100 Continue never sends its body: the connection closes.
        #expect(machine.requestHead(request(body: true, expectsContinue: true), route: .answer(notFound))
            == .answer(notFound, keepAlive: false, endsExchange: false, awaitsRequest: false))
        #expect(machine.requestEnd(now: start) == .none && machine.isDone)
        // CONNECT is refused with a close, whatever the client asked.
        machine = Machine(responseTimeout: timeout)
        let refused = Machine.LocalAnswer(status: .methodNotAllowed, body: "no")
        #expect(machine.requestHead(request(), route: .answer(refused, close: true)) == .answer(refused, keepAlive: false, endsExchange: false, awaitsRequest: false))
    }

    @Test func pipelinedRequestsWaitAndReadsStopWhenTheyPileUp() {
        var machine = attached(request())
        _ = machine.requestEnd(now: start)
        // The next request stays in the parser until this response is done.
        #expect(!machine.takesRequestEvents)
        #expect(!machine.holdsClientReads(pipelinedBytes: 1000, upstreamWritable: true))
        #expect(machine.holdsClientReads(pipelinedBytes: Machine.maxBufferedPipeline + 1, upstreamWritable: true))
        _ = machine.responseHead(Self.ok)
        _ = machine.responseEnd()
        #expect(machine.takesRequestEvents)
    }

    @Test func backpressureBothWays() {
        var machine = Machine(responseTimeout: timeout)
        _ = machine.requestHead(request(body: true), route: .forward)
        // While connecting, the client's reads wait (bytes already read are held).
        #expect(machine.holdsClientReads(pipelinedBytes: 0, upstreamWritable: false))
        #expect(machine.requestBody() == .holdBody)
        #expect(machine.upstreamConnected(attempt: 1, reused: false, now: start) == .sendRequest(flushHead: false, sendContinue: false, answersHEAD: false, responseDeadline: nil))
        // A backend that cannot take more stops the client's reads; writable again resumes them.
        #expect(machine.holdsClientReads(pipelinedBytes: 0, upstreamWritable: false))
        #expect(!machine.holdsClientReads(pipelinedBytes: 0, upstreamWritable: true))
        #expect(machine.upstreamBecameWritable() == .resumeRequestReads)
        #expect(machine.requestBody() == .forwardBody)
        // A client that can take more again resumes the backend's reads.
        #expect(machine.clientBecameWritable() == .resumeResponseReads)
        _ = machine.requestEnd(now: start)
        #expect(!machine.holdsClientReads(pipelinedBytes: 0, upstreamWritable: false))
        #expect(machine.upstreamBecameWritable() == .none)
    }

    @Test func aStalePooledConnectionIsRetriedOnceOnANewOne() {
        var machine = attached(request(), reused: true)
        _ = machine.requestEnd(now: start)
        #expect(machine.upstreamClosed(.closed) == .retry(attempt: 2))
        // The first attempt's late answer is not this one's.
        #expect(machine.upstreamConnected(attempt: 1, reused: false, now: start) == .closeLateConnection)
        #expect(machine.upstreamConnectFailed(attempt: 1) == .none)
        // The retry is sent at once with its deadline (the request is complete), and no 100 Continue.
        #expect(machine.upstreamConnected(attempt: 2, reused: false, now: start + .seconds(2))
            == .sendRequest(flushHead: true, sendContinue: false, answersHEAD: false, responseDeadline: start + .seconds(32)))
        // Closed again: no third try.
        #expect(machine.upstreamClosed(.closed) == .answer(.init(status: .badGateway), keepAlive: true, endsExchange: true, awaitsRequest: true))
        #expect(machine.awaitsRequest)
    }

    @Test func noRetryWhenTheRequestMayHaveBeenConsumed() {
        // A fresh connection: the backend closed it on purpose.
        var machine = attached(request())
        _ = machine.requestEnd(now: start)
        #expect(machine.upstreamClosed(.closed) == .answer(.init(status: .badGateway), keepAlive: true, endsExchange: true, awaitsRequest: true))
        // Body bytes went out.
        machine = attached(request(body: true), reused: true)
        _ = machine.requestBody()
        _ = machine.requestEnd(now: start)
        #expect(machine.upstreamClosed(.closed) == .answer(.init(status: .badGateway), keepAlive: true, endsExchange: true, awaitsRequest: true))
        // A method that is not idempotent (a POST without a body), even on a pooled connection.
        machine = attached(request(idempotent: false), reused: true)
        _ = machine.requestEnd(now: start)
        #expect(machine.upstreamClosed(.closed) == .answer(.init(status: .badGateway), keepAlive: true, endsExchange: true, awaitsRequest: true))
        // The backend answered something that is not HTTP.
        machine = attached(request(), reused: true)
        _ = machine.requestEnd(now: start)
        #expect(machine.upstreamClosed(.malformed) == .answer(.init(status: .badGateway), keepAlive: true, endsExchange: true, awaitsRequest: true))
        // The response had begun: the client's response is cut off.
        machine = attached(request(), reused: true)
        _ = machine.requestEnd(now: start)
        _ = machine.responseHead(Self.ok)
        #expect(machine.upstreamClosed(.closed) == .closeClient(endsExchange: true))
        #expect(machine.isDone)
        // The head was relayed but none of it reached the client yet (held back to leave
        // with its body), and the body is malformed: the client is answered 502 instead.
        machine = attached(request(), reused: true)
        _ = machine.requestEnd(now: start)
        _ = machine.responseHead(Self.ok)
        #expect(machine.upstreamClosed(.malformed, responseWritten: false) == .answer(.init(status: .badGateway), keepAlive: true, endsExchange: true, awaitsRequest: true))
    }

    @Test func anEarlyUpstreamCloseMidUploadAnswers502AndDropsTheRest() {
        // The request is incomplete: the connection cannot carry another one after the 502.
        var machine = attached(request(body: true))
        _ = machine.requestBody()
        #expect(machine.upstreamClosed(.closed) == .answer(.init(status: .badGateway), keepAlive: false, endsExchange: true, awaitsRequest: false))
        #expect(machine.requestBody() == .discardBody)
        #expect(machine.requestEnd(now: start) == .none && machine.isDone)
        // A response that ends while the upload goes on: the rest is read and dropped.
        machine = attached(request(body: true))
        _ = machine.requestBody()
        _ = machine.responseHead(Self.ok)
        #expect(machine.responseEnd() == .finishResponse(.close, then: .readRequestRest))
        #expect(machine.requestBody() == .discardBody)
        #expect(machine.requestEnd(now: start) == .awaitRequest)
    }

    @Test func aConnectFailureIs502AndAClientCutOffMidBodyEndsTheExchange() {
        var machine = Machine(responseTimeout: timeout)
        _ = machine.requestHead(request(keepAlive: false), route: .forward)
        _ = machine.requestEnd(now: start)
        #expect(machine.upstreamConnectFailed(attempt: 1) == .answer(.init(status: .badGateway), keepAlive: false, endsExchange: true, awaitsRequest: false))
        #expect(machine.isDone)
        machine = attached(request(body: true))
        _ = machine.requestBody()
        #expect(machine.clientInputEnded() == .closeClient(endsExchange: true))
        #expect(machine.isDone)
        // A complete request is still answered after a half-close, and the connection closes after it.
        machine = attached(request())
        _ = machine.requestEnd(now: start)
        #expect(machine.clientInputEnded() == .none)
        #expect(machine.responseHead(Self.ok) == .writeResponseHead(.init(connection: .close, decodeChunks: false, started: start)))
        #expect(machine.responseEnd() == .finishResponse(.park, then: .closeClient))
        // A connection that closed ends the exchange; a late connection is closed.
        machine = Machine(responseTimeout: timeout)
        _ = machine.requestHead(request(), route: .forward)
        #expect(machine.clientClosed() == .endExchange)
        #expect(machine.upstreamConnected(attempt: 1, reused: false, now: start) == .closeLateConnection)
        #expect(machine.clientClosed() == .none)
        // Idle and half-closed: closed once nothing is left to answer.
        machine = Machine(responseTimeout: timeout)
        #expect(machine.clientInputEnded() == .closeClient(endsExchange: false))
    }

    @Test func expectContinueIsAnsweredOnceTheBackendConnectionIsThere() {
        var machine = Machine(responseTimeout: timeout)
        _ = machine.requestHead(request(body: true, expectsContinue: true), route: .forward)
        #expect(machine.upstreamConnected(attempt: 1, reused: true, now: start) == .sendRequest(flushHead: false, sendContinue: true, answersHEAD: false, responseDeadline: nil))
        // Not after the body is complete (the client gave up waiting).
        machine = Machine(responseTimeout: timeout)
        _ = machine.requestHead(request(body: true, expectsContinue: true), route: .forward)
        #expect(machine.requestBody() == .holdBody)
        _ = machine.requestEnd(now: start)
        #expect(machine.upstreamConnected(attempt: 1, reused: false, now: start) == .sendRequest(flushHead: false, sendContinue: false, answersHEAD: false, responseDeadline: start + timeout))
    }

    @Test func informationalAnswersAreDroppedAndUpgradesSplice() {
        var machine = attached(request(head: true))
        _ = machine.requestEnd(now: start)
        #expect(machine.responseHead(.init(status: 103, keepAlive: true, delimitedByClose: false, chunked: false)) == .none)
        #expect(machine.responseHead(Self.ok) == .writeResponseHead(.init(connection: .none, decodeChunks: false, started: start)))
        // An upgrade request: the reads wait for the backend's answer, 101 splices.
        machine = attached(request(upgrade: true))
        _ = machine.requestEnd(now: start)
        #expect(machine.holdsClientReads(pipelinedBytes: 0, upstreamWritable: true))
        #expect(machine.responseHead(.init(status: 101, keepAlive: true, delimitedByClose: false, chunked: false)) == .splice(started: start))
        #expect(machine.isDone)
        // An upgrade the backend declined: answered, then closed (the client is in upgrade mode).
        machine = attached(request(upgrade: true))
        _ = machine.requestEnd(now: start)
        #expect(machine.responseHead(Self.ok) == .writeResponseHead(.init(connection: .close, decodeChunks: false, started: start)))
        #expect(machine.responseEnd() == .finishResponse(.close, then: .closeClient))
        // A 101 nobody asked for cannot be relayed.
        machine = attached(request())
        _ = machine.requestEnd(now: start)
        #expect(machine.responseHead(.init(status: 101, keepAlive: true, delimitedByClose: false, chunked: false))
            == .answer(.init(status: .badGateway), keepAlive: true, endsExchange: true, awaitsRequest: true))
    }

    @Test func theResponseTimeoutRunsOnlyOnceTheRequestIsWithTheBackend() {
        var machine = Machine(responseTimeout: timeout)
        _ = machine.requestHead(request(body: true), route: .forward)
        #expect(machine.responseTimerFired(now: start + .hours(1)) == .none, "no deadline while connecting")
        _ = machine.upstreamConnected(attempt: 1, reused: false, now: start)
        _ = machine.requestBody()
        #expect(machine.responseTimerFired(now: start + .hours(1)) == .none, "no deadline while the upload goes on")
        #expect(machine.requestEnd(now: start + .seconds(10)) == .flushRequest(responseDeadline: start + .seconds(40)))
        // Fired early (armed for an earlier request): armed again for this one.
        #expect(machine.responseTimerFired(now: start + .seconds(20)) == .armResponseTimer(start + .seconds(40)))
        #expect(machine.responseTimerFired(now: start + .seconds(40)) == .answer(.init(status: .gatewayTimeout), keepAlive: true, endsExchange: true, awaitsRequest: true))
        // Once the response started, no timeout.
        machine = attached(request())
        _ = machine.requestEnd(now: start)
        _ = machine.responseHead(Self.ok)
        #expect(machine.responseTimerFired(now: start + .hours(1)) == .none)
    }

    @Test func malformedRequestsAndProtocolViolations() {
        let bad = ProxyError(.malformedMessage, "bad")
        var machine = Machine(responseTimeout: timeout)
        #expect(machine.requestMalformed(bad) == .answer(.init(status: .badRequest, body: "bad"), keepAlive: false, endsExchange: false, awaitsRequest: false))
        #expect(machine.isDone && machine.requestMalformed(bad) == .none)
        machine = Machine(responseTimeout: timeout)
        #expect(machine.requestMalformed(ProxyError(.headTooLarge, "big")) == .answer(.init(status: .requestHeaderFieldsTooLarge, body: "big"), keepAlive: false, endsExchange: false, awaitsRequest: false))
        machine = Machine(responseTimeout: timeout)
        #expect(machine.requestMalformed(ProxyError(.unsupportedVersion, "2")) == .answer(.init(status: .httpVersionNotSupported, body: "2"), keepAlive: false, endsExchange: false, awaitsRequest: false))
        // A body that breaks its framing mid-exchange: 400 if nothing was answered yet, else a close.
        machine = attached(request(body: true))
        #expect(machine.requestMalformed(bad) == .answer(.init(status: .badRequest, body: "bad"), keepAlive: false, endsExchange: true, awaitsRequest: false))
        machine = attached(request(body: true))
        _ = machine.responseHead(Self.ok)
        #expect(machine.requestMalformed(bad) == .closeClient(endsExchange: true))
        // A head while an exchange is under way cannot come from the parser; if it did, the connection closes.
        machine = attached(request(body: true))
        #expect(machine.requestHead(request(), route: .forward) == .closeClient(endsExchange: true))
    }

    /// Every event in every state: nothing traps, and the done state stays done.
    @Test func everyEventInEveryStateIsHandled() {
        let states: [Machine] = {
            var list: [Machine] = [Machine(responseTimeout: timeout)]
            var discarding = Machine(responseTimeout: timeout)
            _ = discarding.requestHead(request(body: true), route: .answer(.init(status: .notFound)))
            list.append(discarding)
            var connecting = Machine(responseTimeout: timeout)
            _ = connecting.requestHead(request(body: true), route: .forward)
            list.append(connecting)
            list.append(attached(request(body: true)))
            var streaming = attached(request(body: true))
            _ = streaming.responseHead(Self.ok)
            list.append(streaming)
            var finishing = streaming
            _ = finishing.responseEnd()
            list.append(finishing)
            var done = Machine(responseTimeout: timeout)
            _ = done.clientClosed()
            list.append(done)
            return list
        }()
        let events: [(inout Machine) -> Machine.Action] = [
            { $0.requestHead(request(), route: .forward) }, { $0.requestBody() }, { $0.requestEnd(now: start) },
            { $0.requestMalformed(ProxyError(.malformedMessage, "x")) }, { $0.requestEventsDrained() }, { $0.clientInputEnded() },
            { $0.clientBecameWritable() }, { $0.upstreamConnected(attempt: 1, reused: true, now: start) }, { $0.upstreamConnectFailed(attempt: 1) },
            { $0.responseTimerFired(now: start + .hours(1)) }, { $0.responseHead(Self.ok) }, { $0.responseBody() }, { $0.responseEnd() },
            { $0.upstreamClosed(.closed) }, { $0.upstreamBecameWritable() }, { $0.clientClosed() }, { $0.headerTimedOut() },
        ]
        for state in states {
            for (index, event) in events.enumerated() {
                var machine = state
                _ = event(&machine)
                if state.isDone { #expect(machine.isDone, "event \(index) left the done state") }
            }
        }
    }
}
