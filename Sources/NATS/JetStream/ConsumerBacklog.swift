import Synchronization

/// What an ordered consumer has delivered and its reader has not taken yet, bounded through
/// JetStream flow control: while it is over `limit`, the server's flow-control requests
/// (and the "stalled" heartbeats that repeat them) are held instead of answered, so the
/// server stops sending after its flow-control window; the reader's next take below the
/// limit sends the held answer. Without it a slow reader (an HTTP client reading a status
/// stream slowly) makes the consumer buffer everything the stream holds and receives.
final class ConsumerBacklog: Sendable {
    let limit: Int
    private let state = Mutex<(bytes: Int, heldReply: String?)>((0, nil))

    init(limit: Int) { self.limit = limit }

    /// Bytes delivered and not taken now.
    var bytes: Int { state.withLock { $0.bytes } }

    /// A message of `size` bytes was handed to the reader's stream.
    func delivered(_ size: Int) {
        state.withLock { $0.bytes += size }
    }

    /// The reader took a message of `size` bytes: the flow-control answer to send now,
    /// when one was held and the backlog is back within its limit.
    func taken(_ size: Int) -> String? {
        state.withLock { state in
            state.bytes -= size
            guard state.bytes <= limit, let reply = state.heldReply else { return nil }
            state.heldReply = nil
            return reply
        }
    }

    /// A flow-control request answered at `reply`: true when it is to be answered now;
    /// otherwise it is held until the reader catches up.
    func flowControl(reply: String) -> Bool {
        state.withLock { state in
            guard state.bytes > limit else { return true }
            state.heldReply = reply
            return false
        }
    }

    /// The server-side consumer was replaced: a request held for the old one is void.
    func consumerReplaced() {
        state.withLock { $0.heldReply = nil }
    }

    /// What a message counts: its payload, subject and headers.
    static func size(of message: JetStreamMessage) -> Int {
        var size = message.payload.count + message.subject.utf8.count
        if let headers = message.headers {
            for field in headers.fields { size += field.name.utf8.count + field.value.utf8.count + 4 }
        }
        return size
    }
}
