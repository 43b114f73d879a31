/// What can go wrong in the DNS layer: a packet that does not parse, a name that is not a
/// valid domain name, a configuration the server cannot use, a socket it cannot bind.
public struct DNSError: Error, Sendable, CustomStringConvertible {
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// The packet is not a well-formed DNS message.
        public static let malformedMessage = Code(rawValue: "malformed_message")
        /// A domain name is too long, has an empty or too long label, or bad characters.
        public static let invalidName = Code(rawValue: "invalid_name")
        /// The server configuration cannot be used (e.g. a bad SOA mailbox).
        public static let invalidConfiguration = Code(rawValue: "invalid_configuration")
        /// A socket could not be bound.
        public static let bindFailed = Code(rawValue: "bind_failed")
        /// A record was refused because the store is at one of its limits (`limit` names it).
        public static let limitExceeded = Code(rawValue: "limit_exceeded")
        /// A message does not fit DNS's 16-bit counts and lengths.
        public static let messageTooLarge = Code(rawValue: "message_too_large")
    }

    public var code: Code
    public var message: String
    public var cause: (any Error)?
    /// For `limitExceeded`: the configuration key of the limit (`dns.max_records`).
    public var limit: String?

    public init(_ code: Code, _ message: String, cause: (any Error)? = nil, limit: String? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
        self.limit = limit
    }

    public var description: String {
        if let cause { return "\(message) (\(cause))" }
        return message
    }
}
