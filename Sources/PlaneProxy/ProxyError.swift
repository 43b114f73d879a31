/// Errors of the proxy: what went wrong and what to do about it.
public struct ProxyError: Error, Sendable, CustomStringConvertible {
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }
        /// A listener could not bind (address in use, no permission for a port below 1024).
        public static let bindFailed = Code(rawValue: "bind_failed")
        /// The backend could not be reached (refused, unreachable, connect timeout).
        public static let upstreamUnreachable = Code(rawValue: "upstream_unreachable")
        /// The certificate or key could not be read, parsed, or do not belong together.
        public static let certificateInvalid = Code(rawValue: "certificate_invalid")
        /// A request or response is not valid HTTP/1.x (answered 400, or 502 for a backend).
        public static let malformedMessage = Code(rawValue: "malformed_message")
        /// A head is larger than `[proxy] max_header_bytes` or has more lines than
        /// `max_header_count` (answered 431, or 502 for a backend).
        public static let headTooLarge = Code(rawValue: "head_too_large")
        /// An HTTP version other than 1.0 and 1.1 (answered 505).
        public static let unsupportedVersion = Code(rawValue: "unsupported_version")
    }

    public var code: Code
    public var message: String
    public var cause: (any Error)?
    /// When a configured limit was hit: its key (`proxy.max_header_count`).
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
