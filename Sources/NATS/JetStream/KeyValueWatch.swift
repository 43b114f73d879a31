/// A watch of a key-value bucket: the current values of the matching keys, `.caughtUp`,
/// then every change. Events are read from the watch's ordered consumer as its reader asks
/// for them, so a reader that is behind holds the server back (the consumer's flow control)
/// rather than a buffer growing in between. Ends when its reader's task is cancelled or
/// `stop()` is called; the last iterator gone stops it too.
public struct KeyValueWatch: AsyncSequence, Sendable {
    public typealias Element = KeyValueWatchEvent

    let consumer: OrderedConsumer
    let bucket: KeyValueBucket

    /// Stops the watch and deletes its server-side consumer.
    public func stop() { consumer.stop() }

    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: OrderedConsumer.AsyncIterator
        let bucket: KeyValueBucket
        /// Whether the initial values were all delivered (nothing was pending at the start,
        /// or an entry with nothing pending after it came).
        var caughtUp: Bool
        /// `.caughtUp` is the next event.
        var caughtUpDue: Bool

        public mutating func next() async throws -> KeyValueWatchEvent? {
            if caughtUpDue {
                caughtUpDue = false
                return .caughtUp
            }
            guard let message = try await base.next() else { return nil }
            if !caughtUp, message.pending == 0 {
                caughtUp = true
                caughtUpDue = true
            }
            return .entry(bucket.entry(from: message.subject, headers: message.headers, payload: message.payload, revision: message.streamSequence))
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        let nothingPending = consumer.initialPending == 0
        return AsyncIterator(base: consumer.makeAsyncIterator(), bucket: bucket, caughtUp: nothingPending, caughtUpDue: nothingPending)
    }
}
