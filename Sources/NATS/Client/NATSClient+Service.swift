import ServiceLifecycle

/// As a `Service` the client connects (if not yet connected) when the group starts and
/// drains on graceful shutdown, so components that share it finish cleanly.
extension NATSClient: Service {
    public func run() async throws {
        if state.withLock({ $0.status == .idle }) {
            try await connect()
        }
        try? await gracefulShutdown()
        await drain()
    }
}
