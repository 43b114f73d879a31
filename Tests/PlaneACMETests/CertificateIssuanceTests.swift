import Foundation
import Logging
import NATS
import PlaneACME
import PlaneCore
import PlaneProxy
import PlaneTestSupport
import Testing

/// Certificates from a real pebble validating DNS-01 for real through the controller's DNS
/// server (spec §11.4 and issue 07): issuance with and without the apex, EAB, the full
/// refresh into files served by the proxy, renewal with one account, and two drones at once.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct CertificateIssuanceTests {
    static let curl = SystemProgram("curl", debianPackage: "curl")

    @Test func certRefresh() async throws {
        try await ACMETestCluster.with { cluster in
            let wildcardOnly = try await cluster.issuer { $0.includeApex = false }
            let started = ContinuousClock.now
            let bundle = try await wildcardOnly.issue(cluster: ACMETestCluster.cluster)
            #expect(ContinuousClock.now - started < .seconds(60))
            #expect(bundle.chainLength == 2)
            #expect(bundle.names == ["*.plane.test"])
            // The drone asked the controller and published the TXT record too (spec §11.4).
            #expect(cluster.challengeRequests.withLock { $0.map(\.cluster) } == ["plane.test"])
            #expect(try await eventually(timeout: .seconds(10)) {
                cluster.txtRecords.withLock { $0.contains { $0.cluster == "plane.test" && $0.name == "_acme-challenge" && $0.kind == .txt } }
            })

            let withApex = try await cluster.issuer(drone: "drone-b")
            let both = try await withApex.issue(cluster: ACMETestCluster.cluster)
            #expect(both.chainLength == 2 && Set(both.names) == ["*.plane.test", "plane.test"])
            // One challenge per name: two values for the same _acme-challenge name, both served.
            #expect(cluster.challengeRequests.withLock { $0.count } == 3)
            await wildcardOnly.client.shutdown()
            await withApex.client.shutdown()
        }
    }

    @Test func certRefreshFull() async throws {
        // pebble rejects a third of the good nonces: the client must retry badNonce.
        var options = PebbleProcess.Options()
        options.nonceRejectPercent = 30
        try await ACMETestCluster.with(options) { cluster in
            let files = cluster.files("drone-a")
            var logger = Logger(label: "test.proxy")
            logger.logLevel = .critical
            let store = TLSCertificateStore(keyPath: files.keyPath, certificatePath: files.certificatePath, logger: logger)
            store.reload()
            var configuration = ProxyConfiguration()
            configuration.bindHost = "127.0.0.1"
            configuration.httpsPort = 0
            let proxy = ProxyServer(cluster: "plane.test", configuration: configuration, routes: RouteTable(), certificates: store, logger: logger)
            try await proxy.start()
            let watcher = Task { await store.watch(every: .milliseconds(200)) }
            defer { watcher.cancel() }
            let port = try #require(proxy.port)
            let root = try await cluster.pebble.issuingRoot()
            func get() async throws -> (status: Int32, output: String) {
                try await SystemProgram.run(executable: try Self.curl.path(), ["-sS", "--max-time", "5", "--cacert", root, "--resolve", "foo.plane.test:\(port):127.0.0.1",
                                                                         "-o", "/dev/null", "-w", "%{http_code}", "https://foo.plane.test:\(port)/"])
            }
            // No certificate yet: handshakes are refused rather than served with a wrong one.
            #expect(try await get().status != 0)

            let refresher = try await cluster.refresher()
            let wait = await refresher.refreshOnce()
            #expect(wait > .seconds(60))
            #expect(refresher.metrics.attempts == 1 && refresher.metrics.failures == 0)
            let bundle = try #require(try CertificateBundle.read(files))
            #expect(bundle.chainLength == 2 && Set(bundle.names) == ["*.plane.test", "plane.test"])
            let mode = (try FileManager.default.attributesOfItem(atPath: files.keyPath)[.posixPermissions] as? NSNumber)?.intValue
            #expect(mode == 0o600)
            #expect(PrometheusSamples(refresher.metrics.render()).value("plane_certificate_expiry_timestamp_seconds") == Double(Int64(bundle.notAfter.timeIntervalSince1970)))

            // The proxy serves it without a restart; curl validates it against pebble's root.
            #expect(try await eventually(timeout: .seconds(10)) { (try? await get())?.output == "404" })
            // Not due: another round orders nothing.
            _ = await refresher.refreshOnce()
            #expect(refresher.metrics.attempts == 1)
            await proxy.stop()
            await refresher.issuer.client.shutdown()
        }
    }

    @Test func certRefreshEAB() async throws {
        var options = PebbleProcess.Options()
        options.externalAccountKeys = ["kid-1": "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"]
        try await ACMETestCluster.with(options) { cluster in
            // Without a binding: a message that says to configure [acme.eab].
            let unbound = try await cluster.issuer(drone: "drone-none") { $0.includeApex = false }
            await #expect { try await unbound.issue(cluster: ACMETestCluster.cluster) } throws: {
                ($0 as? ACMEError)?.code == .account && "\($0)".contains("[acme.eab]")
            }
            // A wrong MAC key: the CA refuses and the message points at the key.
            let wrong = try await cluster.issuer(drone: "drone-wrong") {
                $0.externalAccountBinding = try? ExternalAccountBinding(keyID: "kid-1", key: "b10lLJs8l1GPIzsLP0s6pMt8O0XVGnfTaCeROxQM0BIt2XrJMDHJZBM5NuQmQJQH")
            }
            await #expect { try await wrong.issue(cluster: ACMETestCluster.cluster) } throws: {
                ($0 as? ACMEError)?.code == .account && "\($0)".contains("[acme.eab] key_id and key")
            }
            let right = try await cluster.issuer(drone: "drone-right") {
                $0.includeApex = false
                $0.externalAccountBinding = try? ExternalAccountBinding(keyID: "kid-1", key: "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W")
            }
            let bundle = try await right.issue(cluster: ACMETestCluster.cluster)
            #expect(bundle.chainLength == 2 && bundle.names == ["*.plane.test"])
            for issuer in [unbound, wrong, right] { await issuer.client.shutdown() }
        }
    }

    @Test func renewalBeforeExpiryReusesTheAccount() async throws {
        var options = PebbleProcess.Options()
        options.certificateValidity = 40
        try await ACMETestCluster.with(options) { cluster in
            let refresher = try await cluster.refresher { configuration in
                configuration.renewWhenRemaining = 0.6  // due 16 s after issuance
                configuration.checkInterval = .seconds(1)
            }
            let service = Task { try await refresher.run() }
            let files = cluster.files("drone-a")
            // Read while the refresher runs: a read between its two renames is tried again.
            let first = try #require(try await ACMETestCluster.pair(in: files))
            let accountKey = try String(contentsOfFile: refresher.issuer.accounts.keyPath, encoding: .utf8)
            let account = refresher.issuer.accounts.accountURL(server: cluster.pebble.directoryURL)
            #expect(account != nil)
            let second = try #require(try await ACMETestCluster.pair(in: files, timeout: .seconds(90)) { $0.serialNumber != first.serialNumber })
            let renewedAt = Date()
            #expect(renewedAt < first.notAfter, "renewed only after the first certificate expired")
            #expect(second.notAfter > first.notAfter)
            // One account: the same key and the same account URL on pebble.
            #expect(try String(contentsOfFile: refresher.issuer.accounts.keyPath, encoding: .utf8) == accountKey)
            #expect(refresher.issuer.accounts.accountURL(server: cluster.pebble.directoryURL) == account)
            #expect(refresher.metrics.attempts >= 2 && refresher.metrics.failures == 0)
            service.cancel()
            try await service.value
        }
    }

    @Test func twoDronesRefreshingAtOnceMakeOneOrder() async throws {
        try await ACMETestCluster.with { cluster in
            let a = try await cluster.refresher(drone: "drone-a")
            let b = try await cluster.refresher(drone: "drone-b")
            let services = [Task { try await a.run() }, Task { try await b.run() }]
            let filesA = cluster.files("drone-a"), filesB = cluster.files("drone-b")
            #expect(try await eventually(timeout: .seconds(60)) {
                (try? CertificateBundle.read(filesA)) != nil && (try? CertificateBundle.read(filesB)) != nil
            })
            let bundleA = try #require(try CertificateBundle.read(filesA)), bundleB = try #require(try CertificateBundle.read(filesB))
            #expect(bundleA == bundleB)
            // One order: two challenges (wildcard and apex), one order started in the fleet.
            #expect(cluster.challengeRequests.withLock { $0.count } == 2)
            #expect(a.metrics.attempts + b.metrics.attempts == 1)
            for service in services {
                service.cancel()
                try await service.value
            }
        }
    }

    @Test func withoutAControllerTheErrorSaysWhatToRun() async throws {
        try await ACMETestCluster.with(controller: false) { cluster in
            let issuer = try await cluster.issuer { $0.includeApex = false }
            await #expect { try await issuer.issue(cluster: ACMETestCluster.cluster) } throws: {
                ($0 as? ACMEError)?.code == .dnsChallenge && "\($0)".contains("No controller answers acme.set_dns_record")
            }
            await issuer.client.shutdown()
        }
    }
}
