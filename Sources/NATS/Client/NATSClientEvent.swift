/// Connection-level events, for logs and metrics (`NATSClient.events()`).
public enum NATSClientEvent: Sendable, Equatable {
    case connected(server: String)
    case disconnected(server: String)
    case reconnected(server: String)
    /// The server announced it is shutting down.
    case lameDuckMode(server: String)
    /// A subscription's buffer was full; `dropped` messages so far were discarded.
    case slowConsumer(subject: String, sid: UInt64, dropped: Int)
    case serverError(String)
    case closed
}
