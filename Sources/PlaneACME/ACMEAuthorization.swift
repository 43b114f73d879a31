/// An authorization (RFC 8555 §7.1.4): proof of control over one identifier, by one of
/// its challenges.
public struct ACMEAuthorization: Sendable, Hashable, Decodable {
    public enum Status: String, Sendable, Hashable, Decodable {
        case pending, valid, invalid, deactivated, expired, revoked
    }

    public var status: Status
    public var identifier: ACMEIdentifier
    public var challenges: [Challenge]
    public var wildcard: Bool?

    public struct Challenge: Sendable, Hashable, Decodable {
        public enum Status: String, Sendable, Hashable, Decodable {
            case pending, processing, valid, invalid
        }

        public var type: String
        public var url: String
        public var status: Status
        public var token: String?
        public var error: ACMEProblem?
    }

    /// The `dns-01` challenge, if the server offers one.
    public var dnsChallenge: Challenge? { challenges.first { $0.type == "dns-01" } }
}
