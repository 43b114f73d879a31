import Logging
import Synchronization

/// A swift-log handler that keeps every message logged through it, for tests that count
/// what a process logs (a flood of bad input must not become a flood of log lines).
public struct RecordingLogHandler: LogHandler {
    /// What the handlers made from one `RecordingLogHandler.Records` logged, in order.
    public final class Records: Sendable {
        private let entries = Mutex<[(level: Logger.Level, message: String)]>([])
        public init() {}

        public var messages: [String] { entries.withLock { $0.map(\.message) } }

        public func count(of message: String) -> Int { entries.withLock { $0.filter { $0.message == message }.count } }

        func append(_ level: Logger.Level, _ message: String) { entries.withLock { $0.append((level, message)) } }
    }

    let records: Records
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .trace

    public init(records: Records) {
        self.records = records
    }

    /// A logger whose every message lands in `records`.
    public static func logger(label: String = "test", into records: Records) -> Logger {
        Logger(label: label) { _ in RecordingLogHandler(records: records) }
    }

    public func log(event: LogEvent) {
        records.append(event.level, "\(event.message)")
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
}
