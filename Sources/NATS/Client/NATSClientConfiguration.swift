import NIOSSL

/// How a `NATSClient` connects. Every timing has a production default.
public struct NATSClientConfiguration: Sendable {
    /// Servers to try, in order (with the servers INFO advertises added after them).
    public var servers: [NATSServerURL]
    public var auth: Auth
    public var tls: TLS?
    /// Client name shown by the server (`connz`).
    public var name: String?
    public var connectTimeout: Duration = .seconds(5)
    /// Attempts over the whole server list for the first connection (1 = fail fast, as the
    /// CLI wants; controllers and drones retry for a while, as Plane v0.3.10 did).
    public var initialConnectAttempts: Int = 1
    /// Keep reconnecting forever after the connection was up once; set a limit to give up.
    public var maxReconnectAttempts: Int? = nil
    /// Backoff between reconnect rounds: starts at `reconnectWait`, doubles up to
    /// `maxReconnectWait`, with ±`reconnectJitter` randomness.
    public var reconnectWait: Duration = .milliseconds(250)
    public var maxReconnectWait: Duration = .seconds(4)
    public var reconnectJitter: Double = 0.2
    /// Bytes of publishes kept while disconnected; more fail with `.reconnectBufferFull`.
    public var reconnectBufferSize: Int = 8 * 1024 * 1024
    /// A PING is sent at this interval; after `maxPingsOutstanding` unanswered the
    /// connection is considered stale and replaced.
    public var pingInterval: Duration = .seconds(30)
    public var maxPingsOutstanding: Int = 2
    /// Messages a subscription buffers for a slow consumer before it drops (and reports).
    public var subscriptionBufferSize: Int = 65_536
    /// Bytes (payloads, subjects, headers) a subscription buffers for a slow consumer before
    /// it drops (and reports); a single larger message is still delivered to a consumer
    /// that has taken everything before it.
    public var subscriptionBufferBytes: Int = 64 * 1024 * 1024
    public var requestTimeout: Duration = .seconds(10)
    /// Prefix of reply subjects for requests.
    public var inboxPrefix: String = "_INBOX"
    /// Messages published by this client are delivered to its own subscriptions.
    public var echo: Bool = true

    public init(servers: [NATSServerURL], auth: Auth = .none, tls: TLS? = nil, name: String? = nil) {
        self.servers = servers
        self.auth = auth
        self.tls = tls
        self.name = name
    }

    /// Parses a list of URLs.
    public init(urls: [String], auth: Auth = .none, tls: TLS? = nil, name: String? = nil) throws(NATSError) {
        var servers: [NATSServerURL] = []
        for url in urls { servers.append(try NATSServerURL(url)) }
        self.init(servers: servers, auth: auth, tls: tls, name: name)
    }

    public enum Auth: Sendable, Hashable {
        case none
        case token(String)
        case userPassword(user: String, password: String)
    }

    public struct TLS: Sendable {
        /// PEM file of the CA(s) that signed the server certificate; nil uses the system trust store.
        public var caFile: String?
        /// Client certificate and key (PEM) for servers that verify clients.
        public var certificateFile: String?
        public var privateKeyFile: String?
        /// Use TLS even when the server does not require it (true) or only when it does (false).
        public var required: Bool

        public init(caFile: String? = nil, certificateFile: String? = nil, privateKeyFile: String? = nil, required: Bool = true) {
            self.caFile = caFile
            self.certificateFile = certificateFile
            self.privateKeyFile = privateKeyFile
            self.required = required
        }

        func makeContext() throws(NATSError) -> NIOSSLContext {
            do {
                var config = TLSConfiguration.makeClientConfiguration()
                config.applicationProtocols = []
                if let caFile { config.trustRoots = .file(caFile) }
                if let certificateFile, let privateKeyFile {
                    config.certificateChain = try NIOSSLCertificate.fromPEMFile(certificateFile).map { .certificate($0) }
                    config.privateKey = .privateKey(try NIOSSLPrivateKey(file: privateKeyFile, format: .pem))
                }
                return try NIOSSLContext(configuration: config)
            } catch {
                throw NATSError(.tlsFailed, "Could not set up TLS for NATS (check the CA, certificate and key files).", cause: error)
            }
        }
    }

    func validate() throws(NATSError) {
        if servers.isEmpty { throw NATSError(.invalidConfiguration, "No NATS server is configured; give at least one, e.g. nats://127.0.0.1:4222.") }
        if initialConnectAttempts < 1 { throw NATSError(.invalidConfiguration, "initialConnectAttempts must be at least 1.") }
        if maxPingsOutstanding < 1 { throw NATSError(.invalidConfiguration, "maxPingsOutstanding must be at least 1.") }
        if subscriptionBufferSize < 1 { throw NATSError(.invalidConfiguration, "subscriptionBufferSize must be at least 1.") }
        try NATSClientCommand.validateToken(inboxPrefix, what: "inbox prefix")
    }
}
