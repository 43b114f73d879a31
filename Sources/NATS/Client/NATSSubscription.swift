/// A subscription: an `AsyncSequence` of messages with a buffer bounded in messages and
/// bytes (`subscriptionBufferSize`, `subscriptionBufferBytes`). Ending the
/// iteration, cancelling its task, or dropping the last copy of the subscription value
/// unsubscribes; keep it while you want messages.
public struct NATSSubscription: AsyncSequence, Sendable {
    public typealias Element = NATSMessage

    public let subject: String
    public let queue: String?
    public let sid: UInt64
    let stream: AsyncStream<NATSMessage>
    let backlog: SubscriptionBacklog
    let client: NATSClient

    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: AsyncStream<NATSMessage>.AsyncIterator
        let backlog: SubscriptionBacklog

        public mutating func next() async -> NATSMessage? {
            guard let message = await base.next() else { return nil }
            backlog.release(SubscriptionBacklog.size(of: message))
            return message
        }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(base: stream.makeAsyncIterator(), backlog: backlog) }

    /// Stops delivery now (or after `max` more messages in total have been delivered).
    public func unsubscribe(after max: Int? = nil) throws(NATSError) {
        try client.unsubscribe(sid: sid, after: max)
    }

    /// Messages dropped because the consumer was too slow.
    public var droppedCount: Int { client.droppedCount(sid: sid) }
}
