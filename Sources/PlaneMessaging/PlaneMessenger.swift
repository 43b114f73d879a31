import Logging
import NATS
import ServiceContextModule
import PlaneCore

/// Plane's wire messages over NATS: every payload is encoded and decoded with the
/// serde-exact `WireEncoder`/`WireDecoder`, on the subjects of `PlaneSubjects`.
public struct PlaneMessenger: Sendable {
    public let client: NATSClient
    public let logger: Logger
    private let encoder = WireEncoder()
    private let decoder: WireDecoder

    /// `limits` bounds every message decoded here (`[limits]`; the defaults when not given).
    public init(client: NATSClient, logger: Logger = Logger(label: "plane.messaging"), limits: JSONLimits = .wire) {
        self.client = client
        self.logger = logger
        self.decoder = WireDecoder(limits: limits)
    }

    public var jetStream: JetStream { JetStream(client: client) }

    func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        do {
            return try encoder.encode(value)
        } catch {
            throw NATSError(.invalidArgument, "Could not encode \(T.self) as JSON.", cause: MessagingCause(String(describing: error)))
        }
    }

    // MARK: Publish / request

    /// Core publish of `message` on `subject`.
    public func publish<M>(_ subject: PublishSubject<M>, _ message: M) async throws {
        try await client.publish(subject.subject, payload: try encode(message))
    }

    /// Sends a request and decodes the reply. Transport failures throw `NATSError`
    /// (`.noResponders`, `.timeout`, ...); a reply that is not a `Reply` throws `PlaneCoreError`.
    ///
    /// The current trace context (`ServiceContext.current`) goes along in the headers when a
    /// tracer is configured (`TraceContextHeaders`).
    public func request<Request, Reply>(_ subject: RequestSubject<Request, Reply>, _ message: Request, timeout: Duration? = nil) async throws -> Reply {
        let reply = try await client.request(subject.subject, payload: try encode(message), headers: TraceContextHeaders.headers(for: ServiceContext.current),
                                             timeout: timeout)
        return try decoder.decode(Reply.self, from: reply.payload.readableBytesView)
    }

    // MARK: Subscribe

    /// Subscribes to a pattern; each delivery carries the decoded message or the decoding
    /// error, so responders can answer bad input with an error instead of silence.
    public func subscribe<M, R>(_ pattern: SubjectPattern<M, R>, queue: String? = nil) async throws -> PlaneSubscription<M, R> {
        let subscription = try await client.subscribe(to: pattern.pattern, queue: queue)
        return PlaneSubscription(subscription: subscription, messenger: self)
    }

    public func subscribe<Request, Reply>(_ subject: RequestSubject<Request, Reply>, queue: String? = nil) async throws -> PlaneSubscription<Request, Reply> {
        try await subscribe(SubjectPattern<Request, Reply>(subject.subject), queue: queue)
    }

    /// Answers a request. A message without a reply subject is logged and dropped (Plane
    /// v0.3.10 crashed here); returns whether a reply was sent.
    @discardableResult
    public func respond<R: Encodable>(to replyTo: String?, subject: String, with reply: R) async throws -> Bool {
        guard let replyTo else {
            logger.warning("plane.request_without_reply_subject", metadata: ["nats.subject": "\(subject)"])
            return false
        }
        try await client.publish(replyTo, payload: try encode(reply))
        return true
    }

    /// Decodes a delivery. A message over a limit is counted (`plane_input_limit_hits_total`)
    /// and logged with its subject here; other decoding failures are the subscriber's to report.
    func decode<M: Decodable>(_ type: M.Type, _ message: NATSMessage) -> Result<M, PlaneCoreError> {
        let result = Result { () throws(PlaneCoreError) -> M in try decoder.decode(M.self, from: message.payload.readableBytesView) }
        if case .failure(let error) = result, error.code == .limitExceeded, let limit = error.limit, let hits = LimitCounters.shared.record(limit) {
            logger.warning("limit.exceeded", metadata: ["plane.limit": "\(limit)", "plane.limit_hits": "\(hits)", "nats.subject": "\(message.subject)",
                                                       "error": "\(error.message)"])
        }
        return result
    }

    // MARK: Backend state history (JetStream)

    /// Creates the `backend_status` stream if it is missing (an existing stream is left as
    /// it is, as Plane v0.3.10 does).
    @discardableResult
    public func ensureBackendStatusStream(_ configuration: StreamConfiguration = BackendStatusStream.configuration) async throws -> StreamInfo {
        try await jetStream.ensureStream(configuration)
    }

    /// Stores a backend state change in JetStream and waits for the acknowledgement.
    @discardableResult
    public func publishBackendState(_ message: BackendStateMessage) async throws -> PublishAck {
        try await jetStream.publish(PlaneSubjects.backendStatus(message.backend).subject, payload: try encode(message))
    }

    /// Replays the stored state changes (of one backend, or all) from the beginning, then
    /// follows new ones. `initialPending` on the result tells how many were stored.
    /// `after`: only what was stored after that stream sequence (an SSE `Last-Event-ID`).
    public func backendStateHistory(of backend: BackendID? = nil, after: UInt64? = nil) async throws -> BackendStateHistory {
        let filter = backend.map { PlaneSubjects.backendStatus($0).subject } ?? PlaneSubjects.backendStatusAll.pattern
        let policy: DeliverPolicy = after.map { .startSequence($0 == .max ? .max : $0 + 1) } ?? .all
        let consumer = try await jetStream.orderedConsumer(stream: PlaneSubjects.backendStatusStream, options: OrderedConsumerOptions(filterSubject: filter, deliverPolicy: policy))
        return BackendStateHistory(consumer: consumer)
    }
}

/// The `backend_status` stream: v0.3.10's stream, bounded so it cannot grow forever.
public enum BackendStatusStream {
    /// Subjects `backend.*.status`, file storage, limits retention, discard old; by default
    /// the last 100 state changes per backend and nothing older than 7 days (v0.3.10 kept
    /// everything forever, spec §14 item 8).
    public static var configuration: StreamConfiguration { configuration() }

    public static func configuration(historyPerBackend: Int64 = 100, maxAge: Duration = .seconds(7 * 24 * 3600), replicas: Int? = nil) -> StreamConfiguration {
        var config = StreamConfiguration(name: PlaneSubjects.backendStatusStream, subjects: [PlaneSubjects.backendStatusAll.pattern])
        config.retention = .limits
        config.storage = .file
        config.discard = .old
        config.maxMessagesPerSubject = historyPerBackend
        config.maxAge = maxAge.components.seconds * 1_000_000_000
        config.replicas = replicas
        return config
    }
}

struct MessagingCause: Error, Sendable, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
