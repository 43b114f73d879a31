import PlaneCore
import RuntimePluginProtocol
import Testing

/// The protocol's framing and messages, fed byte by byte and in odd chunks.
struct PluginFrameDecoderTests {
    @Test func framesComeOutWholeHoweverTheBytesArrive() throws {
        let messages: [PluginMessage] = [
            .call(id: 1, method: "status", params: .object(JSONObject([("backend_id", .string("b1"))]))),
            .result(id: 1, .object(JSONObject([("state", .string("running"))]))),
            .item(id: 2, .string("x")),
            .end(id: 2),
            .failure(id: 3, PluginFailure(code: "not_found", message: "gone", cause: "because")),
        ]
        let bytes = messages.flatMap(\.frame)
        for chunk in [1, 3, 7, bytes.count] {
            var decoder = PluginFrameDecoder()
            var decoded: [PluginMessage] = []
            var offset = 0
            while offset < bytes.count {
                decoder.feed(bytes[offset..<min(offset + chunk, bytes.count)])
                offset += chunk
                while let payload = try decoder.next() { decoded.append(try PluginMessage.decode(payload)) }
            }
            #expect(decoded == messages, "chunks of \(chunk)")
            #expect(decoder.pendingByteCount == 0)
        }
    }

    @Test func anOversizedFrameIsAnErrorAndBadJSONIsNamed() throws {
        var decoder = PluginFrameDecoder()
        decoder.feed([0x7f, 0xff, 0xff, 0xff])
        #expect(throws: PluginProtocolError.self) { _ = try decoder.next() }
        #expect(throws: PluginProtocolError.self) { _ = try PluginMessage.decode(Array("{not json".utf8)) }
        #expect(throws: PluginProtocolError.self) { _ = try PluginMessage.decode(Array("[1]".utf8)) }
        #expect(throws: PluginProtocolError.self) { _ = try PluginMessage.decode(Array(#"{"id":-1,"result":null}"#.utf8)) }
        #expect(throws: PluginProtocolError.self) { _ = try PluginMessage.decode(Array(#"{"id":4}"#.utf8)) }
        #expect(try PluginMessage.decode(Array(#"{"id":4,"result":null}"#.utf8)) == .result(id: 4, .null))
    }
}
