import Logging
import NIOCore
import NIOEmbedded
@testable import PlaneFuzzTargets
@testable import PlaneProxy
import PlaneCore
import PlaneTestSupport
import Testing

/// Requests for a backend that is still starting, on `EmbeddedChannel`s: held (the client's
/// reads stopped) until the backend is Ready, then forwarded; 503 with `Retry-After` when it
/// ends first or the hold's time runs out.
struct ProxyHeldRequestTests: EmbeddedProxyTest {
    let loop = EmbeddedEventLoop()
    let connector: EmbeddedUpstreamConnector
    let client: EmbeddedChannel
    let routes: RouteTable
    let metrics = ProxyMetrics()
    let clientReads = ReadCounter()
    static let ready = RouteTable.Route(backendID: "starting", address: "127.0.0.1:9", bearerToken: "secret")

    init(hold: Duration = .seconds(30), maxHeld: Int = 10) throws {
        connector = EmbeddedUpstreamConnector(loop: loop)
        client = EmbeddedChannel(loop: loop)
        routes = RouteTable(maxHeldRequests: maxHeld)
        var configuration = ProxyConfiguration()
        configuration.upstreamResponseTimeout = .seconds(100)
        configuration.headerReadTimeout = .seconds(5)
        configuration.holdWhileStarting = hold
        routes.starting("starting", bearerToken: "secret", accessTokens: ["starting.link"])
        let shared = ProxyContext(router: ProxyRouter(cluster: "plane.test"), routes: routes, configuration: configuration, metrics: metrics,
                                  pools: UpstreamPools(maxIdle: 1, maxHeadBytes: 1024), logger: Logger(label: "test.proxy"), scheme: "http")
        try client.pipeline.syncOperations.addHandler(clientReads)
        try client.pipeline.syncOperations.addHandler(ProxyHandler(shared: shared, connector: connector))
        try client.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 40000)).wait()
    }

    /// A read: its bytes, then its end.
    func read(_ text: String) throws {
        try send(text)
        client.pipeline.fireChannelReadComplete()
    }

    static let get = "GET /x HTTP/1.1\r\nHost: starting.plane.test\r\nAuthorization: Bearer secret\r\n\r\n"

    @Test func aRequestIsHeldUntilTheBackendIsReadyThenForwarded() throws {
        try read(Self.get)
        #expect(connector.opened.isEmpty)
        #expect(try received().isEmpty)
        #expect(routes.heldRequests == 1)
        // Reads stop while it is held.
        let readsBefore = clientReads.reads
        client.read()
        #expect(clientReads.reads == readsBefore)
        loop.advanceTime(by: .seconds(10))
        #expect(try received().isEmpty)

        routes.add(Self.ready)
        loop.run()
        let upstream = try #require(connector.opened.first)
        let request = try sent(to: upstream)
        #expect(request.hasPrefix("GET /x HTTP/1.1\r\n"))
        try answer(upstream, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        #expect(try received() == "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        #expect(routes.heldRequests == 0)
        #expect(metrics.heldRequests["ready"] == 1)
        // The read held back went on once the request was forwarded.
        #expect(clientReads.reads == readsBefore + 1)
        // The hold's timer is gone: nothing fires later.
        loop.advanceTime(by: .seconds(60))
        #expect(try received().isEmpty)
    }

    @Test func aBodyThatArrivesWhileHeldFollowsItsHead() throws {
        try read("POST /upload HTTP/1.1\r\nHost: starting.plane.test\r\nAuthorization: Bearer secret\r\nContent-Length: 10\r\n\r\nhello")
        try read("world")
        #expect(connector.opened.isEmpty)
        routes.add(Self.ready)
        loop.run()
        let upstream = try #require(connector.opened.first)
        let request = try sent(to: upstream)
        #expect(request.hasPrefix("POST /upload HTTP/1.1\r\n"))
        #expect(request.hasSuffix("\r\n\r\nhelloworld"))
        try answer(upstream, "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
        #expect(try received().hasPrefix("HTTP/1.1 201 Created\r\n"))
    }

    @Test func aWebSocketUpgradeIsHeldThenSpliced() throws {
        try read("GET /ws HTTP/1.1\r\nHost: starting.plane.test\r\nAuthorization: Bearer secret\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                 + "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        #expect(connector.opened.isEmpty)
        routes.add(Self.ready)
        loop.run()
        let upstream = try #require(connector.opened.first)
        #expect(try sent(to: upstream).contains("Upgrade: websocket"))
        try answer(upstream, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        #expect(try received().hasPrefix("HTTP/1.1 101 Switching Protocols\r\n"))
        // Spliced: bytes cross unparsed.
        try read("\u{81}\u{02}hi")
        #expect(try sent(to: upstream) == "\u{81}\u{02}hi")
    }

    @Test func aHoldThatRunsOutIsAnswered503WithRetryAfter() throws {
        try read(Self.get)
        loop.advanceTime(by: .seconds(29))
        #expect(try received().isEmpty)
        loop.advanceTime(by: .seconds(1))
        let answer = try received()
        #expect(answer.hasPrefix("HTTP/1.1 503 Service Unavailable\r\n"))
        #expect(answer.contains("Retry-After: 1\r\n"))
        #expect(answer.contains("within 30 s"))
        #expect(routes.heldRequests == 0)
        #expect(metrics.heldRequests["timed_out"] == 1)
        #expect(connector.opened.isEmpty)
        // The connection stays usable: the next request is held again, then forwarded.
        try read(Self.get)
        routes.add(Self.ready)
        loop.run()
        #expect(connector.opened.count == 1)
    }

    @Test func aBackendThatEndsWhileStartingLetsItsRequestsGoWith503() throws {
        try read(Self.get)
        routes.notStarting("starting")
        loop.run()
        let answer = try received()
        #expect(answer.hasPrefix("HTTP/1.1 503 Service Unavailable\r\n"))
        #expect(answer.contains("Retry-After: 1\r\n"))
        #expect(metrics.heldRequests["ended"] == 1)
        #expect(connector.opened.isEmpty)
        // It is gone now: 404 like any unknown backend.
        try read(Self.get)
        #expect(try received().hasPrefix("HTTP/1.1 404 Not Found\r\n"))
    }

    @Test func aClientThatGoesWhileHeldLeavesNothingWaiting() throws {
        try read(Self.get)
        #expect(routes.heldRequests == 1)
        _ = try client.close().wait()
        loop.run()
        #expect(routes.heldRequests == 0)
        routes.add(Self.ready)
        loop.run()
        #expect(connector.opened.isEmpty)
    }

    @Test func theTokenIsCheckedBeforeTheHold() throws {
        try read("GET /x HTTP/1.1\r\nHost: starting.plane.test\r\n\r\n")
        #expect(try received().hasPrefix("HTTP/1.1 401 Unauthorized\r\n"))
        try read("GET /x HTTP/1.1\r\nHost: starting.plane.test\r\nAuthorization: Bearer wrong\r\n\r\n")
        #expect(try received().hasPrefix("HTTP/1.1 403 Forbidden\r\n"))
        #expect(routes.heldRequests == 0)
        // A per-connect token is taken while starting too.
        try read("GET /x HTTP/1.1\r\nHost: starting.plane.test\r\nAuthorization: Bearer starting.link\r\n\r\n")
        #expect(routes.heldRequests == 1)
    }

    @Test func requestsBeyondTheLimitAreRefusedAtOnce() throws {
        let limited = try ProxyHeldRequestTests(maxHeld: 0)
        try limited.read(Self.get)
        let answer = try limited.received()
        #expect(answer.hasPrefix("HTTP/1.1 503 Service Unavailable\r\n"))
        #expect(answer.contains("Too many requests"))
        #expect(limited.metrics.heldRequests["over_limit"] == 1)
    }

    @Test func withoutAHoldAStartingBackendAnswers503AtOnce() throws {
        let unheld = try ProxyHeldRequestTests(hold: .zero)
        try unheld.read(Self.get)
        let answer = try unheld.received()
        #expect(answer.hasPrefix("HTTP/1.1 503 Service Unavailable\r\n"))
        #expect(answer.contains("Retry-After: 1\r\n"))
        #expect(unheld.routes.heldRequests == 0)
    }

    @Test func aBackendReadyBeforeTheWaitBeginsIsForwardedAtOnce() throws {
        // Ready between the lookup and the wait: the table answers at once.
        var immediate = RouteTable.StartOutcome.cancelled
        routes.add(Self.ready)
        #expect(routes.waitUntilReady("starting", on: loop, immediate: &immediate) == nil)
        #expect(immediate == .ready)
        routes.remove("starting")
        #expect(routes.waitUntilReady("starting", on: loop, immediate: &immediate) == nil)
        #expect(immediate == .ended)
    }
}
