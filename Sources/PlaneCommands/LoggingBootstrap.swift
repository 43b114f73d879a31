import Foundation
import Logging
import PlaneMessaging
import Synchronization

extension LoggingSystem {
    private static let bootstrapped = Mutex(false)

    /// Structured logs to stderr, level from `PLANE_LOG` (trace...critical, default info).
    /// With `forwarding` (controller and drone, `[log_forwarding]`), events at or above its
    /// level also go to `LogForwarding.shared` (started here, so that the events of the
    /// start wait for `NATSLogPublisher`, bounded by the buffer).
    static func bootstrapPlane(forwarding settings: LogForwarding.Settings? = nil) {
        let first = bootstrapped.withLock { done in defer { done = true }; return !done }
        guard first else { return }
        let forwarding = settings?.level
        if let settings { LogForwarding.shared.start(settings: settings) }
        let level = ProcessInfo.processInfo.environment["PLANE_LOG"].flatMap { Logger.Level(rawValue: $0.lowercased()) } ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            guard let forwarding else { return handler }
            return MultiplexLogHandler([handler, ForwardingLogHandler(label: label, level: forwarding)])
        }
    }
}
