import Foundation
import Logging
import NATS
import PlaneACME
import PlaneController
import PlaneCore
import PlaneDNS
import PlaneMessaging
import PlaneTestSupport
import Synchronization
import Testing

/// A real nats-server, a real controller serving DNS on 127.0.0.1 (random port) and a real
/// pebble that validates DNS-01 by asking that DNS server. Also records every
/// `acme.set_dns_record` request and `SetDnsRecord` TXT publish it sees.
final class ACMETestCluster: Sendable {
    let nats: NATSServerProcess
    let controller: Controller
    let controllerClient: NATSClient
    let controllerTask: Task<Void, Never>
    let pebble: PebbleProcess
    let observer: NATSClient
    let challengeRequests = Mutex<[SetAcmeDnsRecord]>([])
    let txtRecords = Mutex<[SetDnsRecord]>([])
    let directory: String
    let tasks = Mutex<[Task<Void, Never>]>([])

    static let cluster: ClusterName = "plane.test"

    /// Runs `body` with a fresh cluster and stops everything afterwards, whatever happens.
    static func with(_ options: PebbleProcess.Options = PebbleProcess.Options(), controller: Bool = true,
                     _ body: (ACMETestCluster) async throws -> Void) async throws {
        try await withNATSServer { nats in
            let cluster = try await ACMETestCluster(nats: nats, options: options, startController: controller)
            do {
                try await body(cluster)
            } catch {
                await cluster.stop()
                throw error
            }
            await cluster.stop()
        }
    }

    private init(nats: NATSServerProcess, options: PebbleProcess.Options, startController: Bool) async throws {
        self.nats = nats
        directory = try TestEnvironment.temporaryDirectory("plane-acme-test")
        var configuration = ControllerConfiguration(nats: nats.clientConfiguration())
        var dns = ControllerDNSConfiguration()
        dns.server = DNSServerConfiguration(bindHost: "127.0.0.1", port: 0)
        dns.server.udpSockets = 1
        configuration.dns = startController ? dns : nil
        controllerClient = try await nats.connectedClient()
        var logger = Logger(label: "test.controller")
        logger.logLevel = .warning
        controller = Controller(configuration: configuration, client: controllerClient, logger: logger)
        try await controller.start()
        let controller = controller
        controllerTask = Task { try? await controller.run() }
        let dnsPort = startController ? try #require(controller.dnsServer?.boundAddress?.port) : try TestEnvironment.freePort()
        pebble = try await PebbleProcess.start(dnsServer: "127.0.0.1:\(dnsPort)", options: options)
        observer = try await nats.connectedClient()
        let messenger = PlaneMessenger(client: observer)
        // Without a controller nothing may listen on acme.set_dns_record (the drone must see
        // "no responders"), so requests are only recorded when a controller answers them.
        let requests = try await messenger.subscribe(SubjectPattern<SetAcmeDnsRecord, Bool>(startController ? "acme.set_dns_record" : "plane.test.unused"))
        let records = try await messenger.subscribe(PlaneSubjects.dnsAll)
        try await observer.flush()
        let requestTask = Task { [weak self] in
            for await delivery in requests { if case .success(let m) = delivery.message { self?.challengeRequests.withLock { $0.append(m) } } }
        }
        let recordTask = Task { [weak self] in
            for await delivery in records { if case .success(let m) = delivery.message { self?.txtRecords.withLock { $0.append(m) } } }
        }
        tasks.withLock { $0 += [requestTask, recordTask] }
    }

    /// An issuer for one drone with its own state directory, talking to pebble over TLS.
    func issuer(drone: String = "drone-a", adjust: (inout ACMEConfiguration) -> Void = { _ in }) async throws -> CertificateIssuer {
        var configuration = ACMEConfiguration(server: pebble.directoryURL, adminEmail: "admin@plane.test")
        configuration.caBundlePath = pebble.listenerCA
        configuration.validationTimeout = .seconds(60)
        configuration.retryInterval = .seconds(1)
        adjust(&configuration)
        var logger = Logger(label: "test.acme.\(drone)")
        logger.logLevel = .warning
        let client = try ACMEClient(directoryURL: configuration.server, caBundlePath: configuration.caBundlePath, logger: logger)
        let messenger = PlaneMessenger(client: try await nats.connectedClient())
        return CertificateIssuer(client: client, accounts: ACMEAccountStore(stateDirectory: "\(directory)/\(drone)/state"),
                                 challenges: NATSChallengePublisher(messenger: messenger), configuration: configuration, logger: logger)
    }

    /// A refresher for one drone, writing `{directory}/{drone}/key.pem` and `cert.pem`.
    func refresher(drone: String = "drone-a", coordinate: Bool = true, adjust: (inout ACMEConfiguration) -> Void = { _ in }) async throws -> CertificateRefresher {
        let issuer = try await issuer(drone: drone, adjust: adjust)
        var logger = Logger(label: "test.refresher.\(drone)")
        logger.logLevel = .warning
        let client = try await nats.connectedClient()
        return CertificateRefresher(cluster: Self.cluster, droneID: try DroneID(drone), files: files(drone), issuer: issuer,
                                    jetStream: coordinate ? JetStream(client: client) : nil, metrics: ACMEMetrics(), logger: logger)
    }

    func files(_ drone: String) -> CertificateFiles {
        CertificateFiles(keyPath: "\(directory)/\(drone)/key.pem", certificatePath: "\(directory)/\(drone)/cert.pem")
    }

    /// The pair in `files` once there is one that `accept`s, nil after `timeout`. While a
    /// refresher may be writing: it renames the new key before the new chain
    /// (`CertificateFileWriter`), so a read between the two sees a key that does not belong
    /// to the chain; such a read is tried again, as the proxy does.
    static func pair(in files: CertificateFiles, timeout: Duration = .seconds(60),
                     where accept: (CertificateBundle) -> Bool = { _ in true }) async throws -> CertificateBundle? {
        var found: CertificateBundle?
        _ = try await eventually(timeout: timeout) {
            found = (try? CertificateBundle.read(files)).flatMap { accept($0) ? $0 : nil }
            return found != nil
        }
        return found
    }

    func stop() async {
        tasks.withLock { $0 }.forEach { $0.cancel() }
        await pebble.stop()
        controllerTask.cancel()
        _ = await controllerTask.value
        await controller.stop()
        await controllerClient.close()
        await observer.close()
        try? FileManager.default.removeItem(atPath: directory)
    }
}
