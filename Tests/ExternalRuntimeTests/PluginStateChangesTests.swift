@testable import ExternalRuntime
import Synchronization
import Testing

/// The wake-up the plugin supervisor's waits are built on.
@Suite(.timeLimit(.minutes(1)))
struct PluginStateChangesTests {
    @Test func aChangeAfterTheLookIsNotMissed() async {
        let changes = PluginStateChanges()
        let seen = changes.generation
        // The change happens between a waiter's look and its wait: it returns at once.
        changes.signal()
        await changes.wait(after: seen)
        #expect(changes.generation == seen + 1)
    }

    @Test func aWaiterSleepsUntilSignalled() async {
        let changes = PluginStateChanges()
        let woken = Mutex(false)
        let seen = changes.generation
        let waiter = Task {
            await changes.wait(after: seen)
            woken.withLock { $0 = true }
        }
        try? await Task.sleep(for: .milliseconds(200))
        #expect(!woken.withLock { $0 }, "nothing changed yet")
        changes.signal()
        await waiter.value
        #expect(woken.withLock { $0 })
    }

    @Test func aDeadlineOrACancellationEndsTheWait() async {
        let changes = PluginStateChanges()
        let start = ContinuousClock.now
        await changes.wait(after: changes.generation, until: .now + .milliseconds(100))
        #expect(ContinuousClock.now - start >= .milliseconds(100))
        #expect(changes.generation == 0)

        let waiter = Task { await changes.wait(after: changes.generation) }
        try? await Task.sleep(for: .milliseconds(50))
        waiter.cancel()
        await waiter.value
        // Cancelled before it even waited.
        let early = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            await changes.wait(after: changes.generation)
        }
        await early.value
    }

    @Test func aConditionIsCheckedAfterEveryChange() async {
        let changes = PluginStateChanges()
        let value = Mutex(0)
        #expect(await changes.wait(until: .now + .milliseconds(50)) { value.withLock { $0 == 3 } } == false)
        let setter = Task {
            for _ in 0..<3 {
                try? await Task.sleep(for: .milliseconds(20))
                value.withLock { $0 += 1 }
                changes.signal()
            }
        }
        #expect(await changes.wait(until: .now + .seconds(30)) { value.withLock { $0 == 3 } })
        await setter.value
    }
}
