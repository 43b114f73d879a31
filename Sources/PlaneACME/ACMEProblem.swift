/// A problem document (RFC 8555 §6.7, RFC 7807) the ACME server answers errors with.
public struct ACMEProblem: Sendable, Hashable, Decodable, CustomStringConvertible {
    public var type: String?
    public var detail: String?
    public var status: Int?
    public var subproblems: [ACMEProblem]?

    public init(type: String?, detail: String?, status: Int? = nil) {
        self.type = type
        self.detail = detail
        self.status = status
    }

    static let prefix = "urn:ietf:params:acme:error:"

    /// The ACME error name without its URN prefix (`badNonce`, `unauthorized`, ...).
    public var name: String? {
        guard let type else { return nil }
        return type.hasPrefix(Self.prefix) ? String(type.dropFirst(Self.prefix.count)) : type
    }

    public var isBadNonce: Bool { name == "badNonce" }

    public var description: String {
        var text = "\(name ?? "problem"): \(detail ?? "no detail")"
        for sub in subproblems ?? [] { text += "; \(sub.description)" }
        return text
    }
}
