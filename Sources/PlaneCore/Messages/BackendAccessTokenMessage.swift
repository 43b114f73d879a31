/// Extension (issue 15): grants or revokes a per-connect access token of a backend
/// (subject `cluster.{cluster_s}.backend.{backend}.token`, request). The drone running the
/// backend answers `true` once it has stored the change and its proxy accepts (or no longer
/// accepts) the token beside the backend's own bearer token; other drones do not answer.
public struct BackendAccessTokenMessage: Sendable, Hashable, Codable {
    public var cluster: ClusterName
    public var backendID: BackendID
    public var token: String
    /// True: the token stops working.
    public var revoke: Bool

    /// `{backend_id}.` and 32 letters or digits.
    public static let randomLength = 32

    public init(cluster: ClusterName, backendID: BackendID, token: String, revoke: Bool = false) throws(PlaneCoreError) {
        guard Self.backendID(of: token) == backendID else {
            throw PlaneCoreError(.invalidMessage, "An access token of backend \(backendID) has the form \(backendID).<\(Self.randomLength) letters or digits>.", field: "token")
        }
        self.cluster = cluster
        self.backendID = backendID
        self.token = token
        self.revoke = revoke
    }

    /// The backend a well-formed token belongs to (nil: not a token of this form).
    public static func backendID(of token: String) -> BackendID? {
        guard let dot = token.lastIndex(of: ".") else { return nil }
        let random = token[token.index(after: dot)...]
        guard random.utf8.count == randomLength, random.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x41...0x5A).contains($0) || (0x61...0x7A).contains($0) }) else {
            return nil
        }
        return try? BackendID(String(token[..<dot]))
    }

    enum CodingKeys: String, CodingKey {
        case cluster
        case backendID = "backend_id"
        case token, revoke
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        do {
            try self.init(cluster: try c.decode(ClusterName.self, forKey: .cluster), backendID: try c.decode(BackendID.self, forKey: .backendID),
                          token: try c.decode(String.self, forKey: .token), revoke: try c.decode(Bool.self, forKey: .revoke, default: false))
        } catch let error as PlaneCoreError {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath + [CodingKeys.token], debugDescription: error.message, underlyingError: error))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(cluster, forKey: .cluster)
        try c.encode(backendID, forKey: .backendID)
        try c.encode(token, forKey: .token)
        try c.encode(revoke, forKey: .revoke)
    }
}
