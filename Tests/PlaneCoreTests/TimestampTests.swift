import Testing
@testable import PlaneCore

struct TimestampTests {
    @Test("chrono formatting round-trips", arguments: [
        "2023-02-18T17:03:14.518207339Z", "2023-02-18T17:03:12.000411Z", "2023-02-18T17:03:12.123Z",
        "2023-02-18T17:03:12Z", "1970-01-01T00:00:00Z", "2000-02-29T23:59:59.999999999Z", "1969-12-31T23:59:59.5Z".replacingOccurrences(of: ".5Z", with: ".500Z"),
    ])
    func roundTrip(text: String) throws {
        #expect(try Timestamp(rfc3339: text).rfc3339 == text)
    }

    @Test func knownValues() throws {
        let t = try Timestamp(rfc3339: "2023-02-18T17:03:14.518207339Z")
        #expect(t.secondsSinceEpoch == 1_676_739_794)
        #expect(t.nanoseconds == 518_207_339)
        #expect(t.displayString == "2023-02-18 17:03:14.518207339 UTC")
        #expect(try Timestamp(rfc3339: "1969-12-31T23:59:59Z").secondsSinceEpoch == -1)
    }

    @Test func offsetsAreConvertedToUTC() throws {
        #expect(try Timestamp(rfc3339: "2023-02-18T18:03:14.5+01:00").rfc3339 == "2023-02-18T17:03:14.500Z")
        #expect(try Timestamp(rfc3339: "2023-02-18T16:33:14-00:30").rfc3339 == "2023-02-18T17:03:14Z")
        #expect(try Timestamp(rfc3339: "2023-02-18t17:03:14.1234z").rfc3339 == "2023-02-18T17:03:14.123400Z")
    }

    @Test("invalid timestamps", arguments: [
        "", "2023-02-18", "2023-02-18T17:03:14", "2023-13-01T00:00:00Z", "2023-02-30T00:00:00Z", "2023-02-18T24:00:00Z",
        "2023-02-18T17:03:14.Z", "2023-02-18T17:03:14.1234567891Z", "2023-02-18T17:03:14Zx", "2023-02-18T17:03:14+0100",
    ])
    func invalid(text: String) throws {
        let error = try #require(throws: PlaneCoreError.self) { try Timestamp(rfc3339: text) }
        #expect(error.code == .invalidTimestamp)
    }

    @Test func nowIsRecent() throws {
        let now = Timestamp.now()
        #expect(now.secondsSinceEpoch > 1_700_000_000)
        #expect(try Timestamp(rfc3339: now.rfc3339) == now)
    }

    @Test func durationRounding() {
        #expect(DurationSeconds(.milliseconds(1499)).seconds == 1)
        #expect(DurationSeconds(.milliseconds(1500)).seconds == 2)
        #expect(DurationSeconds(.seconds(-3)).seconds == 0)
    }

    @Test func backendOutputLinesTakeV0310sTimestampedForm() throws {
        let time = try Timestamp(rfc3339: "2023-02-18T17:03:13.871622051Z")
        let message = DroneLogMessage(backendID: "b1", kind: .stdout, line: "Listening on 0.0.0.0:8080", time: time)
        #expect(message.text == "2023-02-18T17:03:13.871622051Z Listening on 0.0.0.0:8080\n")
        #expect(message.line.time == time && message.line.text == "Listening on 0.0.0.0:8080")
        // Text without the form (an older drone's) is the line itself.
        #expect(DroneLogMessage(backendID: "b1", kind: .stdout, text: "plain words").line.text == "plain words")
        let notATime = DroneLogMessage(backendID: "b1", kind: .stdout, text: "2023 is a year\n").line
        #expect(notATime.time == nil && notATime.text == "2023 is a year")
        #expect(DroneLogMessage(backendID: "b1", kind: .stderr, text: "").line.text == "")
    }
}
