import Logging
import NATS
import NIOPosix
import PlaneController
import PlaneCore
import PlaneDNS
import PlaneMessaging
import PlaneTestSupport
import Testing

/// The controller's DNS server fed over NATS (spec §11.3 with records published the way
/// drones publish them), `acme.set_dns_record`, and the replay after a restart.
@Suite(.serialized) struct ControllerDNSTests {
    func dnsController(_ server: NATSServerProcess) async throws -> RunningController {
        try await RunningController(server: server) { configuration in
            configuration.scheduler = nil
            var dns = ControllerDNSConfiguration()
            dns.server = DNSServerConfiguration(bindHost: "127.0.0.1", port: 0)
            dns.server.udpSockets = 1
            dns.mailbox = try? DNSAuthority.mailbox(fromEmail: "admin@plane.test")
            configuration.dns = dns
        }
    }

    func dig(_ controller: RunningController, _ arguments: String...) async throws -> String {
        try await SystemProgram.dig.run(["@127.0.0.1", "-p", "\(try port(of: controller))", "+time=3", "+tries=2"] + arguments)
    }

    func port(of controller: RunningController) throws -> Int {
        try #require(controller.controller.dnsServer?.boundAddress?.port)
    }

    @Test func recordsFromDronesAndACME() async throws {
        try await withCluster { server in
            let controller = try await dnsController(server)
            let drone = PlaneMessenger(client: try await server.connectedClient())
            try await drone.publish(PlaneSubjects.dns("plane.test", .a), SetDnsRecord(cluster: "plane.test", kind: .a, name: "louie", value: "12.12.12.12"))
            try await drone.publish(PlaneSubjects.dns("plane.test", .a), SetDnsRecord(cluster: "plane.test", kind: .a, name: "louie", value: "14.14.14.14"))
            try await drone.publish(PlaneSubjects.dns("plane.test", .a), SetDnsRecord(cluster: "plane.test", kind: .a, name: "six", value: "2001:db8::6"))
            try await drone.publish(PlaneSubjects.dns("plane.test", .txt), SetDnsRecord(cluster: "plane.test", kind: .txt, name: "_acme-challenge", value: "foobar"))
            try await drone.client.flush()
            #expect(try await eventually { try await dig(controller, "+short", "A", "louie.plane.test") == "14.14.14.14\n" })
            #expect(try await dig(controller, "+short", "AAAA", "six.plane.test") == "2001:db8::6\n")
            #expect(try await dig(controller, "+tcp", "+short", "TXT", "_acme-challenge.plane.test") == "\"foobar\"\n")
            let soa = try await dig(controller, "+noall", "+answer", "SOA", "plane.test")
            #expect(soa.contains("plane.test. admin.plane.test."))
            #expect(try await dig(controller, "A", "nobody.plane.test").contains("status: NXDOMAIN"))
            // acme.set_dns_record is answered `true` and the TXT value is served.
            let accepted = try await drone.request(PlaneSubjects.acmeSetDnsRecord, SetAcmeDnsRecord(cluster: "plane.test", value: "challenge-1"), timeout: .seconds(30))
            #expect(accepted)
            #expect(try await dig(controller, "+short", "TXT", "_acme-challenge.plane.test") == "\"foobar\"\n\"challenge-1\"\n")
            // A bad record is dropped; the server keeps serving.
            try await drone.client.publish("cluster.plane_test.dns.A", payload: Array("{\"cluster\":\"plane.test\",\"kind\":\"A\",\"name\":\"x\",\"value\":\"nope\"}".utf8))
            try await drone.client.publish("cluster.plane_test.dns.A", payload: Array("garbage".utf8))
            try await drone.client.flush()
            #expect(try await dig(controller, "+short", "A", "louie.plane.test") == "14.14.14.14\n")
            await drone.client.close()
            await controller.stop()
        }
    }

    @Test func aRestartedControllerAnswersAtOnce() async throws {
        try await withCluster { server in
            let first = try await dnsController(server)
            let drone = PlaneMessenger(client: try await server.connectedClient())
            try await drone.publish(PlaneSubjects.dns("plane.test", .a), SetDnsRecord(cluster: "plane.test", kind: .a, name: "louie", value: "12.12.12.12"))
            try await drone.client.flush()
            #expect(try await eventually { try await dig(first, "+short", "A", "louie.plane.test") == "12.12.12.12\n" })
            await first.stop()
            // The stream kept the record: a new controller serves it before any drone re-sends.
            let second = try await dnsController(server)
            #expect(try await dig(second, "+short", "A", "louie.plane.test") == "12.12.12.12\n")
            await drone.client.close()
            await second.stop()
        }
    }

    @Test func aFailedStartLeavesNothingSubscribed() async throws {
        try await withCluster { server in
            // Something else holds the DNS port (TCP), so the controller cannot start.
            let port = try TestEnvironment.freePort()
            let squatter = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: port).get()
            var configuration = ControllerConfiguration(nats: server.clientConfiguration(), scheduler: SchedulerConfiguration())
            var dns = ControllerDNSConfiguration()
            dns.server = DNSServerConfiguration(bindHost: "127.0.0.1", port: port)
            configuration.dns = dns
            let client = try await server.connectedClient()
            let controller = Controller(configuration: configuration, client: client, logger: Logger(label: "test.controller"))
            await #expect(throws: ControllerError.self) { try await controller.start() }
            // Its schedule subscription is gone: the server reports no responders (a
            // subscription left behind would swallow the request until the timeout).
            let requester = PlaneMessenger(client: try await server.connectedClient())
            do {
                _ = try await requester.request(PlaneSubjects.schedule("plane.test"), scheduleRequest(), timeout: .seconds(2))
                Issue.record("nobody should answer")
            } catch let error as NATSError {
                #expect(error.code == .noResponders, "\(error)")
            }
            try await squatter.close()
            await requester.client.close()
            await client.close()
        }
    }
}
