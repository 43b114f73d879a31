import Foundation
import Logging
import PlaneCore
import PlaneProxy
import PlaneTestSupport
import Testing

/// The proxy's TLS listener, checked with curl validating a test CA: the wildcard and the
/// apex, ALPN http/1.1, TLS 1.2 and 1.3 only, certificate hot reload (spec §11.5
/// `update_certificates`), a broken pair keeps the old one, no certificate refuses TLS.
@Suite(.timeLimit(.minutes(3)))
struct ProxyTLSTests {
    static let curl = SystemProgram("curl", debianPackage: "curl")
    static let names = ["DNS:*.plane.test", "DNS:plane.test"]

    struct Setup {
        let backend: ChildProcess
        let proxy: ProxyServer
        let store: TLSCertificateStore
        let port: Int
        let keyPath: String
        let certificatePath: String

        /// `curl` for `https://{host}:{port}{path}` resolved to 127.0.0.1, trusting `ca`:
        /// exit status, body, and the trailer `code version`.
        func get(_ host: String = "foobar.plane.test", _ path: String = "/", ca: String, extra: [String] = []) async throws -> (status: Int32, output: String) {
            try await SystemProgram.run(executable: try ProxyTLSTests.curl.path(), ["-sS", "--max-time", "5", "--cacert", ca, "--resolve", "\(host):\(port):127.0.0.1",
                                                                              "-w", "\n%{http_code} %{http_version}"] + extra + ["https://\(host):\(port)\(path)"])
        }

        func stop() async {
            await proxy.stop()
            await backend.stop()
        }
    }

    func setUp(directory: String, withCertificate: Bool = true, redirect: Bool = false, headerReadTimeout: Duration? = nil) async throws -> Setup {
        let backendPort = try TestEnvironment.freePort()
        let backend = try ChildProcess(try TestExecutables.path("plane-test-server"), environment: ["PORT": String(backendPort), "HOST": "127.0.0.1"])
        _ = try await HTTPProbe(port: backendPort).waitUntilAnswering("/")
        let routes = RouteTable()
        routes.add(RouteTable.Route(backendID: "foobar", address: "127.0.0.1:\(backendPort)", bearerToken: nil))
        let keyPath = directory + "/site-key.pem", certificatePath = directory + "/site-cert.pem"
        if withCertificate {
            let certificates = try await TestCertificates.generate(in: directory + "/first", names: Self.names)
            try FileManager.default.copyItem(atPath: certificates.serverKey, toPath: keyPath)
            try FileManager.default.copyItem(atPath: certificates.serverCertificate, toPath: certificatePath)
        }
        var logger = Logger(label: "test.proxy")
        logger.logLevel = .critical
        let store = TLSCertificateStore(keyPath: keyPath, certificatePath: certificatePath, logger: logger)
        store.reload()
        var configuration = ProxyConfiguration()
        configuration.bindHost = "127.0.0.1"
        configuration.httpsPort = 0
        if redirect {
            configuration.httpRedirectPort = 0
            configuration.headerReadTimeout = .seconds(2)
        }
        if let headerReadTimeout { configuration.headerReadTimeout = headerReadTimeout }
        let proxy = ProxyServer(cluster: "plane.test", configuration: configuration, routes: routes, certificates: store, logger: logger)
        try await proxy.start()
        return Setup(backend: backend, proxy: proxy, store: store, port: try #require(proxy.port), keyPath: keyPath, certificatePath: certificatePath)
    }

    func directory() throws -> String {
        let path = try TestEnvironment.temporaryDirectory("proxy-tls")
        for sub in ["first", "second"] { try FileManager.default.createDirectory(atPath: path + "/" + sub, withIntermediateDirectories: true) }
        return path
    }

    @Test func servesTheWildcardAndTheApexOverTLS() async throws {
        let dir = try directory()
        let s = try await setUp(directory: dir)
        let ca = dir + "/first/ca.pem"
        let routed = try await s.get(ca: ca)
        #expect(routed.status == 0 && routed.output == "Hello World!\n200 1.1", "\(routed.output)")
        let apex = try await s.get("plane.test", ca: ca)
        #expect(apex.status == 0 && apex.output.hasSuffix("404 1.1"), "\(apex.output)")
        let seen = try await s.get("foobar.plane.test", "/headers", ca: ca)
        #expect(seen.output.contains("\"x-forwarded-proto\":\"https\""), "\(seen.output)")
        #expect(try await s.get(ca: ca, extra: ["--tlsv1.2", "--tls-max", "1.2"]).status == 0)
        #expect(try await s.get(ca: ca, extra: ["--tlsv1.3"]).status == 0)
        #expect(try await s.get(ca: ca, extra: ["--tlsv1.1", "--tls-max", "1.1"]).status != 0, "TLS 1.1 is refused")
        // Plain HTTP to the TLS port: a 400 that says so, and a close; other bytes: a close.
        let plain = try await HTTPProbe(port: s.port).raw("GET / HTTP/1.1\r\nHost: foobar.plane.test\r\n\r\n")
        #expect(plain.text.hasPrefix("HTTP/1.1 400 Bad Request\r\n") && plain.text.contains("speaks HTTPS") && plain.closed, "\(plain)")
        let garbage = try await HTTPProbe(port: s.port).raw("\u{1}\u{2}\u{3}")
        #expect(garbage.text.isEmpty && garbage.closed, "\(garbage)")
        #expect(try await s.get(ca: ca).status == 0, "TLS still served")
        await s.stop()
    }

    @Test func newCertificateFilesAreUsedWithoutARestartAndABrokenPairIsIgnored() async throws {
        let dir = try directory()
        let s = try await setUp(directory: dir)
        let watcher = Task { await s.store.watch(every: .milliseconds(100)) }
        // A new pair from another CA, written as the refresher does (key first).
        let next = try await TestCertificates.generate(in: dir + "/second", names: Self.names)
        try Data(contentsOf: URL(fileURLWithPath: next.serverKey)).write(to: URL(fileURLWithPath: s.keyPath), options: .atomic)
        try Data(contentsOf: URL(fileURLWithPath: next.serverCertificate)).write(to: URL(fileURLWithPath: s.certificatePath), options: .atomic)
        #expect(try await eventually(timeout: .seconds(10)) { try await s.get(ca: next.caCertificate).status == 0 })
        #expect(try await s.get(ca: dir + "/first/ca.pem").status != 0, "the old certificate is gone")
        // A broken certificate file: logged, the current pair stays.
        try "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n".write(toFile: s.certificatePath, atomically: true, encoding: .utf8)
        try await Task.sleep(for: .milliseconds(500))
        #expect(try await s.get(ca: next.caCertificate).output.hasSuffix("200 1.1"))
        // A key that does not belong to the certificate: also refused.
        try Data(contentsOf: URL(fileURLWithPath: next.serverCertificate)).write(to: URL(fileURLWithPath: s.certificatePath), options: .atomic)
        try Data(contentsOf: URL(fileURLWithPath: dir + "/first/server.key")).write(to: URL(fileURLWithPath: s.keyPath), options: .atomic)
        try await Task.sleep(for: .milliseconds(500))
        #expect(try await s.get(ca: next.caCertificate).output.hasSuffix("200 1.1"))
        #expect(s.store.reload() != nil, "a mismatched pair is an error")
        watcher.cancel()
        await s.stop()
    }

    @Test func withoutACertificateHandshakesAreRefusedUntilOneArrives() async throws {
        let dir = try directory()
        let s = try await setUp(directory: dir, withCertificate: false)
        #expect(s.store.current == nil)
        let watcher = Task { await s.store.watch(every: .milliseconds(100)) }
        let certificates = try await TestCertificates.generate(in: dir + "/first", names: Self.names)
        #expect(try await s.get(ca: certificates.caCertificate).status != 0)
        try FileManager.default.copyItem(atPath: certificates.serverKey, toPath: s.keyPath)
        try FileManager.default.copyItem(atPath: certificates.serverCertificate, toPath: s.certificatePath)
        #expect(try await eventually(timeout: .seconds(10)) { try await s.get(ca: certificates.caCertificate).status == 0 })
        watcher.cancel()
        await s.stop()
    }

    /// A client that stalls in its TLS handshake (here after the first bytes of a
    /// ClientHello) is cut off by `header_read_timeout_secs`, which counts from the
    /// connection's start: the handshake cannot hold a place for the idle timeout.
    @Test func aStalledHandshakeIsCutOffByTheHeaderTimeout() async throws {
        let s = try await setUp(directory: try directory(), headerReadTimeout: .seconds(1))
        let port = s.port
        let started = ContinuousClock.now
        let result = try await SystemProgram.offThePool {
            let client = try RawTCPConnection(port: port, timeout: .seconds(60))
            defer { client.close() }
            try client.send([0x16, 0x03, 0x01, 0x02, 0x00, 0x01])  // a handshake record of 512 bytes: its first 1
            return client.readUntilClosed()
        }
        let after = ContinuousClock.now - started
        #expect(result.closed && after < .seconds(30), "\(result) after \(after)")
        await s.stop()
    }

    @Test func thePlainPortRedirectsToHTTPS() async throws {
        let dir = try directory()
        let s = try await setUp(directory: dir, redirect: true)
        let redirectPort = try #require(s.proxy.redirectPort)
        let answer = try await HTTPProbe(port: redirectPort, hostHeader: "foobar.plane.test:\(redirectPort)").get("/a/b?c=d")
        #expect(answer.status == 308 && answer.headers["location"] == "https://foobar.plane.test:\(s.port)/a/b?c=d", "\(answer)")
        let noHost = try await HTTPProbe(port: redirectPort).raw("GET / HTTP/1.0\r\n\r\n")
        #expect(noHost.text.hasPrefix("HTTP/1.0 400"), "\(noHost.text)")
        // Bytes that are not HTTP, at once or after a request: 400 and a close at once (it
        // stayed open, taking and dropping input, until header_read_timeout_secs).
        for garbage in ["\u{1}\u{2}GARBAGE\r\n\r\n", "GET / HTTP/1.1\r\nHost: foobar.plane.test\r\n\r\nNOT HTTP AT ALL\r\n\r\n"] {
            let sent = ContinuousClock.now
            let refused = try await HTTPProbe(port: redirectPort).raw(garbage)
            let took = ContinuousClock.now - sent
            #expect(refused.text.contains("HTTP/1.1 400 ") && refused.closed && took < .seconds(1), "\(refused) after \(took)")
        }
        // A client that never finishes its request is cut off after header_read_timeout_secs.
        var slow = HTTPProbe(port: redirectPort)
        slow.timeout = .seconds(20)
        let started = ContinuousClock.now
        let stalled = try await slow.raw("GET / HTTP/1.1\r\nHost: foobar")
        let waited = ContinuousClock.now - started
        #expect(stalled.closed && stalled.text.isEmpty && waited >= .milliseconds(1500) && waited < .seconds(15), "\(stalled) after \(waited)")
        await s.stop()
    }
}
