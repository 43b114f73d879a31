/// A subscription: an `AsyncSequence` of messages with a bounded buffer. Ending the
/// iteration, cancelling its task, or dropping the last copy of the subscription value
/// unsubscribes; keep it while you want messages.
public struct NATSSubscription: AsyncSequence, Sendable {
    public typealias Element = NATSMessage

    public let subject: String
    public let queue: String?
    public let sid: UInt64
    let stream: AsyncStream<NATSMessage>
    let client: NATSClient

    public func makeAsyncIterator() -> AsyncStream<NATSMessage>.AsyncIterator { stream.makeAsyncIterator() }

    /// Stops delivery now (or after `max` more messages in total have been delivered).
    public func unsubscribe(after max: Int? = nil) throws(NATSError) {
        try client.unsubscribe(sid: sid, after: max)
    }

    /// Messages dropped because the consumer was too slow.
    public var droppedCount: Int { client.droppedCount(sid: sid) }
}
