import NIOCore
import NIOEmbedded
@testable import PlaneProxy
import Testing

/// The first bytes on the TLS port: a handshake passes on untouched (and the handler steps
/// aside), plain HTTP gets a 400 that says what to do, anything else a close.
struct PlainHTTPOnTLSPortHandlerTests {
    /// Collects what passes the handler.
    final class Collector: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        var received: [ByteBuffer] = []
        func channelRead(context: ChannelHandlerContext, data: NIOAny) { received.append(unwrapInboundIn(data)) }
    }

    func make() throws -> (EmbeddedChannel, Collector) {
        let collector = Collector()
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(PlainHTTPOnTLSPortHandler())
        try channel.pipeline.syncOperations.addHandler(collector)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 443)).wait()
        return (channel, collector)
    }

    @Test func aHandshakePassesOnAndTheHandlerStepsAside() throws {
        let (channel, collector) = try make()
        let hello = ByteBuffer(bytes: [0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5])
        try channel.writeInbound(hello)
        try channel.writeInbound(ByteBuffer(string: "GET"))
        #expect(collector.received == [hello, ByteBuffer(string: "GET")])
        #expect(throws: (any Error).self) { try channel.pipeline.syncOperations.handler(type: PlainHTTPOnTLSPortHandler.self) }
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil && channel.isActive)
    }

    @Test func plainHTTPGetsA400AndAClose() throws {
        let (channel, collector) = try make()
        try channel.writeInbound(ByteBuffer(string: "GET / HTTP/1.1\r\nHost: a.plane.test\r\n\r\n"))
        let answer = try #require(try channel.readOutbound(as: ByteBuffer.self))
        let text = String(buffer: answer)
        #expect(text.hasPrefix("HTTP/1.1 400 Bad Request\r\n") && text.hasSuffix("\r\n\r\nThis port speaks HTTPS: send the request over TLS.\r\n"))
        #expect(text.contains("Content-Length: 52\r\n") && text.contains("Connection: close\r\n"))
        #expect(!channel.isActive && collector.received.isEmpty)
    }

    @Test func otherBytesGetAClose() throws {
        let (channel, collector) = try make()
        try channel.writeInbound(ByteBuffer(bytes: [0x01, 0x02, 0x16]))
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil)
        #expect(!channel.isActive && collector.received.isEmpty)
    }

    @Test func firstBytes() {
        #expect(PlainHTTPOnTLSPortHandler.FirstByte(0x16) == .tls)
        for method in ["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT", "PRI"] {
            #expect(PlainHTTPOnTLSPortHandler.FirstByte(method.utf8.first!) == .plainHTTP)
        }
        for byte: UInt8 in [0x00, 0x15, 0x17, 0x80, 0xFF, UInt8(ascii: "g"), UInt8(ascii: " ")] {
            #expect(PlainHTTPOnTLSPortHandler.FirstByte(byte) == .other)
        }
    }
}
