import Synchronization

/// Wakes the tasks that wait for something about a plugin to change: a connection accepted
/// or closed, a call timed out, the process exited, the current connection replaced, the
/// drone stopping. A waiter reads `generation`, checks what it waits for, and then waits
/// for a change after that generation, so a change between its check and its wait is not
/// missed (a condition variable's pattern, without polling).
final class PluginStateChanges: Sendable {
    private struct State {
        var generation: UInt64 = 0
        var nextWaiter: UInt64 = 0
        var waiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
        /// Waiters cancelled before their continuation was stored.
        var cancelled: Set<UInt64> = []
    }

    private let state = Mutex(State())

    var generation: UInt64 { state.withLock { $0.generation } }

    /// Something changed: every waiter goes and looks.
    func signal() {
        let waiters = state.withLock { state in
            state.generation &+= 1
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Returns once something changed after `seen` (at once if it already has), at
    /// `deadline` when one is given, or when the task is cancelled.
    func wait(after seen: UInt64, until deadline: ContinuousClock.Instant? = nil) async {
        guard let deadline else {
            await changed(after: seen)
            return
        }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.changed(after: seen) }
            group.addTask { try? await Task.sleep(until: deadline, clock: .continuous) }
            await group.next()
            group.cancelAll()
        }
    }

    /// Waits until `condition` holds (true) or `deadline` passes (false); the condition is
    /// checked again after every change.
    func wait(until deadline: ContinuousClock.Instant? = nil, for condition: () -> Bool) async -> Bool {
        while true {
            let seen = generation
            if condition() { return true }
            if let deadline, ContinuousClock.now >= deadline { return false }
            await wait(after: seen, until: deadline)
        }
    }

    private func changed(after seen: UInt64) async {
        let key = state.withLock { state in
            state.nextWaiter += 1
            return state.nextWaiter
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now = state.withLock { state in
                    if state.generation != seen || state.cancelled.remove(key) != nil { return true }
                    state.waiters[key] = continuation
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { state in
                guard let waiter = state.waiters.removeValue(forKey: key) else {
                    state.cancelled.insert(key)
                    return nil as CheckedContinuation<Void, Never>?
                }
                return waiter
            }
            waiter?.resume()
        }
        // A cancellation that came after the continuation was resumed left its mark.
        state.withLock { _ = $0.cancelled.remove(key) }
    }
}
