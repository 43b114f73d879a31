import Logging
import PlaneCore
@testable import PlaneMessaging
import Testing

/// `LogForwarding` and `ForwardingLogHandler` without NATS: what an event becomes, which
/// ones go, and the two bounds (rate and buffer).
struct LogForwardingTests {
    func logger(_ label: String, _ forwarding: LogForwarding, level: Logger.Level = .trace) -> Logger {
        Logger(label: label) { ForwardingLogHandler(label: $0, level: level, forwarding: forwarding) }
    }

    func drain(_ stream: AsyncStream<LogMessage>, _ forwarding: LogForwarding) async -> [LogMessage] {
        forwarding.stop()
        var messages: [LogMessage] = []
        for await message in stream { messages.append(message) }
        return messages
    }

    @Test func anEventBecomesALogMessage() async throws {
        let forwarding = LogForwarding()
        let stream = try #require(forwarding.start(settings: .init(level: .info)))
        var log = logger("plane.drone", forwarding)
        log[metadataKey: "plane.drone"] = "d1"
        log.info("backend.state", metadata: ["plane.backend": "b1", "plane.count": .stringConvertible(3), "plane.list": ["a", "b"]])
        log.debug("not.forwarded")
        log.warning("a.warning")
        log.notice("a.notice")
        log.critical("a.critical")
        let messages = await drain(stream, forwarding)
        #expect(messages.map(\.severity) == [.info, .warn, .info, .error])
        let first = try #require(messages.first)
        #expect(first.target == "plane.drone" && first.name.hasPrefix("event PlaneMessagingTests/LogForwardingTests.swift:"))
        #expect(first.fields["message"] == .string("backend.state") && first.fields["plane.backend"] == .string("b1"))
        #expect(first.fields["plane.count"] == .string("3") && first.fields["plane.list"] == .array([.string("a"), .string("b")]))
        #expect(first.fields["plane.drone"] == .string("d1"))
        // The wire form is v0.3.10's (the publisher sets the component).
        var published = first
        published.component = .drone("d1")
        let json = String(decoding: try WireEncoder().encode(published), as: UTF8.self)
        #expect(json.hasPrefix(#"{"component":{"type":"Drone","drone_id":"d1"},"target":"plane.drone","name":"event "#) && json.contains(#""severity":"INFO""#))
    }

    @Test func offForwardsNothingAndTheNATSClientIsNeverForwarded() async throws {
        let forwarding = LogForwarding()
        #expect(forwarding.start(settings: .init(level: nil)) == nil)
        logger("plane.controller", forwarding).error("nobody.listens")
        let stream = try #require(forwarding.start(settings: .init(level: .trace)))
        logger("plane.nats", forwarding).error("nats.reconnecting")
        logger("plane.controller", forwarding).trace("goes")
        let messages = await drain(stream, forwarding)
        #expect(messages.map { $0.fields["message"] } == [.string("goes")])
        // Stopped: nothing more is taken.
        logger("plane.controller", forwarding).error("after.stop")
        #expect(forwarding.dropped == 0)
    }

    @Test func theRateAndTheBufferBoundWhatWaits() async throws {
        let forwarding = LogForwarding()
        let stream = try #require(forwarding.start(settings: .init(level: .info, maxPerSecond: 5, bufferSize: 100)))
        let log = logger("plane.controller", forwarding)
        for index in 0..<20 { log.info("event", metadata: ["index": "\(index)"]) }
        let messages = await drain(stream, forwarding)
        #expect(messages.count == 5 && forwarding.dropped == 15)
        #expect(messages.map { $0.fields["index"] } == (0..<5).map { .string("\($0)") })

        let small = LogForwarding()
        let held = try #require(small.start(settings: .init(level: .info, maxPerSecond: 1000, bufferSize: 3)))
        let smallLog = logger("plane.controller", small)
        for _ in 0..<10 { smallLog.info("event") }
        #expect(await drain(held, small).count == 3 && small.dropped == 7)
    }
}
