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
