import Foundation
import PlaneACME
import PlaneTestSupport
import Testing

/// `plane drone` with only `[acme]` (and `[cert]`, `[nats]`, `[metrics]`), as an operator
/// runs a certificate-only drone: it orders from pebble through the controller's DNS, writes
/// the files, reports the expiry on `/metrics`, and stops cleanly on SIGTERM.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct CertificateDroneProcessTests {
    @Test func aCertificateOnlyDroneWritesTheFilesAndReportsTheExpiry() async throws {
        try await ACMETestCluster.with { cluster in
            let directory = cluster.directory + "/process"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let metricsPort = try TestEnvironment.freePort()
            let config = directory + "/drone.toml"
            try """
                cluster_domain = "plane.test"
                drone_id = "acme-drone"
                state_dir = "\(directory)/state"
                [nats]
                hosts = ["127.0.0.1:\(cluster.nats.port)"]
                [cert]
                key_path = "\(directory)/tls/key.pem"
                cert_path = "\(directory)/tls/cert.pem"
                [acme]
                server = "\(cluster.pebble.directoryURL)"
                admin_email = "admin@plane.test"
                ca_bundle = "\(cluster.pebble.listenerCA)"
                [metrics]
                bind_ip = "127.0.0.1"
                port = \(metricsPort)
                """.write(toFile: config, atomically: true, encoding: .utf8)
            let child = try ChildProcess(try TestExecutables.path("plane"), arguments: ["drone", config])
            let files = CertificateFiles(keyPath: "\(directory)/tls/key.pem", certificatePath: "\(directory)/tls/cert.pem")
            // (A drone that exits ends the wait at once; the checks below then fail with its output.)
            #expect(try await eventually(timeout: .seconds(60)) { !child.isRunning || (try? CertificateBundle.read(files)) != nil }, "\(child.output)")
            #expect(child.isRunning, "\(child.output)")
            let bundle = try #require(try CertificateBundle.read(files))
            #expect(Set(bundle.names) == ["*.plane.test", "plane.test"] && bundle.chainLength == 2)
            #expect(FileManager.default.fileExists(atPath: "\(directory)/state/acme/account-key.pem"))
            let metrics = try HTTPProbe(port: metricsPort).get("/metrics")
            #expect(metrics.body.contains("plane_certificate_expiry_timestamp_seconds \(Int64(bundle.notAfter.timeIntervalSince1970))"), "\(metrics.body)")
            #expect(metrics.body.contains("plane_acme_renewal_attempts_total 1") && metrics.body.contains("plane_acme_renewal_failures_total 0"))
            child.signal(SIGTERM)
            #expect(await child.waitForExit(timeout: .seconds(20)) == 0, "\(child.output)")
        }
    }

    /// The whole drone: agent (Docker), TLS proxy and refresher in one process. The proxy
    /// starts without a certificate and serves the one the refresher orders without a
    /// restart; curl trusts only pebble's root, so a handshake that validates proves it.
    @Test func theProxyServesTheOrderedCertificateWithoutARestart() async throws {
        try await ACMETestCluster.with { cluster in
            let directory = cluster.directory + "/full"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let httpsPort = try TestEnvironment.freePort()
            let config = directory + "/drone.toml"
            try """
                cluster_domain = "plane.test"
                drone_id = "full-drone"
                state_dir = "\(directory)/state"
                [nats]
                hosts = ["127.0.0.1:\(cluster.nats.port)"]
                [cert]
                key_path = "\(directory)/tls/key.pem"
                cert_path = "\(directory)/tls/cert.pem"
                [acme]
                server = "\(cluster.pebble.directoryURL)"
                admin_email = "admin@plane.test"
                ca_bundle = "\(cluster.pebble.listenerCA)"
                [agent]
                ip = "127.0.0.1"
                port_range = "23700-23799"
                [agent.docker]
                [proxy]
                bind_ip = "127.0.0.1"
                https_port = \(httpsPort)
                """.write(toFile: config, atomically: true, encoding: .utf8)
            let child = try ChildProcess(try TestExecutables.path("plane"), arguments: ["drone", config])
            let root = try cluster.pebble.issuingRoot()
            let curl = try SystemProgram("curl", debianPackage: "curl").path()
            func get() throws -> (status: Int32, output: String) {
                try SystemProgram.run(executable: curl, ["-sS", "--max-time", "5", "--cacert", root, "--resolve", "foo.plane.test:\(httpsPort):127.0.0.1",
                                                         "-o", "/dev/null", "-w", "%{http_code}", "https://foo.plane.test:\(httpsPort)/"])
            }
            #expect(try await eventually(timeout: .seconds(60)) { !child.isRunning || (try? get())?.output == "404" }, "\(child.output)")
            #expect(child.isRunning && (try? get())?.output == "404", "\(child.output)")
            let files = CertificateFiles(keyPath: "\(directory)/tls/key.pem", certificatePath: "\(directory)/tls/cert.pem")
            let bundle = try #require(try CertificateBundle.read(files))
            #expect(bundle.chainLength == 2 && Set(bundle.names) == ["*.plane.test", "plane.test"])
            child.signal(SIGTERM)
            #expect(await child.waitForExit(timeout: .seconds(20)) == 0, "\(child.output)")
        }
    }

    /// A start that fails after the refresher was made (here: the metrics port is taken)
    /// ends with the error, not with a crash of an HTTP client that was never used.
    @Test func aFailedStartIsAnErrorNotACrash() async throws {
        try await withNATSServer { nats in
            let directory = try TestEnvironment.temporaryDirectory("plane-acme-start")
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let config = directory + "/drone.toml"
            try """
                cluster_domain = "plane.test"
                drone_id = "acme-drone"
                state_dir = "\(directory)/state"
                [nats]
                hosts = ["127.0.0.1:\(nats.port)"]
                [cert]
                key_path = "\(directory)/key.pem"
                cert_path = "\(directory)/cert.pem"
                [acme]
                server = "https://127.0.0.1:9/dir"
                admin_email = "admin@plane.test"
                [metrics]
                bind_ip = "127.0.0.1"
                port = \(nats.port)
                """.write(toFile: config, atomically: true, encoding: .utf8)
            let child = try ChildProcess(try TestExecutables.path("plane"), arguments: ["drone", config])
            #expect(await child.waitForExit(timeout: .seconds(30)) == 1, "\(child.output)")
            #expect(child.output.contains("\(nats.port)") && !child.output.contains("Fatal error"), "\(child.output)")
        }
    }
}
