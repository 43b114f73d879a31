import NIOCore
import Testing
@testable import NATS

struct NATSProtocolParserTests {
    static let stream: String =
        "INFO {\"server_id\":\"S1\",\"version\":\"2.9.10\",\"headers\":true,\"max_payload\":1048576,\"jetstream\":true,\"connect_urls\":[\"127.0.0.1:4223\"]}\r\n"
        + "+OK\r\nPING\r\nPONG\r\n"
        + "MSG foo.bar 9 12\r\nhello\r\nworld\r\n"
        + "MSG foo 1 reply.to 0\r\n\r\n"
        + "HMSG inbox.1 2 30 32\r\nNATS/1.0 503\r\nA: b\r\nCc:  d\r\n\r\nhi\r\n"
        + "HMSG x 3 r 31 31\r\nNATS/1.0 100 Idle Heartbeat\r\n\r\n\r\n"
        + "-ERR 'Authorization Violation'\r\n"

    static func expected() -> [NATSServerOp] {
        var info = NATSServerInfo(serverID: "S1", version: "2.9.10")
        info.jetStream = true
        info.connectURLs = ["127.0.0.1:4223"]
        var h503 = NATSHeaders()
        h503.status = 503
        h503.append("A", "b")
        h503.append("Cc", "d")
        var hb = NATSHeaders()
        hb.status = 100
        hb.statusDescription = "Idle Heartbeat"
        return [
            .info(info), .ok, .ping, .pong,
            .msg(NATSMessage(subject: "foo.bar", payload: ByteBuffer(string: "hello\r\nworld"), sid: 9)),
            .msg(NATSMessage(subject: "foo", replyTo: "reply.to", payload: ByteBuffer(), sid: 1)),
            .msg(NATSMessage(subject: "inbox.1", headers: h503, payload: ByteBuffer(string: "hi"), sid: 2)),
            .msg(NATSMessage(subject: "x", replyTo: "r", headers: hb, payload: ByteBuffer(), sid: 3)),
            .err("Authorization Violation"),
        ]
    }

    func parseAll(chunks: [[UInt8]]) throws -> [NATSServerOp] {
        var parser = NATSProtocolParser()
        var ops: [NATSServerOp] = []
        for chunk in chunks {
            parser.feed(chunk)
            while let op = try parser.next() { ops.append(op) }
        }
        return ops
    }

    @Test func wholeStreamAtOnce() throws {
        #expect(try parseAll(chunks: [Array(Self.stream.utf8)]) == Self.expected())
    }

    @Test func byteAtATime() throws {
        #expect(try parseAll(chunks: Array(Self.stream.utf8).map { [$0] }) == Self.expected())
    }

    @Test("arbitrary chunk sizes", arguments: [2, 3, 5, 7, 13, 64])
    func chunked(size: Int) throws {
        let bytes = Array(Self.stream.utf8)
        let chunks = stride(from: 0, to: bytes.count, by: size).map { Array(bytes[$0..<min($0 + size, bytes.count)]) }
        #expect(try parseAll(chunks: chunks) == Self.expected())
    }

    @Test("malformed input is a protocol error", arguments: [
        "BOGUS\r\n", "PINGX\r\n", "+OKAY\r\n", "MSG a\r\n", "MSG a notanumber 3\r\nabc\r\n", "MSG a 1 3\r\nabcd\r\n", "MSG a 1 -3\r\n",
        "HMSG a 1 10 5\r\n", "HMSG a 1 0 5\r\nhello\r\n", "HMSG a 1 5 5\r\nHELLO\r\n", "INFO {not json}\r\n",
    ])
    func malformed(text: String) {
        #expect(throws: NATSError.self) { _ = try parseAll(chunks: [Array(text.utf8)]) }
    }

    @Test func overlongControlLineIsRejected() {
        let junk = [UInt8](repeating: UInt8(ascii: "A"), count: NATSProtocolParser.maximumControlLineLength + 10)
        #expect(throws: NATSError.self) { _ = try parseAll(chunks: [junk]) }
    }

    /// After a large message the parser does not keep a buffer its size: the payload it
    /// handed out stays whole, and the next message is parsed from a small buffer.
    @Test func aLargeMessageDoesNotKeepItsBuffer() throws {
        var parser = NATSProtocolParser()
        let large = [UInt8](repeating: 0x61, count: 4 << 20)
        parser.feed(Array("MSG big 1 \(large.count)\r\n".utf8) + large + Array("\r\n".utf8))
        guard case .msg(let message)? = try parser.next() else { Issue.record("no message"); return }
        #expect(message.payload.readableBytes == large.count && parser.capacity >= large.count)
        parser.feed(Array("MSG small 1 5\r\nhello\r\n".utf8))
        guard case .msg(let small)? = try parser.next() else { Issue.record("no second message"); return }
        #expect(small.string == "hello")
        #expect(parser.capacity <= NATSProtocolParser.keptCapacity, "\(parser.capacity)")
        #expect(message.bytes == large)
    }

    @Test func headersRoundTrip() throws {
        var headers: NATSHeaders = ["Nats-Msg-Id": "abc", "X-Empty": ""]
        headers.append("Multi", "1")
        headers.append("Multi", "2")
        let parsed = try NATSHeaders.parse(headers.encoded)
        #expect(parsed == headers)
        #expect(parsed["nats-msg-id"] == "abc")
        #expect(throws: NATSError.self) { try NATSHeaders(dictionaryLiteral: ("Bad Name", "x")).validate() }
        #expect(throws: NATSError.self) { try NATSHeaders(dictionaryLiteral: ("X", "a\r\nb")).validate() }
    }

    @Test func publishEncoding() {
        var buffer = ByteBuffer()
        NATSClientCommand.writePublish(subject: "a.b", replyTo: "r", headers: nil, payload: Array("hi".utf8), into: &buffer)
        #expect(String(buffer: buffer) == "PUB a.b r 2\r\nhi\r\n")
        buffer.clear()
        NATSClientCommand.writePublish(subject: "a", replyTo: nil, headers: ["K": "v"], payload: Array("xy".utf8), into: &buffer)
        #expect(String(buffer: buffer) == "HPUB a 18 20\r\nNATS/1.0\r\nK: v\r\n\r\nxy\r\n")
    }
}
