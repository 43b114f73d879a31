import Testing
@testable import PlaneCore

struct WireStrictnessTests {
    let minimal = #"{"cluster":"plane.test","max_idle_secs":30,"metadata":{},"executable":{"image":"img:tag","env":{}}}"#

    func decode<T: Decodable>(_ type: T.Type, _ text: String) throws(PlaneCoreError) -> T {
        try WireDecoder().decode(type, from: Array(text.utf8))
    }

    @Test("durations must be JSON integers", arguments: ["30.0", "3e1", "-1", "\"30\"", "null", "18446744073709551616"])
    func durationRejectsNonIntegers(value: String) {
        let text = minimal.replacingOccurrences(of: "\"max_idle_secs\":30", with: "\"max_idle_secs\":\(value)")
        #expect(throws: PlaneCoreError.self) { try decode(ScheduleRequest.self, text) }
    }

    @Test func durationErrorNamesTheField() throws {
        let text = minimal.replacingOccurrences(of: "\"max_idle_secs\":30", with: "\"max_idle_secs\":30.5")
        let error = try #require(throws: PlaneCoreError.self) { try decode(ScheduleRequest.self, text) }
        #expect(error.code == .invalidDuration)
        #expect(error.field == "max_idle_secs")
        #expect(error.description.contains("whole number of seconds"))
    }

    @Test func missingRequiredFieldIsNamed() throws {
        let text = #"{"cluster":"plane.test","max_idle_secs":30,"metadata":{},"executable":{"image":"img:tag"}}"#
        let error = try #require(throws: PlaneCoreError.self) { try decode(ScheduleRequest.self, text) }
        #expect(error.code == .invalidMessage)
        #expect(error.field == "executable.env")
    }

    @Test func invalidBackendIDIsATypedError() throws {
        let text = minimal.replacingOccurrences(of: "\"cluster\":\"plane.test\"", with: "\"cluster\":\"plane.test\",\"backend_id\":\"Bad.ID\"")
        let error = try #require(throws: PlaneCoreError.self) { try decode(ScheduleRequest.self, text) }
        #expect(error.code == .invalidBackendID)
        #expect(error.field == "backend_id")
    }

    @Test func invalidClusterIsATypedError() throws {
        let text = minimal.replacingOccurrences(of: "plane.test", with: "plane_test")
        let error = try #require(throws: PlaneCoreError.self) { try decode(ScheduleRequest.self, text) }
        #expect(error.code == .invalidClusterName)
    }

    @Test("malformed JSON is an error, never a crash", arguments: [
        "", "{", "{\"cluster\":", "[1,2", "{\"a\":1}x", "\"\\uD800\"", "\"\u{01}\"", "01", "-", "1.", "tru", "{\"a\" 1}", "[1,]",
        String(repeating: "[", count: 500) + String(repeating: "]", count: 500),
    ])
    func malformedJSON(text: String) {
        #expect(throws: PlaneCoreError.self) { try JSONParser.parse(text) }
    }

    @Test func invalidUTF8IsRejected() {
        #expect(throws: PlaneCoreError.self) { try JSONParser.parse([0x22, 0xFF, 0xFE, 0x22]) }
    }

    @Test func stringEscapesMatchSerde() throws {
        let value = JSONValue.string("a/b \"q\" \\ \n\t\u{01}\u{7F} é 😀")
        #expect(JSONWriter.string(value) == "\"a/b \\\"q\\\" \\\\ \\n\\t\\u0001\u{7F} é 😀\"")
        #expect(try JSONParser.parse(JSONWriter.string(value)) == value)
        #expect(try JSONParser.parse(#""\ud83d\ude00\u00e9""#) == .string("😀é"))
    }

    @Test("floats are written like serde_json (ryu)", arguments: [
        (0.0, "0.0"), (100.0, "100.0"), (0.0371, "0.0371"), (1.284, "1.284"), (1e-5, "0.00001"), (1e-6, "1e-6"), (1.5e-7, "1.5e-7"),
        (12345678.9, "12345678.9"), (1e16, "1e16"), (1.2345e20, "1.2345e20"), (0.001, "0.001"), (-2.5, "-2.5"), (123.0, "123.0"),
    ])
    func floatFormatting(value: Double, expected: String) {
        #expect(JSONValue.double(value) == .number(expected))
    }

    @Test func scheduleResponseRejectsUnknownVariant() {
        #expect(throws: PlaneCoreError.self) { try decode(ScheduleResponse.self, #""Maybe""#) }
        #expect(throws: PlaneCoreError.self) { try decode(ScheduleResponse.self, #"{"Other":{}}"#) }
    }

    @Test func backendStateParsingIsCaseSensitive() {
        #expect(throws: PlaneCoreError.self) { try decode(BackendState.self, #""ready""#) }
        #expect(throws: Never.self) { try decode(BackendState.self, #""TimedOutBeforeReady""#) }
    }

    @Test func nanStatsBecomeNull() throws {
        let stats = BackendStatsMessage(backendID: "b", cpuUsePercent: .nan, memUsePercent: 2)
        let text = String(decoding: try WireEncoder().encode(stats), as: UTF8.self)
        #expect(text == #"{"backend_id":"b","cpu_use_percent":null,"mem_use_percent":2.0}"#)
        let back = try decode(BackendStatsMessage.self, text)
        #expect(back.cpuUsePercent.isNaN)
    }

    /// `idle_secs` (our addition) is omitted when unknown; a peer's odd value is no value.
    @Test func idleSecondsInStatsAreOptionalAndChecked() throws {
        let stats = BackendStatsMessage(backendID: "b", cpuUsePercent: 1, memUsePercent: 2, idleSeconds: 4.5)
        #expect(String(decoding: try WireEncoder().encode(stats), as: UTF8.self) == #"{"backend_id":"b","cpu_use_percent":1.0,"mem_use_percent":2.0,"idle_secs":4.5}"#)
        #expect(try decode(BackendStatsMessage.self, #"{"backend_id":"b","cpu_use_percent":1.0,"mem_use_percent":2.0,"idle_secs":4.5}"#).idleSeconds == 4.5)
        #expect(try decode(BackendStatsMessage.self, #"{"backend_id":"b","cpu_use_percent":1.0,"mem_use_percent":2.0}"#).idleSeconds == nil)
        for odd in ["-1", "\"soon\"", "1e999", "null"] {
            #expect(try decode(BackendStatsMessage.self, #"{"backend_id":"b","cpu_use_percent":1.0,"mem_use_percent":2.0,"idle_secs":"# + odd + "}").idleSeconds == nil, "\(odd)")
        }
        let unknown = BackendStatsMessage(backendID: "b", cpuUsePercent: 1, memUsePercent: 2)
        #expect(!String(decoding: try WireEncoder().encode(unknown), as: UTF8.self).contains("idle_secs"))
    }

    @Test func nullReplyIsTheNullLiteral() throws {
        #expect(try WireEncoder().encode(NullReply()) == Array("null".utf8))
        #expect(throws: Never.self) { try decode(NullReply.self, "null") }
        #expect(throws: PlaneCoreError.self) { try decode(NullReply.self, "true") }
    }
}
