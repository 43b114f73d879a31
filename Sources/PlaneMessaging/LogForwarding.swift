import Foundation
import Logging
import PlaneCore
import Synchronization

/// Forwards a process's log events to NATS as `LogMessage`s (`logs.controller`,
/// `logs.drone.{id}`, spec §3.16): `ForwardingLogHandler`s hand events here without
/// blocking; a publisher (`NATSLogPublisher`) drains the stream `start` made, setting each
/// message's component. Started when logging is bootstrapped, so the events of the
/// process's start wait (bounded) until the publisher runs. Bounded twice, as v0.3.10:
/// at most `maxPerSecond` events a second and `bufferSize` waiting; beyond either they are
/// dropped and counted (a line on stderr says so, at most every 10 s). Events of the NATS
/// client itself are never forwarded (publishing them would log again).
public final class LogForwarding: Sendable {
    /// The process's forwarding, which the handlers of `LoggingSystem` feed.
    public static let shared = LogForwarding()

    public struct Settings: Sendable, Hashable {
        /// Events at or above this level are forwarded; nil: none.
        public var level: Logger.Level?
        public var maxPerSecond: Int
        public var bufferSize: Int

        public init(level: Logger.Level? = .info, maxPerSecond: Int = 100, bufferSize: Int = 128) {
            self.level = level
            self.maxPerSecond = maxPerSecond
            self.bufferSize = bufferSize
        }
    }

    private struct Active {
        var level: Logger.Level
        var maxPerSecond: Int
        var continuation: AsyncStream<LogMessage>.Continuation
        var windowStart: ContinuousClock.Instant
        var inWindow = 0
        var lastDropReport: ContinuousClock.Instant?
    }

    private let active = Mutex<Active?>(nil)
    /// The stream of the last `start`, until a publisher takes it.
    private let untaken = Mutex<AsyncStream<LogMessage>?>(nil)
    /// Read without the lock by every log call: off costs one atomic load.
    private let minimumLevel = Atomic<Int>(Int.max)
    private let droppedCount = Atomic<Int>(0)

    public init() {}

    /// Events dropped so far (over the rate or the buffer).
    public var dropped: Int { droppedCount.load(ordering: .relaxed) }

    /// Starts forwarding; the events come out of the returned stream (also `takeStream()`)
    /// until `stop()`, each with the component `.controller` until its publisher sets it.
    /// Nil when `settings.level` is nil.
    @discardableResult
    public func start(settings: Settings) -> AsyncStream<LogMessage>? {
        guard let level = settings.level else { return nil }
        let (stream, continuation) = AsyncStream<LogMessage>.makeStream(bufferingPolicy: .bufferingOldest(max(1, settings.bufferSize)))
        let previous = active.withLock { state in
            defer {
                state = Active(level: level, maxPerSecond: max(1, settings.maxPerSecond), continuation: continuation, windowStart: .now)
            }
            return state?.continuation
        }
        previous?.finish()
        untaken.withLock { $0 = stream }
        minimumLevel.store(Self.rank(level), ordering: .releasing)
        return stream
    }

    /// The stream of the last `start`, once (nil when forwarding is off or it was taken).
    public func takeStream() -> AsyncStream<LogMessage>? {
        untaken.withLock { stream in
            defer { stream = nil }
            return stream
        }
    }

    /// Stops forwarding; the stream ends.
    public func stop() {
        minimumLevel.store(Int.max, ordering: .releasing)
        untaken.withLock { $0 = nil }
        let continuation = active.withLock { state in
            defer { state = nil }
            return state?.continuation
        }
        continuation?.finish()
    }

    /// Whether an event at `level` would be forwarded (the handler's cheap first check).
    func forwards(_ level: Logger.Level) -> Bool {
        Self.rank(level) >= minimumLevel.load(ordering: .acquiring)
    }

    func forward(label: String, level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata, file: String, line: UInt) {
        guard forwards(level), !label.hasPrefix("plane.nats") else { return }
        let now = ContinuousClock.now
        var fields = JSONObject()
        for (key, value) in metadata.sorted(by: { $0.key < $1.key }) { fields[key] = Self.json(value) }
        fields["message"] = .string(message.description)
        var report: Int?
        active.withLock { state in
            guard var current = state, Self.rank(level) >= Self.rank(current.level) else { return }
            if now - current.windowStart >= .seconds(1) {
                current.windowStart = now
                current.inWindow = 0
            }
            var accepted = false
            if current.inWindow < current.maxPerSecond {
                let event = LogMessage(component: .controller, target: label, name: "event \(file):\(line)", severity: Self.severity(level),
                                       time: .now(), fields: fields)
                if case .enqueued = current.continuation.yield(event) {
                    current.inWindow += 1
                    accepted = true
                }
            }
            if !accepted {
                let total = droppedCount.wrappingAdd(1, ordering: .relaxed).newValue
                if current.lastDropReport.map({ now - $0 >= .seconds(10) }) ?? true {
                    current.lastDropReport = now
                    report = total
                }
            }
            state = current
        }
        if let report {
            // Not through a Logger: that would come back here.
            FileHandle.standardError.write(Data("plane: log forwarding to NATS dropped events (\(report) so far; over [log_forwarding] max_per_second or its buffer)\n".utf8))
        }
    }

    static func rank(_ level: Logger.Level) -> Int {
        switch level {
        case .trace: 0
        case .debug: 1
        case .info: 2
        case .notice: 3
        case .warning: 4
        case .error: 5
        case .critical: 6
        }
    }

    static func severity(_ level: Logger.Level) -> LogMessage.Severity {
        switch level {
        case .trace: .trace
        case .debug: .debug
        case .info, .notice: .info
        case .warning: .warn
        case .error, .critical: .error
        }
    }

    static func json(_ value: Logger.MetadataValue) -> JSONValue {
        switch value {
        case .string(let text): .string(text)
        case .stringConvertible(let convertible): .string(convertible.description)
        case .array(let values): .array(values.map(json))
        case .dictionary(let entries):
            .object(JSONObject(entries.sorted(by: { $0.key < $1.key }).map { ($0.key, json($0.value)) }))
        }
    }
}

/// A `LogHandler` that hands events to a `LogForwarding` (beside the process's stderr
/// handler, in a `MultiplexLogHandler`). Its level is the lowest any forwarding may ask
/// for, fixed when logging is bootstrapped; `LogForwarding` filters by its own.
public struct ForwardingLogHandler: LogHandler {
    public let label: String
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    let forwarding: LogForwarding

    public init(label: String, level: Logger.Level, forwarding: LogForwarding = .shared) {
        self.label = label
        self.logLevel = level
        self.forwarding = forwarding
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        guard forwarding.forwards(event.level) else { return }
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        forwarding.forward(label: label, level: event.level, message: event.message, metadata: merged, file: event.file, line: event.line)
    }
}
