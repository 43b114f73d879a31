import Logging
import NATS
import PlaneCore
import PlaneMessaging
import ServiceLifecycle

/// Publishes what `LogForwarding` collects on `logs.controller` or `logs.drone.{id}` (spec
/// §3.16), one core publish per event, until graceful shutdown. A publish that fails (NATS
/// away) loses that event; nothing is logged about it (that would be forwarded again).
struct NATSLogPublisher: Service {
    let client: NATSClient
    let subject: PublishSubject<LogMessage>
    let component: LogMessage.Component
    var forwarding: LogForwarding = .shared

    func run() async throws {
        // Started when logging was bootstrapped (`LoggingSystem.bootstrapPlane(forwarding:)`).
        guard let stream = forwarding.takeStream() else {
            // Forwarding is off: stay until the group stops (a service that returns ends the group).
            try? await gracefulShutdown()
            return
        }
        let messenger = PlaneMessenger(client: client)
        let forwarding = self.forwarding
        await withGracefulShutdownHandler {
            for await var message in stream {
                message.component = component
                try? await messenger.publish(subject, message)
            }
        } onGracefulShutdown: {
            forwarding.stop()
        }
    }
}

/// `[log_forwarding]` in controller.toml and drone.toml (docs/configuration.md).
enum LogForwardingConfigReader {
    static let levels = ["off", "trace", "debug", "info", "notice", "warning", "error", "critical"]

    static func read(_ section: ConfigReader?) -> LogForwarding.Settings {
        var settings = LogForwarding.Settings()
        guard let section else { return settings }
        if let text = section.string("level") {
            if text.lowercased() == "off" {
                settings.level = nil
            } else if let level = Logger.Level(rawValue: text.lowercased()) {
                settings.level = level
            } else {
                section.problem("level", "'\(text)' is not a level; use one of \(levels.joined(separator: ", "))")
            }
        }
        if let count = section.int("max_per_second", in: 1...100_000) { settings.maxPerSecond = count }
        if let count = section.int("buffer", in: 1...1_000_000) { settings.bufferSize = count }
        return settings
    }
}
