#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// State behind a readers-writer lock: any number of readers at once (the DNS threads
/// answering queries), one writer at a time (records arriving from NATS). A `Mutex` made
/// the UDP threads queue behind each other on every query.
final class ReadWriteLock<State>: @unchecked Sendable {
    private let lock: UnsafeMutablePointer<pthread_rwlock_t>
    private var state: State

    init(_ state: State) {
        self.state = state
        lock = UnsafeMutablePointer.allocate(capacity: 1)
        lock.initialize(to: pthread_rwlock_t())
        pthread_rwlock_init(lock, nil)
    }

    deinit {
        pthread_rwlock_destroy(lock)
        lock.deallocate()
    }

    func read<T, E: Error>(_ body: (borrowing State) throws(E) -> T) throws(E) -> T {
        pthread_rwlock_rdlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        return try body(state)
    }

    func write<T, E: Error>(_ body: (inout State) throws(E) -> T) throws(E) -> T {
        pthread_rwlock_wrlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        return try body(&state)
    }
}
