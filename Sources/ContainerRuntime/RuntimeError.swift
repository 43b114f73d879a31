import PlaneCore

/// The one error type of container runtimes. Every runtime (Docker, OCI, external plugins)
/// reports failures with these codes, so the drone can react the same way to all of them.
public struct RuntimeError: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Code: Sendable, Hashable, RawRepresentable, Codable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public init(from decoder: any Decoder) throws { rawValue = try decoder.singleValueContainer().decode(String.self) }
        public func encode(to encoder: any Encoder) throws {
            var c = encoder.singleValueContainer()
            try c.encode(rawValue)
        }
        public var description: String { rawValue }

        /// The image cannot be found or fetched (unknown name, no access, pull policy `Never`).
        public static let imageUnavailable = Code(rawValue: "image_unavailable")
        /// The spec is not acceptable (bad option, unsupported network mode, forbidden mount).
        public static let invalidSpec = Code(rawValue: "invalid_spec")
        /// The runtime holds nothing for that backend.
        public static let notFound = Code(rawValue: "not_found")
        /// A backend with that id already exists in the runtime.
        public static let alreadyExists = Code(rawValue: "already_exists")
        /// The runtime itself cannot be reached or is broken (daemon down, binary missing).
        public static let unavailable = Code(rawValue: "unavailable")
        /// The runtime does not offer this operation.
        public static let unsupported = Code(rawValue: "unsupported")
        /// An operation did not finish in time.
        public static let timeout = Code(rawValue: "timeout")
        /// Anything else; the message says what happened.
        public static let `internal` = Code(rawValue: "internal")
    }

    public var code: Code
    public var message: String
    /// The underlying failure, described (errors of other libraries are not all Sendable).
    public var cause: String?
    /// When a configured input limit refused the operation: its key (`agent.oci.max_layer_bytes`),
    /// which the drone counts in `/metrics`.
    public var limit: String?

    public init(_ code: Code, _ message: String, cause: String? = nil, limit: String? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
        self.limit = limit
    }

    public init(_ code: Code, _ message: String, underlying: any Error) {
        self.init(code, message, cause: String(describing: underlying))
    }

    public var description: String {
        if let cause { return "\(message) (\(cause))" }
        return message
    }
}
