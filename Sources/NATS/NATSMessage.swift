import NIOCore

/// A message delivered to a subscription.
public struct NATSMessage: Sendable, Hashable {
    public var subject: String
    public var replyTo: String?
    public var headers: NATSHeaders?
    public var payload: ByteBuffer
    /// The subscription id it was delivered for.
    public var sid: UInt64

    public init(subject: String, replyTo: String? = nil, headers: NATSHeaders? = nil, payload: ByteBuffer, sid: UInt64 = 0) {
        self.subject = subject
        self.replyTo = replyTo
        self.headers = headers
        self.payload = payload
        self.sid = sid
    }

    public var bytes: [UInt8] { Array(payload.readableBytesView) }
    public var string: String { String(buffer: payload) }
    /// The NATS status of a header-only status message (e.g. 503 no responders, 100 heartbeat).
    public var status: Int? { headers?.status }
}
