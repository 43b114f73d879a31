/// The ACME server's directory (RFC 8555 §7.1.1): the URLs of its resources.
public struct ACMEDirectory: Sendable, Hashable, Decodable {
    public var newNonce: String
    public var newAccount: String
    public var newOrder: String
    public var meta: Meta?

    public struct Meta: Sendable, Hashable, Decodable {
        public var termsOfService: String?
        public var externalAccountRequired: Bool?
    }
}
