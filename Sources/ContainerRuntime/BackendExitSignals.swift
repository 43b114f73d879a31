import PlaneCore
import Synchronization

/// What a runtime with a native `wait(for:)` builds it on: waiters per backend, woken when
/// the runtime learns that a backend may have ended (an exit event, an exit record, its
/// event source reconnecting). A woken waiter asks the runtime's `status` again, so a wake-up
/// too many costs one status call and one that comes before the waiter looked is not lost
/// (the waiter registers before it looks). Every `recheck` a waiter looks anyway: a
/// backstop, not the way exits are noticed.
public final class BackendExitSignals: Sendable {
    private struct State {
        var waiters: [BackendID: [UInt64: AsyncStream<Void>.Continuation]] = [:]
        var next: UInt64 = 0
    }

    private let state = Mutex(State())
    let recheck: Duration

    public init(recheck: Duration = .seconds(10)) {
        self.recheck = recheck
    }

    /// Waits until `status()` says the backend is not running (`exited`, `killed` or
    /// `unknown`) and returns that; `.unknown` when the calling task is cancelled.
    public func wait(for backend: BackendID, status: () async throws(RuntimeError) -> RuntimeStatus) async throws(RuntimeError) -> RuntimeStatus {
        while !Task.isCancelled {
            let (stream, continuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
            let id = state.withLock { state in
                let id = state.next
                state.next &+= 1
                state.waiters[backend, default: [:]][id] = continuation
                return id
            }
            defer { remove(backend, id) }
            let current = try await status()
            switch current {
            case .exited, .killed, .unknown: return current
            case .running, .created: break
            }
            let recheck = recheck
            await withTaskGroup(of: Void.self) { group in
                group.addTask { for await _ in stream { break } }
                group.addTask { try? await Task.sleep(for: recheck) }
                await group.next()
                group.cancelAll()
            }
        }
        return .unknown
    }

    /// The backend may have ended: its waiters look again.
    public func signal(_ backend: BackendID) {
        let continuations = state.withLock { $0.waiters[backend].map { Array($0.values) } ?? [] }
        for continuation in continuations { continuation.yield() }
    }

    /// Every waiter looks again (the runtime's source of exits reconnected and may have
    /// missed some).
    public func signalAll() {
        let continuations = state.withLock { $0.waiters.values.flatMap(\.values) }
        for continuation in continuations { continuation.yield() }
    }

    /// Backends someone waits for.
    public var waitedFor: Int { state.withLock { $0.waiters.count } }

    private func remove(_ backend: BackendID, _ id: UInt64) {
        let continuation = state.withLock { state -> AsyncStream<Void>.Continuation? in
            let removed = state.waiters[backend]?.removeValue(forKey: id)
            if state.waiters[backend]?.isEmpty == true { state.waiters[backend] = nil }
            return removed
        }
        continuation?.finish()
    }
}
