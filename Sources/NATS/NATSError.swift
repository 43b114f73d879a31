/// The one error type of the NATS client. `message` says what happened and what to do.
public struct NATSError: Error, Sendable, CustomStringConvertible {
    public struct Code: Sendable, Hashable, RawRepresentable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// The server sent something that is not the NATS protocol; the connection is reset.
        public static let protocolError = Code(rawValue: "protocol_error")
        /// No server of the list could be reached.
        public static let connectionFailed = Code(rawValue: "connection_failed")
        /// The server refused the credentials.
        public static let authorizationFailed = Code(rawValue: "authorization_failed")
        /// TLS was required by one side and could not be set up.
        public static let tlsFailed = Code(rawValue: "tls_failed")
        /// The client was closed (or is draining) and takes no more work.
        public static let closed = Code(rawValue: "closed")
        /// Disconnected, and the bounded reconnect buffer is full.
        public static let reconnectBufferFull = Code(rawValue: "reconnect_buffer_full")
        /// A request got no reply in time.
        public static let timeout = Code(rawValue: "timeout")
        /// A request was sent to a subject nobody subscribes to (NATS status 503).
        public static let noResponders = Code(rawValue: "no_responders")
        /// A subject, queue group or payload is not acceptable.
        public static let invalidArgument = Code(rawValue: "invalid_argument")
        /// The payload exceeds the server's `max_payload`.
        public static let payloadTooLarge = Code(rawValue: "payload_too_large")
        /// The server reported an error (`-ERR`).
        public static let serverError = Code(rawValue: "server_error")
        /// The connection was lost while an operation was in flight.
        public static let connectionLost = Code(rawValue: "connection_lost")
        /// A configuration value is unusable.
        public static let invalidConfiguration = Code(rawValue: "invalid_configuration")
        /// A JetStream API call failed; see `JetStreamError` in `cause` and the message.
        public static let jetStream = Code(rawValue: "jetstream")
        /// Optimistic concurrency: the KV key changed (or already exists).
        public static let wrongLastSequence = Code(rawValue: "wrong_last_sequence")
    }

    public var code: Code
    public var message: String
    public var cause: (any Error & Sendable)?

    public init(_ code: Code, _ message: String, cause: (any Error & Sendable)? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    public var description: String {
        if let cause { return "\(message) (\(cause))" }
        return message
    }
}
