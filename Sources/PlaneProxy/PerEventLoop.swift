import NIOCore
import Synchronization

/// One value per event loop of the proxy (its upstream pool, its metrics shard), made on
/// first use. Each entry keeps its event loop, so a loop's identity is never reused for
/// another loop while the entry exists.
final class PerEventLoop<Value: Sendable>: Sendable {
    private let entries = Mutex<[ObjectIdentifier: (loop: any EventLoop, value: Value)]>([:])

    /// The value of `eventLoop`, made by `make` the first time.
    func value(for eventLoop: any EventLoop, make: (any EventLoop) -> Value) -> Value {
        entries.withLock { entries in
            let key = ObjectIdentifier(eventLoop)
            if let entry = entries[key] { return entry.value }
            let value = make(eventLoop)
            entries[key] = (eventLoop, value)
            return value
        }
    }

    /// Every value made so far.
    var values: [Value] { entries.withLock { $0.values.map(\.value) } }
}
