/// An operation that did not end within its time limit (`withTimeLimit`).
public struct TimeLimitExceeded: Error, Sendable {
    public let limit: Duration
}

/// Runs `operation` for at most `limit`: when the time is up first, the operation is
/// cancelled (whatever I/O it waits on is expected to stop on cancellation, as
/// AsyncHTTPClient's requests and body streams do) and `TimeLimitExceeded` is thrown.
/// For what has no end of its own once it started, such as a response body a peer sends a
/// byte at a time: a read timeout never fires on it.
public func withTimeLimit<T: Sendable>(_ limit: Duration, _ operation: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T.self) { group in
        group.addTask { try await operation() }
        group.addTask {
            try await Task.sleep(for: limit)
            throw TimeLimitExceeded(limit: limit)
        }
        defer { group.cancelAll() }
        guard let first = try await group.next() else { throw TimeLimitExceeded(limit: limit) }
        return first
    }
}
