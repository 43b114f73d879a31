/// Handling a stream of requests (NATS deliveries) with at most `limit` handlers running at
/// once: the next element is taken from the sequence only when fewer than `limit` run, so a
/// flood waits in the sequence's own bounded buffer (a NATS subscription's, which drops and
/// reports beyond it) instead of becoming an unbounded number of tasks.
public enum BoundedConcurrency {
    /// Handlers the controller and the drone run at once per subscription.
    public static let handlersPerSubscription = 1024

    /// Runs `handle` for every element of `sequence`, at most `limit` at once; returns when
    /// the sequence ends and every handler has returned.
    public static func forEach<S: AsyncSequence>(_ sequence: S, limit: Int, _ handle: @escaping @Sendable (S.Element) async -> Void) async
    where S.Element: Sendable, S.Failure == Never {
        let limit = Swift.max(1, limit)
        await withTaskGroup(of: Void.self) { group in
            var running = 0
            for await element in sequence {
                if running >= limit {
                    await group.next()
                    running -= 1
                }
                running += 1
                group.addTask { await handle(element) }
            }
        }
    }
}
