/// Errors of certificate issuance and renewal: what went wrong and what to do about it.
public struct ACMEError: Error, Sendable, CustomStringConvertible {
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }
        /// The ACME server could not be reached or did not answer in time.
        public static let serverUnreachable = Code(rawValue: "server_unreachable")
        /// The ACME server answered something that is not valid ACME (bad JSON, missing header).
        public static let protocolViolation = Code(rawValue: "protocol_violation")
        /// The ACME server answered with a problem document (RFC 8555 §6.7).
        public static let serverProblem = Code(rawValue: "server_problem")
        /// The account could not be created or found (including a refused external account binding).
        public static let account = Code(rawValue: "account")
        /// A challenge or authorization ended `invalid`, or did not become valid in time.
        public static let validationFailed = Code(rawValue: "validation_failed")
        /// The order ended `invalid` or did not become ready/valid in time.
        public static let orderFailed = Code(rawValue: "order_failed")
        /// The controller did not accept the DNS-01 TXT record (refused, no responder, timeout).
        public static let dnsChallenge = Code(rawValue: "dns_challenge")
        /// The issued chain is unusable (does not parse, wrong names, not our key).
        public static let invalidCertificate = Code(rawValue: "invalid_certificate")
        /// A file in the state directory or the certificate files could not be read or written.
        public static let storage = Code(rawValue: "storage")
        /// A setting is unusable (bad URL, EAB key that is not base64url, unreadable CA bundle).
        public static let configuration = Code(rawValue: "configuration")
        /// The certificate lease or the shared certificate in JetStream could not be used.
        public static let coordination = Code(rawValue: "coordination")
    }

    public var code: Code
    public var message: String
    public var cause: (any Error)?

    public init(_ code: Code, _ message: String, cause: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    public var description: String {
        if let cause { return "\(message) (\(cause))" }
        return message
    }
}
