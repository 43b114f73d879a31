import NIOCore
import NIOEmbedded
import Testing
@testable import NATS

/// The handshake of `NATSChannelHandler` on an `EmbeddedChannel`, without any network.
struct NATSChannelHandlerTests {
    let info = #"INFO {"server_id":"S","version":"2.9.10","headers":true,"max_payload":1048576}"# + "\r\n"

    func setUp(server: NATSServerURL = NATSServerURL(host: "127.0.0.1"), tlsRequired: Bool = false) throws -> (EmbeddedChannel, EventLoopFuture<NATSServerInfo>, NATSClient) {
        let channel = EmbeddedChannel()
        let client = try NATSClient(configuration: NATSClientConfiguration(servers: [server], auth: .token("t0k")))
        let promise = channel.eventLoop.makePromise(of: NATSServerInfo.self)
        let handshake = NATSHandshake(
            server: server,
            connectPayload: { info in NATSClient.makeConnectPayload(configuration: client.configuration, server: server, info: info) },
            tlsContext: nil, tlsRequiredByClient: tlsRequired, promise: promise)
        try channel.pipeline.syncOperations.addHandler(NATSChannelHandler(handshake: handshake, client: client))
        return (channel, promise.futureResult, client)
    }

    func outbound(_ channel: EmbeddedChannel) throws -> String {
        var text = ""
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { text += String(buffer: buffer) }
        return text
    }

    /// An INFO right behind the handshake's PONG (nats-server sends one when its cluster
    /// changes) is handled on the event loop while the connecting task has not yet made the
    /// connection the live one: it is kept, and the install takes it over the handshake's
    /// older INFO. It was lost, and the servers the handshake advertised were tried.
    @Test func anInfoBeforeTheConnectionIsInstalledIsNotLost() async throws {
        let server = NATSServerURL(host: "127.0.0.1")
        let (channel, future, client) = try setUp(server: server)
        try channel.writeInbound(ByteBuffer(string: #"INFO {"server_id":"S","connect_urls":["10.0.0.1:4222"]}"# + "\r\n"))
        _ = try outbound(channel)
        try channel.writeInbound(ByteBuffer(string: "PONG\r\n" + #"INFO {"server_id":"S","connect_urls":["10.0.0.2:4222"]}"# + "\r\n"))
        let handshakeInfo = try await future.get()
        #expect(handshakeInfo.connectURLs == ["10.0.0.1:4222"], "the handshake completed with the first INFO")
        try client.install(channel: channel, info: handshakeInfo, server: server)
        #expect(client.state.withLock { $0.pool.servers.map(\.host) } == ["127.0.0.1", "10.0.0.2"])
        #expect(client.serverInfo?.connectURLs == ["10.0.0.2:4222"])
        await client.close()
    }

    @Test func handshakeSendsConnectThenPingAndCompletesOnPong() throws {
        let (channel, future, client) = try setUp()
        _ = client
        try channel.writeInbound(ByteBuffer(string: info))
        let sent = try outbound(channel)
        #expect(sent.hasPrefix("CONNECT {"))
        #expect(sent.contains(#""auth_token":"t0k""#))
        #expect(sent.hasSuffix("}\r\nPING\r\n"))
        // A server PING during the handshake is answered.
        try channel.writeInbound(ByteBuffer(string: "PING\r\n"))
        #expect(try outbound(channel) == "PONG\r\n")
        try channel.writeInbound(ByteBuffer(string: "PONG\r\n"))
        let result = try future.wait()
        #expect(result.serverID == "S")
        _ = try? channel.finish()
    }

    @Test func authorizationErrorFailsTheHandshake() throws {
        let (channel, future, client) = try setUp()
        _ = client
        try channel.writeInbound(ByteBuffer(string: info))
        _ = try outbound(channel)
        try channel.writeInbound(ByteBuffer(string: "-ERR 'Authorization Violation'\r\n"))
        let error = try #require(throws: NATSError.self) { try future.wait() }
        #expect(error.code == .authorizationFailed)
        #expect(!channel.isActive)
    }

    @Test func tlsRequiredButNotOfferedFails() throws {
        let (channel, future, client) = try setUp(tlsRequired: true)
        _ = client
        try channel.writeInbound(ByteBuffer(string: info))
        let error = try #require(throws: NATSError.self) { try future.wait() }
        #expect(error.code == .tlsFailed)
        #expect(error.message.contains("does not offer it"))
    }

    @Test func somethingOtherThanNATSFails() throws {
        let (channel, future, client) = try setUp()
        _ = client
        _ = try? channel.writeInbound(ByteBuffer(string: "HTTP/1.1 400 Bad Request\r\n"))
        let error = try #require(throws: NATSError.self) { try future.wait() }
        #expect(error.code == .protocolError)
    }
}
