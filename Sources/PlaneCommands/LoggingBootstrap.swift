import Foundation
import Logging
import Synchronization

extension LoggingSystem {
    private static let bootstrapped = Mutex(false)

    /// Structured logs to stderr, level from `PLANE_LOG` (trace...critical, default info).
    static func bootstrapPlane() {
        let first = bootstrapped.withLock { done in defer { done = true }; return !done }
        guard first else { return }
        let level = ProcessInfo.processInfo.environment["PLANE_LOG"].flatMap { Logger.Level(rawValue: $0.lowercased()) } ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }
}
