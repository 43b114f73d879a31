import Synchronization

/// Connections (or long-lived streams) a server holds at once, bounded: each accepted one
/// takes a place (`admit`) and gives it back when it ends (`release`); one accepted while
/// every place is taken is refused by its server (closed, or answered 503). Shared by a
/// server's event loops and tasks (an atomic, touched once per connection, never per
/// request).
public final class ConnectionLimit: Sendable {
    public let limit: Int
    private let open = Atomic<Int>(0)

    public init(limit: Int) {
        self.limit = limit
    }

    /// Connections holding a place now.
    public var count: Int { open.load(ordering: .relaxed) }

    /// Takes a place; false (nothing taken) when all `limit` are taken.
    public func admit() -> Bool {
        var current = open.load(ordering: .relaxed)
        while current < limit {
            let (exchanged, original) = open.compareExchange(expected: current, desired: current + 1, ordering: .relaxed)
            if exchanged { return true }
            current = original
        }
        return false
    }

    /// Gives back a place `admit` took.
    public func release() {
        open.subtract(1, ordering: .relaxed)
    }
}
