import Foundation
import PlaneACME
import PlaneTestSupport
import Testing

/// `plane drone` with only `[acme]` (and `[cert]`, `[nats]`, `[metrics]`), as an operator
/// runs a certificate-only drone: it orders from pebble through the controller's DNS, writes
/// the files, reports the expiry on `/metrics`, and stops cleanly on SIGTERM.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct CertificateDroneProcessTests {
    /// A drone.toml in `directory` for cluster `plane.test` on `nats`, with `[cert]` files in
    /// `{directory}/tls`; `sections` follow (`[acme]`, `[agent]`, ...).
    func writeConfig(in directory: String, natsPort: Int, _ sections: String) throws -> String {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let path = directory + "/drone.toml"
        try """
            cluster_domain = "plane.test"
            drone_id = "acme-drone"
            state_dir = "\(directory)/state"
            [nats]
            hosts = ["127.0.0.1:\(natsPort)"]
            [cert]
            key_path = "\(directory)/tls/key.pem"
            cert_path = "\(directory)/tls/cert.pem"
            \(sections)
            """.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func acme(_ cluster: ACMETestCluster) -> String {
        "[acme]\nserver = \"\(cluster.pebble.directoryURL)\"\nadmin_email = \"admin@plane.test\"\nca_bundle = \"\(cluster.pebble.listenerCA)\""
    }

    func files(in directory: String) -> CertificateFiles {
        CertificateFiles(keyPath: "\(directory)/tls/key.pem", certificatePath: "\(directory)/tls/cert.pem")
    }

    @Test func aCertificateOnlyDroneWritesTheFilesAndReportsTheExpiry() async throws {
        try await ACMETestCluster.with { cluster in
            let directory = cluster.directory + "/process"
            let metricsPort = try TestEnvironment.freePort()
            let config = try writeConfig(in: directory, natsPort: cluster.nats.port,
                                         acme(cluster) + "\n[metrics]\nbind_ip = \"127.0.0.1\"\nport = \(metricsPort)")
            let child = try ChildProcess(try TestExecutables.path("plane"), arguments: ["drone", config])
            let files = files(in: directory)
            // (A drone that exits ends the wait at once; the checks below then fail with its output.)
            #expect(try await eventually(timeout: .seconds(60)) { !child.isRunning || (try? CertificateBundle.read(files)) != nil }, "\(child.output)")
            #expect(child.isRunning, "\(child.output)")
            let bundle = try #require(try CertificateBundle.read(files))
            #expect(Set(bundle.names) == ["*.plane.test", "plane.test"] && bundle.chainLength == 2)
            #expect(FileManager.default.fileExists(atPath: "\(directory)/state/acme/account-key.pem"))
            // The gauge is set once the files are written: a moment after they appear.
            let expiry = Double(Int64(bundle.notAfter.timeIntervalSince1970))
            func expiryShown() async -> Double? {
                guard let text = try? await HTTPProbe(port: metricsPort).get("/metrics").body else { return nil }
                return PrometheusSamples(text).value("plane_certificate_expiry_timestamp_seconds")
            }
            #expect(try await eventually { await expiryShown() == expiry })
            let metrics = try await HTTPProbe(port: metricsPort).get("/metrics")
            #expect(PrometheusSamples(metrics.body).value("plane_certificate_expiry_timestamp_seconds") == expiry, "\(metrics.body)")
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
            let httpsPort = try TestEnvironment.freePort()
            let config = try writeConfig(in: directory, natsPort: cluster.nats.port, acme(cluster) + """

                [agent]
                ip = "127.0.0.1"
                port_range = "23700-23799"
                [agent.docker]
                [proxy]
                bind_ip = "127.0.0.1"
                https_port = \(httpsPort)
                """)
            let child = try ChildProcess(try TestExecutables.path("plane"), arguments: ["drone", config])
            let root = try await cluster.pebble.issuingRoot()
            let curl = try SystemProgram("curl", debianPackage: "curl").path()
            func get() async throws -> (status: Int32, output: String) {
                try await SystemProgram.run(executable: curl, ["-sS", "--max-time", "5", "--cacert", root, "--resolve", "foo.plane.test:\(httpsPort):127.0.0.1",
                                                         "-o", "/dev/null", "-w", "%{http_code}", "https://foo.plane.test:\(httpsPort)/"])
            }
            #expect(try await eventually(timeout: .seconds(60)) {
                guard child.isRunning else { return true }
                return (try? await get())?.output == "404"
            }, "\(child.output)")
            let served = (try? await get())?.output
            #expect(child.isRunning && served == "404", "\(child.output)")
            let bundle = try #require(try CertificateBundle.read(files(in: directory)))
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
            let config = try writeConfig(in: directory, natsPort: nats.port, """
                [acme]
                server = "https://127.0.0.1:9/dir"
                admin_email = "admin@plane.test"
                [metrics]
                bind_ip = "127.0.0.1"
                port = \(nats.port)
                """)
            let child = try ChildProcess(try TestExecutables.path("plane"), arguments: ["drone", config])
            #expect(await child.waitForExit(timeout: .seconds(30)) == 1, "\(child.output)")
            #expect(child.output.contains("\(nats.port)") && !child.output.contains("Fatal error"), "\(child.output)")
        }
    }
}
