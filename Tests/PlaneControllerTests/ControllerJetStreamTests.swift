import Logging
import NATS
import PlaneController
import PlaneTestSupport
import Synchronization
import Testing

/// What the controller does when JetStream does not answer or is missing.
@Suite(.timeLimit(.minutes(3)))
struct ControllerJetStreamTests {
    func controller(_ server: NATSServerProcess, _ client: NATSClient) -> Controller {
        var logger = Logger(label: "test.controller")
        logger.logLevel = .critical
        return Controller(configuration: ControllerConfiguration(nats: server.clientConfiguration(), scheduler: SchedulerConfiguration()),
                          client: client, logger: logger)
    }

    /// A JetStream API that takes the requests and never answers (as a busy server or a
    /// cluster without a JetStream leader): four attempts a second apart, then an error that
    /// says so. With nothing on the API at all, no retry: the error says to enable JetStream.
    @Test func aSilentJetStreamIsAskedFourTimesAndAMissingOneOnce() async throws {
        var options = NATSServerProcess.Options()
        options.jetStream = false
        try await withNATSServer(options) { server in
            let silent = try await server.connectedClient()
            let api = try await silent.subscribe(to: "$JS.API.>")
            let asked = Mutex(0)
            let counter = Task { for await _ in api { asked.withLock { $0 += 1 } } }
            let client = try await server.connectedClient()
            let started = ContinuousClock.now
            do {
                try await controller(server, client).start()
                Issue.record("the controller started without JetStream")
            } catch let error as ControllerError {
                #expect(error.code == .unavailable && error.message.hasPrefix("JetStream did not answer the controller in four attempts"), "\(error)")
            }
            // Each attempt's first call waits out the 5 s JetStream timeout; a second between.
            #expect(ContinuousClock.now - started >= .seconds(23))
            #expect(asked.withLock { $0 } == 4)

            try api.unsubscribe()
            counter.cancel()
            do {
                try await controller(server, client).start()
                Issue.record("the controller started without JetStream")
            } catch let error as ControllerError {
                #expect(error.code == .unavailable && error.message.hasSuffix("start nats-server with -js."), "\(error)")
            }
            await client.close()
            await silent.close()
        }
    }
}
