/// A JetStream stream's configuration (the fields Plane uses; unset fields take the
/// server's defaults). Durations are nanoseconds on the wire.
public struct StreamConfiguration: Sendable, Hashable, Codable {
    public var name: String
    public var subjects: [String]?
    public var description: String?
    public var retention: Retention?
    public var maxConsumers: Int?
    public var maxMessages: Int64?
    public var maxBytes: Int64?
    /// Nanoseconds; 0 = unlimited.
    public var maxAge: Int64?
    public var maxMessagesPerSubject: Int64?
    public var maxMessageSize: Int32?
    public var discard: Discard?
    public var storage: Storage?
    public var replicas: Int?
    /// Nanoseconds.
    public var duplicateWindow: Int64?
    public var allowRollupHeaders: Bool?
    public var denyDelete: Bool?
    public var denyPurge: Bool?
    public var allowDirect: Bool?

    public init(name: String, subjects: [String]? = nil) {
        self.name = name
        self.subjects = subjects
    }

    public enum Retention: String, Sendable, Hashable, Codable { case limits, interest, workqueue }
    public enum Discard: String, Sendable, Hashable, Codable { case old, new }
    public enum Storage: String, Sendable, Hashable, Codable { case file, memory }

    enum CodingKeys: String, CodingKey {
        case name, subjects, description, retention
        case maxConsumers = "max_consumers", maxMessages = "max_msgs", maxBytes = "max_bytes", maxAge = "max_age"
        case maxMessagesPerSubject = "max_msgs_per_subject", maxMessageSize = "max_msg_size"
        case discard, storage, replicas = "num_replicas", duplicateWindow = "duplicate_window"
        case allowRollupHeaders = "allow_rollup_hdrs", denyDelete = "deny_delete", denyPurge = "deny_purge"
        case allowDirect = "allow_direct"
    }
}

/// `STREAM.INFO` / `STREAM.CREATE` answer.
public struct StreamInfo: Sendable, Hashable, Decodable {
    public var config: StreamConfiguration
    public var state: StreamState
}

public struct StreamState: Sendable, Hashable, Decodable {
    public var messages: UInt64
    public var bytes: UInt64
    public var firstSequence: UInt64
    public var lastSequence: UInt64
    public var consumerCount: Int

    enum CodingKeys: String, CodingKey {
        case messages, bytes
        case firstSequence = "first_seq", lastSequence = "last_seq", consumerCount = "consumer_count"
    }
}

/// The acknowledgement of a JetStream publish.
public struct PublishAck: Sendable, Hashable, Decodable {
    public var stream: String
    public var sequence: UInt64
    public var duplicate: Bool

    enum CodingKeys: String, CodingKey { case stream, sequence = "seq", duplicate }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        stream = try c.decode(String.self, forKey: .stream)
        sequence = try c.decode(UInt64.self, forKey: .sequence)
        duplicate = try c.decodeIfPresent(Bool.self, forKey: .duplicate) ?? false
    }
}

/// A message read from a stream.
public struct JetStreamMessage: Sendable, Hashable {
    public var subject: String
    public var headers: NATSHeaders?
    public var payload: [UInt8]
    public var streamSequence: UInt64
    /// Nanoseconds since the epoch when the server stored it.
    public var timestampNanoseconds: Int64
    /// Messages still pending for the consumer after this one (0 = caught up).
    public var pending: UInt64

    public var string: String { String(decoding: payload, as: UTF8.self) }
}
