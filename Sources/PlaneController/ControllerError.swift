/// Errors of the controller: what went wrong, for the operator or the client.
public struct ControllerError: Error, Sendable, CustomStringConvertible {
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }
        /// A client's request cannot be used (bad JSON, invalid id or cluster).
        public static let invalidRequest = Code(rawValue: "invalid_request")
        /// The caller is authenticated but may not do this (an env name or mount the
        /// service does not allow).
        public static let forbidden = Code(rawValue: "forbidden")
        /// What the request names does not exist (a service).
        public static let notFound = Code(rawValue: "not_found")
        /// No ready drone accepted the backend.
        public static let noDroneAvailable = Code(rawValue: "no_drone_available")
        /// NATS or JetStream failed under the controller.
        public static let unavailable = Code(rawValue: "unavailable")
        /// A listener could not be started.
        public static let startupFailed = Code(rawValue: "startup_failed")
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
