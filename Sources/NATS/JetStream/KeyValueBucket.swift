import Foundation

/// How a key-value bucket is created.
public struct KeyValueConfiguration: Sendable, Hashable {
    public var bucket: String
    /// Values kept per key (1–64).
    public var history: Int = 1
    /// Entries older than this are removed (nil: never).
    public var ttl: Duration?
    public var maxValueSize: Int32?
    public var storage: StreamConfiguration.Storage = .file
    public var replicas: Int = 1
    public var description: String?

    public init(bucket: String) { self.bucket = bucket }

    var streamConfiguration: StreamConfiguration {
        var config = StreamConfiguration(name: "KV_\(bucket)", subjects: ["$KV.\(bucket).>"])
        config.description = description
        config.maxMessagesPerSubject = Int64(history)
        config.maxAge = ttl.map { $0.timeAmount } ?? 0
        config.maxMessageSize = maxValueSize ?? -1
        config.storage = storage
        config.replicas = replicas
        config.allowRollupHeaders = true
        config.denyDelete = true
        config.allowDirect = true
        config.discard = .new
        config.duplicateWindow = min(ttl.map { $0.timeAmount } ?? 120_000_000_000, 120_000_000_000)
        config.maxBytes = -1
        config.maxMessages = -1
        return config
    }
}

/// What happened to a key.
public enum KeyValueOperation: String, Sendable, Hashable {
    case put = "PUT"
    case delete = "DEL"
    case purge = "PURGE"
}

public struct KeyValueEntry: Sendable, Hashable {
    public var bucket: String
    public var key: String
    public var value: [UInt8]
    /// The stream sequence of this write; use it for `update(_:value:revision:)`.
    public var revision: UInt64
    public var operation: KeyValueOperation

    public var string: String { String(decoding: value, as: UTF8.self) }
}

public enum KeyValueWatchEvent: Sendable, Hashable {
    case entry(KeyValueEntry)
    /// All values that existed when the watch started have been delivered.
    case caughtUp
}

/// A JetStream key-value bucket (stream `KV_<bucket>`, subjects `$KV.<bucket>.<key>`),
/// compatible with the buckets other NATS clients create.
public struct KeyValueBucket: Sendable {
    public let js: JetStream
    public let name: String

    var streamName: String { "KV_\(name)" }
    func subject(_ key: String) -> String { "$KV.\(name).\(key)" }

    // MARK: Keys

    /// Keys may contain `A-Z a-z 0-9 - _ / = .`, not start or end with `.`.
    public static func validateKey(_ key: String, allowWildcards: Bool = false) throws(NATSError) {
        let valid = !key.isEmpty && !key.hasPrefix(".") && !key.hasSuffix(".") && key.utf8.allSatisfy { b in
            switch b {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "/"), UInt8(ascii: "="), UInt8(ascii: "."):
                return true
            case UInt8(ascii: "*"), UInt8(ascii: ">"):
                return allowWildcards
            default:
                return false
            }
        }
        if !valid {
            throw NATSError(.invalidArgument, "Key '\(key)' is not a valid KV key: use letters, digits and - _ / = . (not at the start or end); encode arbitrary text first.")
        }
    }

    // MARK: Reading

    /// The current value of `key`, or nil if it was never set or is deleted.
    public func get(_ key: String) async throws -> KeyValueEntry? {
        guard let entry = try await lastEntry(key), entry.operation == .put else { return nil }
        return entry
    }

    /// The last write of `key` including delete markers.
    func lastEntry(_ key: String) async throws -> KeyValueEntry? {
        try Self.validateKey(key)
        guard let message = try await js.lastMessage(stream: streamName, subject: subject(key)) else { return nil }
        return entry(from: message.subject, headers: message.headers, payload: message.payload, revision: message.streamSequence)
    }

    func entry(from subject: String, headers: NATSHeaders?, payload: [UInt8], revision: UInt64) -> KeyValueEntry {
        let prefix = "$KV.\(name)."
        let key = subject.hasPrefix(prefix) ? String(subject.dropFirst(prefix.count)) : subject
        let operation = headers?["KV-Operation"].flatMap(KeyValueOperation.init(rawValue:)) ?? .put
        return KeyValueEntry(bucket: name, key: key, value: payload, revision: revision, operation: operation)
    }

    // MARK: Writing

    /// Sets `key` to `value`; returns the new revision.
    @discardableResult
    public func put(_ key: String, value: some Collection<UInt8>) async throws -> UInt64 {
        try Self.validateKey(key)
        return try await js.publish(subject(key), payload: value).sequence
    }

    /// Sets `key` only if it has no live value (never set, deleted or purged). Exactly one of
    /// many concurrent callers wins; the others get `.wrongLastSequence`.
    @discardableResult
    public func create(_ key: String, value: some Collection<UInt8>) async throws -> UInt64 {
        let bytes = Array(value)
        do {
            return try await update(key, value: bytes, revision: 0)
        } catch let error as NATSError where error.code == .wrongLastSequence {
            // A deleted key may be created again: retry against the delete marker's revision.
            if let last = try await lastEntry(key), last.operation != .put {
                return try await update(key, value: bytes, revision: last.revision)
            }
            throw NATSError(.wrongLastSequence, "Key '\(key)' already exists in bucket '\(name)'.", cause: error.cause)
        }
    }

    /// Sets `key` only if its last revision is `revision` (optimistic concurrency).
    @discardableResult
    public func update(_ key: String, value: some Collection<UInt8>, revision: UInt64) async throws -> UInt64 {
        try Self.validateKey(key)
        return try await js.publish(subject(key), payload: value, expectedLastSubjectSequence: revision).sequence
    }

    /// Deletes `key` (a delete marker keeps the history). With `revision`, only if unchanged.
    public func delete(_ key: String, revision: UInt64? = nil) async throws {
        try Self.validateKey(key)
        _ = try await js.publish(subject(key), payload: [], headers: ["KV-Operation": "DEL"], expectedLastSubjectSequence: revision)
    }

    /// Deletes `key` and its history.
    public func purge(_ key: String) async throws {
        try Self.validateKey(key)
        _ = try await js.publish(subject(key), payload: [], headers: ["KV-Operation": "PURGE", "Nats-Rollup": "sub"])
    }

    // MARK: Watching

    /// Current values of the keys matching `key` (wildcards allowed, default all), then every
    /// change. `.caughtUp` marks the end of the initial values.
    public func watch(_ key: String = ">", includeHistory: Bool = false, idleHeartbeat: Duration = .seconds(5)) async throws -> KeyValueWatch {
        try Self.validateKey(key, allowWildcards: true)
        var options = OrderedConsumerOptions(filterSubject: subject(key), deliverPolicy: includeHistory ? .all : .lastPerSubject)
        options.idleHeartbeat = idleHeartbeat
        return KeyValueWatch(consumer: try await js.orderedConsumer(stream: streamName, options: options), bucket: self)
    }

    /// All keys with a live value.
    public func keys() async throws -> [String] {
        var keys = Set<String>()
        for try await event in try await watch() {
            switch event {
            case .entry(let entry):
                if entry.operation == .put { keys.insert(entry.key) } else { keys.remove(entry.key) }
            case .caughtUp:
                return keys.sorted()
            }
        }
        return keys.sorted()
    }
}

extension JetStream {
    /// Opens bucket `name`, creating it with `configuration` if it does not exist.
    public func keyValue(_ configuration: KeyValueConfiguration) async throws -> KeyValueBucket {
        try validateName(configuration.bucket, what: "bucket name")
        _ = try await ensureStream(configuration.streamConfiguration)
        return KeyValueBucket(js: self, name: configuration.bucket)
    }

    /// Opens an existing bucket; throws if it does not exist.
    public func existingKeyValue(_ bucket: String) async throws -> KeyValueBucket {
        try validateName(bucket, what: "bucket name")
        guard try await streamInfo("KV_\(bucket)") != nil else {
            throw NATSError(.jetStream, "Key-value bucket '\(bucket)' does not exist.")
        }
        return KeyValueBucket(js: self, name: bucket)
    }

    public func deleteKeyValue(_ bucket: String) async throws {
        try await deleteStream("KV_\(bucket)")
    }
}
