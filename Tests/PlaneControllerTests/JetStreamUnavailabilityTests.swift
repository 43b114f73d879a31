import NATS
@testable import PlaneController
import Testing

/// Which JetStream failures a starting controller waits out (pure).
struct JetStreamUnavailabilityTests {
    func api(_ status: Int, _ code: Int) -> NATSError {
        NATSError(.jetStream, "JetStream STREAM.INFO.backend_status failed.", cause: JetStreamAPIError(code: status, errorCode: code, errorDescription: "x"))
    }

    @Test func waitingHelpsOnlyWhereAClusterIsStillForming() {
        #expect(JetStreamUnavailability(NATSError(.timeout, "No reply")) == .notAnswering)
        #expect(JetStreamUnavailability(NATSError(.connectionLost, "lost")) == .notAnswering)
        #expect(JetStreamUnavailability(api(503, 10008)) == .noLeader, "temporarily unavailable")
        #expect(JetStreamUnavailability(api(503, 10999)) == .noLeader, "another 503")
        #expect(JetStreamUnavailability(api(503, 10023)) == .cannotPlace, "insufficient resources")
        #expect(JetStreamUnavailability(api(400, 10005)) == .cannotPlace, "no suitable peers")
        // What waiting cannot change ends the start at once.
        #expect(JetStreamUnavailability(api(503, 10076)) == nil, "JetStream not enabled")
        #expect(JetStreamUnavailability(api(503, 10039)) == nil, "not enabled for the account")
        #expect(JetStreamUnavailability(api(400, 10058)) == nil, "a stream of that name with another configuration")
        #expect(JetStreamUnavailability(NATSError(.jetStream, "JetStream is not available on this NATS server")) == nil, "no responders")
        #expect(JetStreamUnavailability(NATSError(.authorizationFailed, "denied")) == nil)
        #expect(JetStreamUnavailability(CancellationError()) == nil)
    }

    @Test func whatWaitingCannotFixIsNamed() {
        let missing = JetStreamUnavailability.permanentAdvice(NATSError(.jetStream, "JetStream is not available on this NATS server"))
        #expect(missing.hasSuffix("start nats-server with -js."))
        #expect(JetStreamUnavailability.permanentAdvice(api(503, 10076)).hasSuffix("start nats-server with -js."))
        let refused = JetStreamUnavailability.permanentAdvice(NATSError(.jetStream, "failed", cause: JetStreamAPIError(code: 400, errorCode: 10058, errorDescription: "stream name already in use with a different configuration")))
        #expect(refused.contains("refused") && refused.contains("already in use") && refused.contains("10058"), "\(refused)")
    }

    @Test func theAdviceNamesTheWaitAndTheReplicas() {
        #expect(JetStreamUnavailability.cannotPlace.advice(replicas: 3, waited: .seconds(120)).contains("at least 3 JetStream servers"))
        #expect(JetStreamUnavailability.noLeader.advice(replicas: 1, waited: .seconds(120)).contains("no leader for 120 s"))
        #expect(JetStreamUnavailability.notAnswering.advice(replicas: 1, waited: .seconds(20)).contains("jetstream_wait_secs"))
    }
}
