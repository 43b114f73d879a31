/// Errors of the drone: what went wrong and what to do about it.
public struct DroneError: Error, Sendable, CustomStringConvertible {
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }
        /// SQLite could not be opened, read or written.
        public static let storeFailed = Code(rawValue: "store_failed")
        /// A spawn for a backend id this drone already knows.
        public static let duplicateBackend = Code(rawValue: "duplicate_backend")
        /// A spawn request the drone refuses (invalid image, port, mounts, ...).
        public static let invalidSpawn = Code(rawValue: "invalid_spawn")
        /// The drone cannot start (config, runtime, NATS, IP lookup).
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

    public var description: String { message }
}
