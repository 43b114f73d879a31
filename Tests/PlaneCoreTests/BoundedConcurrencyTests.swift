import PlaneCore
import Synchronization
import Testing

/// At most `limit` handlers run; the elements beyond stay in the sequence until one ends.
struct BoundedConcurrencyTests {
    @Test func noMoreThanTheLimitRunAndTheRestWait() async throws {
        let (requests, continuation) = AsyncStream.makeStream(of: Int.self)
        let started = Mutex(0), running = Mutex(0), mostRunning = Mutex(0), finished = Mutex(0)
        let released = Mutex(false)
        for element in 0..<20 { continuation.yield(element) }
        continuation.finish()
        let handling = Task {
            await BoundedConcurrency.forEach(requests, limit: 4) { _ in
                started.withLock { $0 += 1 }
                let now = running.withLock { $0 += 1; return $0 }
                mostRunning.withLock { $0 = Swift.max($0, now) }
                while !released.withLock({ $0 }) { try? await Task.sleep(for: .milliseconds(5)) }
                running.withLock { $0 -= 1 }
                finished.withLock { $0 += 1 }
            }
        }
        let deadline = ContinuousClock.now + .seconds(10)
        while started.withLock({ $0 }) < 4, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        try await Task.sleep(for: .milliseconds(200))
        #expect(started.withLock { $0 } == 4, "the fifth waits until one of the four ends")
        released.withLock { $0 = true }
        await handling.value
        #expect(finished.withLock { $0 } == 20 && mostRunning.withLock { $0 } == 4)
    }
}
