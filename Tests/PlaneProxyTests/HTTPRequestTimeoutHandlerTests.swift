import NIOCore
import NIOEmbedded
import NIOHTTP1
import PlaneHTTPServer
import Testing

/// The request timeout of the controller's HTTP API and the drone's small listeners, on
/// `EmbeddedChannel`s with the loop's clock moved by hand: a connection closes when no whole
/// request arrives in time (silent, a head without its end, between requests), never while
/// a request is being answered.
struct HTTPRequestTimeoutHandlerTests {
    final class TimeoutLog {
        var requestBegun: [Bool] = []
    }

    func channel(_ log: TimeoutLog = TimeoutLog()) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(HTTPRequestTimeoutHandler(limit: .seconds(30)) { log.requestBegun.append($0) })
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 80)).wait()
        return channel
    }

    static let head = HTTPServerRequestPart.head(HTTPRequestHead(version: .http1_1, method: .POST, uri: "/ctrl/connect"))
    static let responseHead = HTTPServerResponsePart.head(HTTPResponseHead(version: .http1_1, status: .ok))

    @Test func aSilentConnectionClosesAfterTheLimit() throws {
        let log = TimeoutLog()
        let channel = try channel(log)
        channel.embeddedEventLoop.advanceTime(by: .seconds(29))
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        #expect(!channel.isActive)
        #expect(log.requestBegun == [false])
    }

    @Test func aRequestWhoseEndDoesNotComeInTimeIsCutOff() throws {
        let log = TimeoutLog()
        let channel = try channel(log)
        channel.embeddedEventLoop.advanceTime(by: .seconds(10))
        try channel.writeInbound(Self.head)
        try channel.writeInbound(HTTPServerRequestPart.body(ByteBuffer(string: "{")))
        channel.embeddedEventLoop.advanceTime(by: .seconds(20))
        #expect(!channel.isActive, "the limit counts from waiting for the request, not from its head")
        #expect(log.requestBegun == [true])
    }

    @Test func aRequestBeingAnsweredHasNoLimitAndTheNextOneGetsItsOwn() throws {
        let log = TimeoutLog()
        let channel = try channel(log)
        try channel.writeInbound(Self.head)
        try channel.writeInbound(HTTPServerRequestPart.end(nil))
        // A long answer (an event stream): written for an hour.
        try channel.writeOutbound(Self.responseHead)
        for _ in 0..<60 {
            channel.embeddedEventLoop.advanceTime(by: .seconds(60))
            try channel.writeOutbound(HTTPServerResponsePart.body(.byteBuffer(ByteBuffer(string: "data: x\n\n"))))
        }
        #expect(channel.isActive)
        try channel.writeOutbound(HTTPServerResponsePart.end(nil))
        // Kept alive: the next request has the whole limit again, and only it.
        channel.embeddedEventLoop.advanceTime(by: .seconds(29))
        try channel.writeInbound(Self.head)
        try channel.writeInbound(HTTPServerRequestPart.end(nil))
        channel.embeddedEventLoop.advanceTime(by: .seconds(120))
        #expect(channel.isActive)
        try channel.writeOutbound(Self.responseHead)
        try channel.writeOutbound(HTTPServerResponsePart.end(nil))
        channel.embeddedEventLoop.advanceTime(by: .seconds(30))
        #expect(!channel.isActive)
        #expect(log.requestBegun == [false])
    }

    @Test func aClosedConnectionLeavesNoTimer() throws {
        let log = TimeoutLog()
        let channel = try channel(log)
        try channel.close().wait()
        channel.embeddedEventLoop.advanceTime(by: .seconds(60))
        #expect(log.requestBegun.isEmpty)
    }
}
