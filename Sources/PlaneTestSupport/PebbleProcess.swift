import Foundation

/// A real `pebble` (Let's Encrypt's test ACME server, Debian package `pebble`) on 127.0.0.1
/// with random ports and its own TLS certificate from a throwaway CA. It validates DNS-01
/// for real against `dnsServer` (`PEBBLE_VA_ALWAYS_VALID` stays unset).
public final class PebbleProcess: @unchecked Sendable {
    public struct Options: Sendable {
        /// EAB key ids and MAC keys; non-nil makes EAB required.
        public var externalAccountKeys: [String: String]?
        /// Lifetime of issued certificates in seconds (pebble's default is five years).
        public var certificateValidity: Int?
        /// Percentage of good nonces answered `badNonce` (pebble's default is 5).
        public var nonceRejectPercent = 0
        public init() {}
    }

    public let port: Int
    public let managementPort: Int
    public let directory: String
    /// The CA of pebble's own HTTPS listener (trust it to talk to pebble).
    public let listenerCA: String
    private let child: ChildProcess

    public var directoryURL: String { "https://127.0.0.1:\(port)/dir" }

    public static func start(dnsServer: String, options: Options = Options()) async throws -> PebbleProcess {
        let directory = try TestEnvironment.temporaryDirectory("plane-pebble")
        let certificates = try await TestCertificates.generate(in: directory)
        let port = try TestEnvironment.freePort()
        let managementPort = try TestEnvironment.freePort()
        var settings: [String: Any] = [
            "listenAddress": "127.0.0.1:\(port)",
            "managementListenAddress": "127.0.0.1:\(managementPort)",
            "certificate": certificates.serverCertificate,
            "privateKey": certificates.serverKey,
            "httpPort": try TestEnvironment.freePort(),
            "tlsPort": try TestEnvironment.freePort(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": options.externalAccountKeys != nil,
        ]
        if let keys = options.externalAccountKeys { settings["externalAccountMACKeys"] = keys }
        if let validity = options.certificateValidity { settings["certificateValidityPeriod"] = validity }
        let data = try JSONSerialization.data(withJSONObject: ["pebble": settings], options: [.sortedKeys])
        try data.write(to: URL(fileURLWithPath: "\(directory)/pebble.json"))
        let child = try ChildProcess.watched(try SystemProgram("pebble", debianPackage: "pebble").path(),
                                             arguments: ["-config", "\(directory)/pebble.json", "-dnsserver", dnsServer],
                                             environment: ["PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": String(options.nonceRejectPercent),
                                                           "PEBBLE_AUTHZREUSE": "0"])
        let pebble = PebbleProcess(port: port, managementPort: managementPort, directory: directory, listenerCA: certificates.caCertificate, child: child)
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline {
            if (try? await pebble.curl("https://127.0.0.1:\(port)/dir")) != nil { return pebble }
            guard child.isRunning else { throw TestSupportError("pebble exited: \(child.output)") }
            try await Task.sleep(for: .milliseconds(100))
        }
        await pebble.stop()
        throw TestSupportError("pebble on port \(port) did not become ready: \(child.output)")
    }

    private init(port: Int, managementPort: Int, directory: String, listenerCA: String, child: ChildProcess) {
        self.port = port
        self.managementPort = managementPort
        self.directory = directory
        self.listenerCA = listenerCA
        self.child = child
    }

    /// The root that signs issued certificates (new at every pebble start), written to a file.
    public func issuingRoot() async throws -> String {
        let pem = try await curl("https://127.0.0.1:\(managementPort)/roots/0")
        let path = "\(directory)/issuing-root.pem"
        try pem.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    public var output: String { child.output }

    func curl(_ url: String) async throws -> String {
        try await SystemProgram("curl", debianPackage: "curl").run(["-sSf", "--max-time", "5", "--cacert", listenerCA, url])
    }

    public func stop() async {
        await child.stop()
        try? FileManager.default.removeItem(atPath: directory)
    }
}
