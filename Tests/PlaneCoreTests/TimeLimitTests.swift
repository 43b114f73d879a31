import PlaneCore
import Synchronization
import Testing

struct TimeLimitTests {
    @Test func anOperationWithinItsLimitGivesItsValue() async throws {
        #expect(try await withTimeLimit(.seconds(30)) { 42 } == 42)
        await #expect(throws: CancellationError.self) { try await withTimeLimit(.seconds(30)) { () async throws -> Int in throw CancellationError() } }
    }

    @Test func anOperationBeyondItsLimitIsCancelledAndTheLimitThrown() async throws {
        let cancelled = Mutex(false)
        let started = ContinuousClock.now
        await #expect(throws: TimeLimitExceeded.self) {
            try await withTimeLimit(.milliseconds(200)) {
                await withTaskCancellationHandler {
                    // Ignores cancellation for as long as a stalled peer would hold it, unless told.
                    while !Task.isCancelled { try? await Task.sleep(for: .milliseconds(20)) }
                } onCancel: {
                    cancelled.withLock { $0 = true }
                }
            }
        }
        #expect(cancelled.withLock { $0 })
        #expect(ContinuousClock.now - started < .seconds(30))
    }
}
