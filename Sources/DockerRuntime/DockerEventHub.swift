import ContainerRuntime
import Logging
import PlaneCore
import Synchronization

/// Reads Docker's `/events` stream (container `die` and `oom` events of this drone's
/// backends) and fans it out to every `events()` subscriber and to the backends' waiters
/// (`exits`, behind `wait(for:)`). When the daemon's stream ends or breaks it is re-opened
/// from the last event's time, without repeating events; every waiter then looks again.
final class DockerEventHub: Sendable {
    private struct State {
        var subscribers: [UInt64: AsyncStream<RuntimeEvent>.Continuation] = [:]
        var nextID: UInt64 = 0
        var reader: Task<Void, Never>?
    }

    private let state = Mutex(State())
    /// Waiters of `DockerRuntime.wait(for:)`.
    let exits = BackendExitSignals()
    private let client: DockerEngineClient
    private let droneID: DroneID
    private let logger: Logger

    init(client: DockerEngineClient, droneID: DroneID, logger: Logger) {
        self.client = client
        self.droneID = droneID
        self.logger = logger
    }

    deinit { state.withLock { $0.reader?.cancel() } }

    func subscribe() -> AsyncStream<RuntimeEvent> {
        let (stream, continuation) = AsyncStream.makeStream(of: RuntimeEvent.self, bufferingPolicy: .bufferingNewest(4096))
        let (id, startReader) = state.withLock { s in
            let id = s.nextID
            s.nextID += 1
            s.subscribers[id] = continuation
            return (id, s.reader == nil)
        }
        continuation.onTermination = { [weak self] _ in _ = self?.state.withLock { $0.subscribers.removeValue(forKey: id) } }
        if startReader { startReading() }
        return stream
    }

    /// Starts reading `/events` unless it runs already.
    func startReading() {
        let started = state.withLock { s -> Bool in
            guard s.reader == nil else { return false }
            s.reader = Task { [weak self] () -> Void in await self?.readForever() }
            return true
        }
        if started { logger.debug("docker.events_reader_started") }
    }

    private func publish(_ event: RuntimeEvent) {
        for c in state.withLock({ Array($0.subscribers.values) }) { c.yield(event) }
    }

    private func readForever() async {
        var since = Timestamp.now()
        var lastNano: Int64 = 0
        var backoff = Duration.milliseconds(200)
        let filters = JSONWriter.string(.object(JSONObject([
            ("type", .array([.string("container")])), ("event", .array([.string("die"), .string("oom")])),
            ("label", .array([.string("\(DockerRuntime.droneLabel)=\(droneID.rawValue)")])),
        ])))
        while !Task.isCancelled {
            do {
                let query = [("filters", filters), ("since", "\(since.secondsSinceEpoch).\(String(format: "%09d", since.nanoseconds))")]
                let (status, body) = try await client.stream(.GET, "/events", query: query, headTimeout: .seconds(30))
                guard status == 200 else { throw RuntimeError(.unavailable, "Docker /events answered \(status)") }
                backoff = .milliseconds(200)
                // Between two streams an exit may have gone unseen by a waiter: all look again.
                exits.signalAll()
                var splitter = LineSplitter()
                for try await chunk in body {
                    for line in splitter.feed(chunk.readableBytesView) {
                        guard let event = try? JSONParser.parse(line).objectValue else { continue }
                        let timeNano = event["timeNano"]?.int64Value ?? 0
                        if timeNano != 0, timeNano <= lastNano { continue }
                        lastNano = max(lastNano, timeNano)
                        if timeNano > 0 { since = Timestamp(secondsSinceEpoch: timeNano / 1_000_000_000, nanoseconds: UInt32(timeNano % 1_000_000_000)) }
                        guard let parsed = Self.runtimeEvent(event) else { continue }
                        publish(parsed)
                        exits.signal(parsed.backendID)
                    }
                }
                logger.debug("docker.events_stream_ended")
            } catch {
                if Task.isCancelled { return }
                logger.warning("docker.events_stream_failed", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: backoff)
            backoff = min(backoff * 2, .seconds(5))
        }
    }

    static func runtimeEvent(_ event: JSONObject) -> RuntimeEvent? {
        let attributes = event["Actor"]?.objectValue?["Attributes"]?.objectValue
        guard let name = attributes?["name"]?.stringValue, let backend = BackendSpec.backendID(fromContainerName: name) else { return nil }
        let timeNano = event["timeNano"]?.int64Value ?? 0
        let time = timeNano > 0 ? Timestamp(secondsSinceEpoch: timeNano / 1_000_000_000, nanoseconds: UInt32(timeNano % 1_000_000_000)) : .now()
        switch event["status"]?.stringValue ?? event["Action"]?.stringValue {
        case "die":
            let code = attributes?["exitCode"]?.stringValue.flatMap(Int32.init) ?? -1
            return RuntimeEvent(backendID: backend, kind: .exited(code: code), time: time)
        case "oom":
            return RuntimeEvent(backendID: backend, kind: .outOfMemory, time: time)
        default:
            return nil
        }
    }
}
