/// The server's `INFO` (the fields this client uses; others are ignored).
public struct NATSServerInfo: Sendable, Hashable, Decodable {
    public var serverID: String
    public var serverName: String?
    public var version: String
    public var host: String?
    public var port: Int?
    public var headers: Bool
    public var maxPayload: Int
    public var authRequired: Bool
    public var tlsRequired: Bool
    public var tlsAvailable: Bool
    public var jetStream: Bool
    /// Other servers of the cluster this client may reconnect to.
    public var connectURLs: [String]
    /// The server is shutting down ("lame duck mode"): reconnect elsewhere soon.
    public var lameDuckMode: Bool
    public var clientID: UInt64?
    public var nonce: String?

    enum CodingKeys: String, CodingKey {
        case serverID = "server_id", serverName = "server_name", version, host, port, headers
        case maxPayload = "max_payload", authRequired = "auth_required", tlsRequired = "tls_required"
        case tlsAvailable = "tls_available", jetStream = "jetstream", connectURLs = "connect_urls"
        case lameDuckMode = "ldm", clientID = "client_id", nonce
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        serverID = try c.decodeIfPresent(String.self, forKey: .serverID) ?? ""
        serverName = try c.decodeIfPresent(String.self, forKey: .serverName)
        version = try c.decodeIfPresent(String.self, forKey: .version) ?? ""
        host = try c.decodeIfPresent(String.self, forKey: .host)
        port = try c.decodeIfPresent(Int.self, forKey: .port)
        headers = try c.decodeIfPresent(Bool.self, forKey: .headers) ?? false
        maxPayload = try c.decodeIfPresent(Int.self, forKey: .maxPayload) ?? 1_048_576
        authRequired = try c.decodeIfPresent(Bool.self, forKey: .authRequired) ?? false
        tlsRequired = try c.decodeIfPresent(Bool.self, forKey: .tlsRequired) ?? false
        tlsAvailable = try c.decodeIfPresent(Bool.self, forKey: .tlsAvailable) ?? false
        jetStream = try c.decodeIfPresent(Bool.self, forKey: .jetStream) ?? false
        connectURLs = try c.decodeIfPresent([String].self, forKey: .connectURLs) ?? []
        lameDuckMode = try c.decodeIfPresent(Bool.self, forKey: .lameDuckMode) ?? false
        clientID = try c.decodeIfPresent(UInt64.self, forKey: .clientID)
        nonce = try c.decodeIfPresent(String.self, forKey: .nonce)
    }

    public init(serverID: String = "", version: String = "", maxPayload: Int = 1_048_576, headers: Bool = true) {
        self.serverID = serverID
        self.version = version
        self.headers = headers
        self.maxPayload = maxPayload
        authRequired = false
        tlsRequired = false
        tlsAvailable = false
        jetStream = false
        connectURLs = []
        lameDuckMode = false
    }
}
