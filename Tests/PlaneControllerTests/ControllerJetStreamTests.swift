import Logging
import NATS
import PlaneController
import PlaneTestSupport
import Synchronization
import Testing

/// What the controller does when JetStream does not answer or is missing.
@Suite(.timeLimit(.minutes(3)))
struct ControllerJetStreamTests {
    func controller(_ server: NATSServerProcess, _ client: NATSClient, wait: Duration = .seconds(20), replicas: Int = 1) -> Controller {
        var logger = Logger(label: "test.controller")
        logger.logLevel = .critical
        var scheduler = SchedulerConfiguration()
        scheduler.jetStreamWait = wait
        scheduler.replicas = replicas
        return Controller(configuration: ControllerConfiguration(nats: server.clientConfiguration(), scheduler: scheduler),
                          client: client, logger: logger)
    }

    /// A JetStream API that takes the requests and never answers (as a busy server or a
    /// cluster without a JetStream leader): asked again, 1 s then 2 s apart, until
    /// `jetstream_wait_secs` (20 s here) would pass, then an error that says so. With
    /// nothing on the API at all, no retry: the error says to enable JetStream.
    @Test func aSilentJetStreamIsAskedUntilTheWaitEndsAndAMissingOneOnce() async throws {
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
                #expect(error.code == .unavailable && error.message.hasPrefix("JetStream did not answer the controller for "), "\(error)")
            }
            // Each attempt's first call waits out the 5 s JetStream timeout: 0–5 s, 6–11 s,
            // 13–18 s; a fourth, after 4 s more, would end beyond the 20 s.
            let took = ContinuousClock.now - started
            #expect(took >= .seconds(17) && took < .seconds(40), "\(took)")
            #expect(asked.withLock { $0 } == 3)

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

    /// A controller started with its NATS cluster, before the cluster can hold JetStream
    /// (two of three servers down: no leader, too few servers for replicas = 3), waits for
    /// it and starts once the servers are back, 35 s later. Until December 2026 it gave up
    /// after four unanswered attempts (about 23 s) or at JetStream's first 503 ("temporarily
    /// unavailable"), whichever came first: a CI run had both controllers of a chaos test
    /// exit that way.
    @Test func aControllerStartedBeforeItsClusterHoldsJetStreamWaitsForIt() async throws {
        let servers = try await NATSServerProcess.startCluster(size: 3)
        do {
            for server in servers.dropFirst() { await server.kill9() }
            let client = try await servers[0].connectedClient()
            let controller = controller(servers[0], client, wait: .seconds(100), replicas: 3)
            let started = ContinuousClock.now
            async let start: Void = controller.start()
            try await Task.sleep(for: .seconds(35))
            for server in servers.dropFirst() { try await server.startAgain() }
            do {
                try await start
                #expect(ContinuousClock.now - started >= .seconds(35), "it started without the cluster")
                // Its buckets are there, with the replicas asked for.
                let info = try await JetStream(client: client).streamInfo("KV_plane_locks")
                #expect(info?.config.replicas == 3)
            } catch {
                Issue.record("the controller did not wait for JetStream: \(error)")
            }
            await controller.stop()
            await client.close()
        } catch {
            Issue.record("\(error)")
        }
        for server in servers { await server.shutdown() }
    }
}
