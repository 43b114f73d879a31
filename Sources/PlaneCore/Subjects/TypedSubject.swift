/// A subject on which `Request` is sent as a NATS request and `Reply` comes back.
public struct RequestSubject<Request: Codable & Sendable, Reply: Codable & Sendable>: Sendable, Hashable, CustomStringConvertible {
    public let subject: String
    public init(_ subject: String) { self.subject = subject }
    public var description: String { subject }
}

/// A subject on which `Message` is published without a reply.
public struct PublishSubject<Message: Codable & Sendable>: Sendable, Hashable, CustomStringConvertible {
    public let subject: String
    public init(_ subject: String) { self.subject = subject }
    public var description: String { subject }
}

/// A subscription pattern (may contain `*` / `>`) matching subjects that carry `Message`
/// (and, for request subjects, expect `Reply`; `Never`-like `NullReply` for publishes).
public struct SubjectPattern<Message: Codable & Sendable, Reply: Codable & Sendable>: Sendable, Hashable, CustomStringConvertible {
    public let pattern: String
    public init(_ pattern: String) { self.pattern = pattern }
    public var description: String { pattern }

    /// The token at `index` of a concrete subject matched by this pattern (e.g. the backend
    /// id of `cluster.c.backend.{id}.terminate` is token 3).
    public static func token(_ index: Int, of subject: String) -> Substring? {
        let tokens = subject.split(separator: ".", omittingEmptySubsequences: false)
        return index < tokens.count ? tokens[index] : nil
    }
}
