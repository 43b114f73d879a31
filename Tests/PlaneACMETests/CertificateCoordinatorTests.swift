import Foundation
import Logging
import NATS
import PlaneACME
import PlaneCore
import PlaneMessaging
import PlaneTestSupport
import Testing

/// The JetStream lease and shared certificate on a real nats-server, and what the
/// refresher does with them when the CA cannot be reached.
@Suite(.timeLimit(.minutes(2)))
struct CertificateCoordinatorTests {
    @Test func exactlyOneDroneHoldsTheLeaseUntilItLapsesOrIsReleased() async throws {
        try await withNATSServer { server in
            let client = try await server.connectedClient()
            let a = try await CertificateCoordinator.open(jetStream: JetStream(client: client), cluster: "plane.test", droneID: "drone-a")
            let b = try await CertificateCoordinator.open(jetStream: JetStream(client: client), cluster: "plane.test", droneID: "drone-b")
            let other = try await CertificateCoordinator.open(jetStream: JetStream(client: client), cluster: "other.test", droneID: "drone-b")
            // The coordinator's clock is given: a machine busy enough to take a second
            // between two calls cannot let a lease lapse early.
            let start = Date()
            let leaseA = try #require(try await a.acquire(now: start))
            #expect(try await b.acquire(now: start) == nil)
            // Leases are per cluster.
            #expect(try await other.acquire(now: start) != nil)
            // The holder may take it again (it renews it).
            let renewed = try #require(try await a.acquire(now: start))
            // Held past a failure: nobody else gets it until then, and anybody after.
            await a.hold(renewed, until: start.addingTimeInterval(1))
            #expect(try await b.acquire(now: start.addingTimeInterval(0.9)) == nil)
            let leaseB = try #require(try await b.acquire(now: start.addingTimeInterval(1.1)))
            #expect(try await a.acquire(now: start.addingTimeInterval(1.1)) == nil)
            // A stale lease handle cannot release someone else's lease.
            await a.release(leaseA)
            #expect(try await a.acquire() == nil)
            await b.release(leaseB)
            #expect(try await a.acquire() != nil)
            await client.close()
        }
    }

    @Test func theSharedCertificateRoundTrips() async throws {
        try await withNATSServer { server in
            let client = try await server.connectedClient()
            let coordinator = try await CertificateCoordinator.open(jetStream: JetStream(client: client), cluster: "plane.test", droneID: "drone-a")
            #expect(try await coordinator.sharedCertificate() == nil)
            let directory = try TestEnvironment.temporaryDirectory("plane-acme-shared")
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let made = try await TestCertificates.generate(in: directory, names: ["DNS:*.plane.test", "DNS:plane.test"])
            let bundle = try CertificateBundle(keyPEM: try String(contentsOfFile: made.serverKey, encoding: .utf8),
                                               chainPEM: try String(contentsOfFile: made.serverCertificate, encoding: .utf8))
            try await coordinator.share(bundle)
            let reader = try await CertificateCoordinator.open(jetStream: JetStream(client: client), cluster: "plane.test", droneID: "drone-b")
            #expect(try await reader.sharedCertificate() == bundle)
            await client.close()
        }
    }

    /// A CA that cannot be reached: the drone that tried keeps the lease over its backoff,
    /// so the other drone does not try too (the fleet retries at one drone's pace).
    @Test func afterAFailedOrderTheOtherDronesWait() async throws {
        try await withNATSServer { server in
            let directory = try TestEnvironment.temporaryDirectory("plane-acme-fail")
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let deadPort = try TestEnvironment.freePort()
            func refresher(_ drone: String) async throws -> CertificateRefresher {
                var configuration = ACMEConfiguration(server: "http://127.0.0.1:\(deadPort)/dir", adminEmail: "admin@plane.test")
                configuration.retryInterval = .seconds(30)
                var logger = Logger(label: "test.refresher")
                logger.logLevel = .critical
                let client = try await server.connectedClient()
                let issuer = CertificateIssuer(client: try ACMEClient(directoryURL: configuration.server, logger: logger),
                                               accounts: ACMEAccountStore(stateDirectory: "\(directory)/\(drone)"),
                                               challenges: NATSChallengePublisher(messenger: PlaneMessenger(client: client)),
                                               configuration: configuration, logger: logger)
                return CertificateRefresher(cluster: "plane.test", droneID: try DroneID(drone), files: CertificateFiles(keyPath: "\(directory)/\(drone)/key.pem", certificatePath: "\(directory)/\(drone)/cert.pem"),
                                            issuer: issuer, jetStream: JetStream(client: client), metrics: ACMEMetrics(), logger: logger)
            }
            let a = try await refresher("drone-a"), b = try await refresher("drone-b")
            let retry = await a.refreshOnce()
            #expect(a.metrics.attempts == 1 && a.metrics.failures == 1)
            #expect(retry >= .seconds(24) && retry <= .seconds(36))
            #expect(await b.refreshOnce() == b.policy.followerInterval)
            #expect(b.metrics.attempts == 0)
            await a.issuer.client.shutdown()
            await b.issuer.client.shutdown()
        }
    }
}
