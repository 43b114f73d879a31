import Logging
import NIOCore
import PlaneTestSupport
import ServiceLifecycle
import Testing
@testable import NATS

@Suite(.timeLimit(.minutes(2)))
struct NATSFaultTests {
    func client(port: Int, _ adjust: (inout NATSClientConfiguration) -> Void = { _ in }) throws -> NATSClient {
        var config = NATSClientConfiguration(servers: [NATSServerURL(host: "127.0.0.1", port: port)])
        config.reconnectWait = .milliseconds(50)
        config.maxReconnectWait = .milliseconds(200)
        adjust(&config)
        return try NATSClient(configuration: config)
    }

    @Test func staleConnectionIsDetectedByPings() async throws {
        let server = try await ScriptedNATSServer(.silentAfterHandshake)
        let client = try client(port: server.port) { $0.pingInterval = .milliseconds(100); $0.maxPingsOutstanding = 2 }
        let events = client.events()
        try await client.connect()
        var sawDisconnect = false, reconnects = 0
        for await event in events {
            if case .disconnected = event { sawDisconnect = true }
            if case .reconnected = event { reconnects += 1; if reconnects == 1 { break } }
        }
        #expect(sawDisconnect)
        #expect(server.connections >= 2, "the client replaced the stale connection")
        await client.close()
        await server.close()
    }

    /// A cluster's node that is no longer advertised (replaced, gone for good) is not tried
    /// on a reconnect: a server's `connect_urls` replaces the list it advertised before
    /// (without that, B — advertised first, then dropped — is tried before C).
    @Test func serversNoLongerAdvertisedAreNotTried() async throws {
        let dropped = try await ScriptedNATSServer(.silentAfterHandshake)
        let advertised = try await ScriptedNATSServer(.silentAfterHandshake)
        let first = try await ScriptedNATSServer(.advertisesThenCloses(first: ["127.0.0.1:\(dropped.port)"], then: ["127.0.0.1:\(advertised.port)"]))
        let client = try client(port: first.port)
        let events = client.events()
        try await client.connect()
        var reconnectedTo: String?
        for await event in events {
            if case .reconnected(let server) = event {
                reconnectedTo = server
                break
            }
        }
        #expect(reconnectedTo == "nats://127.0.0.1:\(advertised.port)")
        #expect(dropped.connections == 0, "a server no longer advertised was tried")
        await client.close()
        for server in [first, dropped, advertised] { await server.close() }
    }

    /// A server that sends `-ERR` lines without end (here 20,000 at once, then a lame-duck
    /// INFO, also repeated) costs a log line a second, not one per line: the first is logged
    /// at once, the rest counted into the next.
    @Test func aFloodOfServerErrorsIsNotAFloodOfLogLines() async throws {
        let server = try await ScriptedNATSServer(.errorsAfterHandshake(count: 20_000))
        let records = RecordingLogHandler.Records()
        var config = NATSClientConfiguration(servers: [NATSServerURL(host: "127.0.0.1", port: server.port)])
        config.reconnectWait = .milliseconds(50)
        let client = try NATSClient(configuration: config, logger: RecordingLogHandler.logger(into: records))
        let events = client.events()
        try await client.connect()
        var errors = 0, lameDucks = 0
        for await event in events {
            if case .serverError = event { errors += 1 }
            if case .lameDuckMode = event {
                lameDucks += 1
                break
            }
        }
        #expect(errors > 0 && lameDucks == 1, "the client saw the burst and the INFO after it")
        // Every -ERR before the INFO was handled by now (they arrive in order).
        #expect(records.count(of: "nats.server_error") <= 2, "\(records.count(of: "nats.server_error")) lines for one burst")
        #expect(records.count(of: "nats.server_error") >= 1, "the first server error is logged")
        await client.close()
        await server.close()
    }

    @Test func flushTimesOutWhenTheServerStopsAnswering() async throws {
        let server = try await ScriptedNATSServer(.silentAfterHandshake)
        let client = try client(port: server.port)
        try await client.connect()
        let started = ContinuousClock.now
        let error = try await #require(throws: NATSError.self) { try await client.flush(timeout: .milliseconds(300)) }
        #expect(error.code == .timeout)
        // The stale-connection detection would take 60 s (2 × the 30 s ping interval); the
        // bound sits far from both, since a loaded CI run once took 6 s for the 300 ms.
        #expect(ContinuousClock.now - started < .seconds(30), "the timeout is honoured, not the stale-connection detection")
        #expect(client.isConnected)
        await client.close()
        await server.close()
    }

    @Test func protocolGarbageResetsTheConnectionWithoutCrashing() async throws {
        let server = try await ScriptedNATSServer(.garbageAfterHandshake)
        let client = try client(port: server.port)
        let events = client.events()
        try await client.connect()
        var sawError = false, sawDisconnect = false
        for await event in events {
            if case .serverError(let text) = event, text.contains("Unknown protocol operation") { sawError = true }
            if case .disconnected = event { sawDisconnect = true }
            if case .reconnected = event { break }
        }
        #expect(sawError && sawDisconnect)
        await client.close()
        await server.close()
    }

    @Test func serviceDrainsOnGracefulShutdown() async throws {
        try await withNATSServer { server in
            let client = try NATSClient(configuration: server.clientConfiguration())
            let group = ServiceGroup(services: [client], logger: Logger(label: "test"))
            let run = Task { try await group.run() }
            let deadline = ContinuousClock.now + .seconds(10)
            while !client.isConnected, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
            let sub = try await client.subscribe(to: "svc.drain")
            try await client.publish("svc.drain", payload: [7])
            try await client.flush()
            await group.triggerGracefulShutdown()
            try await run.value
            var got: [[UInt8]] = []
            for await m in sub { got.append(m.bytes) }
            #expect(got == [[7]], "the buffered message was still delivered while draining")
            #expect(!client.isConnected)
        }
    }
}
