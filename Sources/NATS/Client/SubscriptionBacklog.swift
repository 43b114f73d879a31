import Synchronization

/// The bytes a subscription holds for its consumer, bounded: delivery takes room for a
/// message before buffering it (and drops it, as a slow consumer's, when there is none);
/// the consumer gives the room back as it takes the message. Without it a subscription is
/// bounded in messages only, and a peer publishing large messages faster than they are
/// read could make it hold `subscriptionBufferSize` times the largest payload.
final class SubscriptionBacklog: Sendable {
    let limit: Int
    private let bytes = Atomic<Int>(0)

    init(limit: Int) { self.limit = limit }

    /// Bytes buffered now.
    var count: Int { bytes.load(ordering: .relaxed) }

    /// Takes room for `size` bytes; false (nothing taken) when they do not fit. One message
    /// always fits into an empty backlog, so that a message larger than the limit is
    /// delivered to a consumer that keeps up.
    func reserve(_ size: Int) -> Bool {
        var current = bytes.load(ordering: .relaxed)
        while current == 0 || current <= limit - size {
            let (exchanged, original) = bytes.compareExchange(expected: current, desired: current + size, ordering: .relaxed)
            if exchanged { return true }
            current = original
        }
        return false
    }

    /// Gives back room `reserve` took.
    func release(_ size: Int) {
        bytes.subtract(size, ordering: .relaxed)
    }

    /// What a message counts: its payload, subject, reply subject and headers.
    static func size(of message: NATSMessage) -> Int {
        var size = message.payload.readableBytes + message.subject.utf8.count + (message.replyTo?.utf8.count ?? 0)
        if let headers = message.headers {
            for field in headers.fields { size += field.name.utf8.count + field.value.utf8.count + 4 }
        }
        return size
    }
}
