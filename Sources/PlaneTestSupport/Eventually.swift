/// Polls `condition` every 50 ms until it holds or the (generous) timeout passes; the
/// final answer either way. Timeouts in tests are safety nets, not measurements: the
/// default is 60 s because CI's busy 2-core machine, with every suite starting at once,
/// once took more than 20 s to start a Docker container.
public func eventually(timeout: Duration = .seconds(60), _ condition: () async throws -> Bool) async throws -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try await Task.sleep(for: .milliseconds(50))
    }
    return try await condition()
}
