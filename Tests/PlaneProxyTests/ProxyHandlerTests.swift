import Logging
import NIOCore
import NIOEmbedded
@testable import PlaneFuzzTargets
@testable import PlaneProxy
import PlaneCore
import PlaneTestSupport
import Testing

/// A `ProxyHandler` on an embedded client channel, with the helpers its tests share.
protocol EmbeddedProxyTest {
    var client: EmbeddedChannel { get }
}

extension EmbeddedProxyTest {
    func send(_ text: String) throws {
        try client.writeInbound(ByteBuffer(string: text))
    }

    /// Everything the client received so far.
    func received() throws -> String {
        var text = ""
        while let buffer = try client.readOutbound(as: ByteBuffer.self) { text += String(buffer: buffer) }
        return text
    }

    /// Everything `upstream` was sent so far.
    func sent(to upstream: EmbeddedChannel) throws -> String {
        var text = ""
        while let buffer = try upstream.readOutbound(as: ByteBuffer.self) { text += String(buffer: buffer) }
        return text
    }

    func answer(_ upstream: EmbeddedChannel, _ text: String) throws {
        try upstream.writeInbound(ByteBuffer(string: text))
        upstream.pipeline.fireChannelReadComplete()
    }
}

/// `ProxyHandler` on `EmbeddedChannel`s: the client's bytes go in, the backend's bytes come
/// back through embedded upstream connections, time is the embedded loop's.
struct ProxyHandlerTests: EmbeddedProxyTest {
    let loop = EmbeddedEventLoop()
    let connector: EmbeddedUpstreamConnector
    let client: EmbeddedChannel
    let routes = RouteTable()
    let metrics = ProxyMetrics()
    let clientReads = ReadCounter()

    init() throws {
        connector = EmbeddedUpstreamConnector(loop: loop)
        client = EmbeddedChannel(loop: loop)
        try setUp()
    }

    private func setUp(_ adjust: (inout ProxyConfiguration) -> Void = { _ in }) throws {
        var configuration = ProxyConfiguration()
        configuration.upstreamResponseTimeout = .seconds(10)
        configuration.headerReadTimeout = .seconds(5)
        adjust(&configuration)
        routes.add(RouteTable.Route(backendID: "foobar", address: "127.0.0.1:9", bearerToken: nil))
        let shared = ProxyContext(router: ProxyRouter(cluster: "plane.test"), routes: routes, configuration: configuration, metrics: metrics,
                                  pools: UpstreamPools(maxIdle: 1, maxHeadBytes: 1024), logger: Logger(label: "test.proxy"), scheme: "http")
        try client.pipeline.syncOperations.addHandler(clientReads)
        try client.pipeline.syncOperations.addHandler(ProxyHandler(shared: shared, connector: connector))
        try client.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 40000)).wait()
    }

    /// A fresh client channel on the connector's loop (the handler's timers run on it).
    static func make() throws -> ProxyHandlerTests {
        try ProxyHandlerTests()
    }

    // MARK: Helpers

    /// One exchange answered: its connection (the first opened) is parked afterwards.
    func exchangeOnce() throws -> EmbeddedChannel {
        try send(Self.get)
        let upstream = try #require(connector.opened.first)
        try answer(upstream, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        _ = try received()
        _ = try sent(to: upstream)
        return upstream
    }

    var idle: Duration? { routes.idleTime(of: "foobar", now: .now + .seconds(3600)) }

    static let get = "GET /x HTTP/1.1\r\nHost: foobar.plane.test\r\n\r\n"

    // MARK: Tests

    @Test func aKeepAliveExchangeIsForwardedAnsweredAndItsConnectionParked() throws {
        let t = try Self.make()
        try t.send(Self.get)
        let upstream = try #require(t.connector.opened.first)
        let head = try t.sent(to: upstream)
        #expect(head.hasPrefix("GET /x HTTP/1.1\r\n") && head.contains("\r\nX-Forwarded-Proto: http\r\n") && head.hasSuffix("\r\n\r\n"), "\(head)")
        #expect(t.idle == .zero, "an open exchange keeps its backend busy")
        try t.answer(upstream, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
        #expect(try t.received() == "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
        #expect(t.connector.parked.count == 1 && upstream.isActive)
        #expect(t.idle != .zero, "the exchange ended")
        // The next request takes the parked connection.
        try t.send(Self.get)
        #expect(t.connector.opened.count == 1 && t.connector.parked.isEmpty)
        #expect(try t.sent(to: upstream).hasPrefix("GET /x HTTP/1.1\r\n"))
        try t.answer(upstream, "HTTP/1.1 204 No Content\r\n\r\n")
        #expect(try t.received().hasPrefix("HTTP/1.1 204 No Content\r\n"))
        #expect(t.client.isActive)
    }

    @Test func connectionCloseClosesBothSidesOnceTheResponseIsWritten() throws {
        let t = try Self.make()
        try t.send("GET / HTTP/1.1\r\nHost: foobar.plane.test\r\nConnection: close\r\n\r\n")
        let upstream = try #require(t.connector.opened.first)
        _ = try t.sent(to: upstream)
        try t.answer(upstream, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        #expect(try t.received() == "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        #expect(!t.client.isActive && !upstream.isActive && t.connector.parked.isEmpty)
    }

    @Test func aStalePooledConnectionIsRetriedOnANewOne() throws {
        let t = try Self.make()
        let first = try t.exchangeOnce()
        // The backend closed the parked connection just as it was taken.
        try t.send(Self.get)
        _ = try t.sent(to: first)
        try first.close().wait()
        try #require(t.connector.opened.count == 2)
        let second = t.connector.opened[1]
        #expect(try t.sent(to: second).hasPrefix("GET /x HTTP/1.1\r\n"))
        try t.answer(second, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        #expect(try t.received().hasSuffix("\r\n\r\nok"))
        #expect(t.client.isActive)
    }

    @Test func aRequestWhoseBodyWentOutIsNotSentTwice() throws {
        let t = try Self.make()
        let first = try t.exchangeOnce()
        try t.send("POST /pay HTTP/1.1\r\nHost: foobar.plane.test\r\nContent-Length: 3\r\n\r\nabc")
        #expect(try t.sent(to: first).hasSuffix("\r\n\r\nabc"))
        try first.close().wait()
        #expect(t.connector.opened.count == 1, "not sent again")
        #expect(try t.received().hasPrefix("HTTP/1.1 502 Bad Gateway\r\n"))
        #expect(t.idle != .zero)
    }

    @Test func pipelinedRequestsGoOneAtATime() throws {
        let t = try Self.make()
        try t.send(Self.get + "GET /second HTTP/1.1\r\nHost: foobar.plane.test\r\n\r\n")
        let upstream = try #require(t.connector.opened.first)
        let first = try t.sent(to: upstream)
        #expect(first.hasPrefix("GET /x ") && !first.contains("/second"))
        try t.answer(upstream, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1")
        // The first response is out; the second request goes on the same (parked, retaken) connection.
        #expect(try t.sent(to: upstream).hasPrefix("GET /second "))
        try t.answer(upstream, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n2")
        let both = try t.received()
        #expect(both.hasSuffix("\r\n\r\n1HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n2"), "\(both)")
        #expect(t.connector.opened.count == 1)
    }

    @Test func backpressureStopsTheOtherSidesReads() throws {
        let t = try Self.make()
        try t.send("POST /up HTTP/1.1\r\nHost: foobar.plane.test\r\nContent-Length: 10\r\n\r\nab")
        let upstream = try #require(t.connector.opened.first)
        let upstreamReads = try upstream.pipeline.syncOperations.handler(type: ReadCounter.self)
        // The backend cannot take more: the client's reads wait until it can.
        upstream.isWritable = false
        upstream.pipeline.fireChannelWritabilityChanged()
        let before = t.clientReads.reads
        t.client.read()
        #expect(t.clientReads.reads == before)
        upstream.isWritable = true
        upstream.pipeline.fireChannelWritabilityChanged()
        #expect(t.clientReads.reads == before + 1)
        try t.send("cdefghij")
        #expect(try t.sent(to: upstream).hasSuffix("abcdefghij"))
        // The client cannot take more: the backend's reads wait until it can.
        try t.answer(upstream, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab")
        t.client.isWritable = false
        t.client.pipeline.fireChannelWritabilityChanged()
        let upstreamBefore = upstreamReads.reads
        upstream.read()
        #expect(upstreamReads.reads == upstreamBefore)
        t.client.isWritable = true
        t.client.pipeline.fireChannelWritabilityChanged()
        #expect(upstreamReads.reads == upstreamBefore + 1)
        try t.answer(upstream, "cd")
        #expect(try t.received().hasSuffix("\r\n\r\nabcd"))
    }

    @Test func anUpgradeBecomesASpliceAndCountsAsAnOpenConnection() throws {
        let t = try Self.make()
        try t.send("GET /ws HTTP/1.1\r\nHost: foobar.plane.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nearly")
        let upstream = try #require(t.connector.opened.first)
        let head = try t.sent(to: upstream)
        #expect(head.hasPrefix("GET /ws HTTP/1.1\r\n") && !head.contains("early"), "the bytes after an upgrade head wait for the answer")
        try t.answer(upstream, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nhello")
        let answer = try t.received()
        #expect(answer.hasPrefix("HTTP/1.1 101 Switching Protocols\r\n") && answer.hasSuffix("\r\n\r\nhello"), "\(answer)")
        #expect(try t.sent(to: upstream) == "early")
        try t.send("more")
        #expect(try t.sent(to: upstream) == "more")
        #expect(t.idle == .zero && t.metrics.openUpgradedConnections == 1)
        try t.client.close().wait()
        #expect(!upstream.isActive && t.metrics.openUpgradedConnections == 0)
        #expect(t.idle != .zero)
    }

    @Test func anEarlyUpstreamCloseIs502AndAClientGoneMidBodyClosesTheUpstream() throws {
        var t = try Self.make()
        try t.send(Self.get)
        try #require(t.connector.opened.first).close().wait()
        #expect(try t.received().hasPrefix("HTTP/1.1 502 Bad Gateway\r\n"))
        #expect(t.client.isActive, "the request was complete: the connection carries on")
        t = try Self.make()
        try t.send("POST /up HTTP/1.1\r\nHost: foobar.plane.test\r\nContent-Length: 10\r\n\r\nab")
        let upstream = try #require(t.connector.opened.first)
        #expect(t.idle == .zero)
        try t.client.close().wait()
        #expect(!upstream.isActive && t.idle != .zero)
    }

    /// A malformed response (here its first chunk) in the read that brought its head: no
    /// byte of it has reached the client (the head waits to leave with its body), so the
    /// client gets a 502 and keeps its connection, and the backend's connection is closed.
    /// Once a head has gone out, the same fault can only cut the response off.
    @Test func aMalformedResponseBeforeAnyByteWentOutIs502() throws {
        var t = try Self.make()
        try t.send(Self.get)
        var upstream = try #require(t.connector.opened.first)
        try upstream.writeInbound(ByteBuffer(string: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"))
        let answered = try t.received()
        #expect(answered.hasPrefix("HTTP/1.1 502 Bad Gateway\r\n") && !answered.contains("200 OK"), "\(answered)")
        #expect(t.client.isActive && !upstream.isActive && t.connector.parked.isEmpty)
        #expect(t.idle != .zero, "the exchange ended")
        #expect(t.metrics.responses(ofClass: 5) == 1 && t.metrics.responses(ofClass: 2) == 0, "counted once, as the 502")
        // The same with a body piece too large to join the head before the fault (chunks
        // decoded for an HTTP/1.0 client come out one by one): the piece waits with the
        // head for the read's end, and nothing reaches the client.
        t = try Self.make()
        try t.send("GET /x HTTP/1.0\r\nHost: foobar.plane.test\r\nConnection: keep-alive\r\n\r\n")
        upstream = try #require(t.connector.opened.first)
        let large = String(repeating: "x", count: 4 * ProxyHandler.maxJoinedBody)  // beyond the head buffer's rounded-up capacity
        try upstream.writeInbound(ByteBuffer(string: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\(String(large.utf8.count, radix: 16))\r\n\(large)\r\n3\r\nabc\r\nzz\r\n"))
        let answeredLarge = try t.received()
        #expect(answeredLarge.hasPrefix("HTTP/1.1 502 Bad Gateway\r\n") && !answeredLarge.contains("200 OK"), "\(answeredLarge.prefix(200))")
        #expect(t.client.isActive && !upstream.isActive)
        #expect(t.metrics.responses(ofClass: 5) == 1 && t.metrics.responses(ofClass: 2) == 0)
        // A good large response read the same way leaves whole, counted once.
        try t.send(Self.get)
        upstream = try #require(t.connector.opened.last)
        try t.answer(upstream, "HTTP/1.1 200 OK\r\nContent-Length: \(large.utf8.count)\r\n\r\n\(large)")
        let whole = try t.received()
        #expect(whole.hasPrefix("HTTP/1.1 200 OK\r\n") && whole.hasSuffix(large) && whole.utf8.count > large.utf8.count)
        #expect(t.metrics.responses(ofClass: 2) == 1)
        // The same fault a read after the head: the head went out, the response is cut off.
        t = try Self.make()
        try t.send(Self.get)
        upstream = try #require(t.connector.opened.first)
        try t.answer(upstream, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        #expect(try t.received().hasPrefix("HTTP/1.1 200 OK\r\n"))
        try upstream.writeInbound(ByteBuffer(string: "zz\r\n"))
        #expect(!t.client.isActive && !upstream.isActive)
    }

    @Test func aFailedConnectIs502() throws {
        let t = try Self.make()
        t.connector.failConnects = ProxyError(.upstreamUnreachable, "refused")
        try t.send(Self.get)
        t.loop.run()
        #expect(try t.received().hasPrefix("HTTP/1.1 502 Bad Gateway\r\n"))
        #expect(t.idle != .zero && t.client.isActive)
    }

    @Test func expectContinueIsAnsweredByTheProxy() throws {
        let t = try Self.make()
        try t.send("PUT /f HTTP/1.1\r\nHost: foobar.plane.test\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
        let upstream = try #require(t.connector.opened.first)
        #expect(!(try t.sent(to: upstream).lowercased().contains("expect")))
        #expect(try t.received() == "HTTP/1.1 100 Continue\r\n\r\n")
        try t.send("abc")
        #expect(try t.sent(to: upstream) == "abc")
    }

    @Test func headAnswersAndInformationalAnswers() throws {
        let t = try Self.make()
        try t.send("HEAD / HTTP/1.1\r\nHost: foobar.plane.test\r\n\r\n")
        let upstream = try #require(t.connector.opened.first)
        // A HEAD answer's length describes a body that does not come.
        try t.answer(upstream, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
        #expect(try t.received() == "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
        #expect(t.connector.parked.count == 1)
        try t.send(Self.get)
        try t.answer(upstream, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        #expect(try t.received() == "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    }

    @Test func aSilentBackendIs504AndASilentClientIsClosed() throws {
        let t = try Self.make()
        try t.send(Self.get)
        let upstream = try #require(t.connector.opened.first)
        t.loop.advanceTime(by: .seconds(9))
        #expect(try t.received().isEmpty)
        t.loop.advanceTime(by: .seconds(2))
        #expect(try t.received().hasPrefix("HTTP/1.1 504 Gateway Timeout\r\n"))
        #expect(!upstream.isActive && t.client.isActive)
        // A head that does not complete within the header timeout closes the connection.
        try t.send("GET / HTTP/1.1\r\nHost: foo")
        t.loop.advanceTime(by: .seconds(6))
        #expect(!t.client.isActive)
    }

    @Test func localAnswers() throws {
        let t = try Self.make()
        try t.send("GET / HTTP/1.1\r\nHost: nothere.plane.test\r\n\r\n")
        #expect(try t.received().hasPrefix("HTTP/1.1 404 Not Found\r\n"))
        try t.send("CONNECT a:1 HTTP/1.1\r\nHost: a\r\n\r\n")
        #expect(try t.received().hasPrefix("HTTP/1.1 405 Method Not Allowed\r\n"))
        #expect(!t.client.isActive)
        #expect(t.connector.opened.isEmpty)
    }
}
