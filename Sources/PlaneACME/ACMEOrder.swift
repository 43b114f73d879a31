/// An order (RFC 8555 §7.1.3) and the identifiers it names.
public struct ACMEOrder: Sendable, Hashable, Decodable {
    public enum Status: String, Sendable, Hashable, Decodable {
        case pending, ready, processing, valid, invalid
    }

    public var status: Status
    public var identifiers: [ACMEIdentifier]
    public var authorizations: [String]
    public var finalize: String
    public var certificate: String?
    public var error: ACMEProblem?
}

/// A `dns` identifier (a name or a wildcard `*.name`).
public struct ACMEIdentifier: Sendable, Hashable, Codable {
    public var type: String
    public var value: String

    public init(dns value: String) {
        self.type = "dns"
        self.value = value
    }
}
