import Foundation
import Logging
import Synchronization

/// Where an ordered consumer starts reading.
public enum DeliverPolicy: Sendable, Hashable {
    case all
    case last
    case lastPerSubject
    case new
    case startSequence(UInt64)
}

public struct OrderedConsumerOptions: Sendable {
    public var filterSubject: String?
    public var deliverPolicy: DeliverPolicy = .all
    public var headersOnly = false
    /// The server sends a heartbeat when idle; three missed heartbeats make the consumer
    /// recreate itself from the last sequence it delivered.
    public var idleHeartbeat: Duration = .seconds(5)
    /// Bytes delivered and not yet taken by the reader beyond which flow control holds the
    /// server back (it may send up to its flow-control window more).
    public var maxBufferedBytes = 2 * 1024 * 1024

    public init(filterSubject: String? = nil, deliverPolicy: DeliverPolicy = .all) {
        self.filterSubject = filterSubject
        self.deliverPolicy = deliverPolicy
    }
}

/// An ordered consumer: an ephemeral push consumer without acks, delivering a stream's
/// messages strictly in order. On a gap, a missed heartbeat or a lost consumer (server
/// restart) it is recreated from the next stream sequence, so nothing is skipped or repeated.
public final class OrderedConsumer: AsyncSequence, Sendable {
    public typealias Element = JetStreamMessage

    /// Messages pending when the consumer was created (0: nothing to replay).
    public let initialPending: UInt64
    let messages: AsyncThrowingStream<JetStreamMessage, any Error>
    let backlog: ConsumerBacklog
    /// Sends a flow-control answer.
    let answer: @Sendable (String) -> Void
    private let task: Mutex<Task<Void, Never>?>

    init(initialPending: UInt64, messages: AsyncThrowingStream<JetStreamMessage, any Error>, backlog: ConsumerBacklog,
         answer: @escaping @Sendable (String) -> Void) {
        self.initialPending = initialPending
        self.messages = messages
        self.backlog = backlog
        self.answer = answer
        self.task = Mutex(nil)
    }

    func attach(_ task: Task<Void, Never>) { self.task.withLock { $0 = task } }

    /// Keeps its consumer running while it is kept.
    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: AsyncThrowingStream<JetStreamMessage, any Error>.AsyncIterator
        let consumer: OrderedConsumer

        public mutating func next() async throws -> JetStreamMessage? {
            guard let message = try await base.next() else { return nil }
            if let reply = consumer.backlog.taken(ConsumerBacklog.size(of: message)) { consumer.answer(reply) }
            return message
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(base: messages.makeAsyncIterator(), consumer: self)
    }

    /// Stops delivery and deletes the server-side consumer.
    public func stop() {
        task.withLock { $0?.cancel() }
    }

    deinit { task.withLock { $0?.cancel() } }
}

extension JetStream {
    struct ConsumerConfig: Encodable {
        var deliver_subject: String
        var deliver_policy: String
        var opt_start_seq: UInt64?
        var ack_policy = "none"
        var filter_subject: String?
        var flow_control = true
        var idle_heartbeat: Int64
        var headers_only: Bool?
        var mem_storage = true
        var num_replicas = 1
        var replay_policy = "instant"
    }

    struct CreateConsumer: Encodable {
        var stream_name: String
        var config: ConsumerConfig
    }

    struct ConsumerInfo: Decodable {
        var name: String
        var num_pending: UInt64?
    }

    /// Creates an ordered consumer on `stream`.
    public func orderedConsumer(stream: String, options: OrderedConsumerOptions = OrderedConsumerOptions()) async throws -> OrderedConsumer {
        try validateName(stream, what: "stream name")
        let first = try await createPushConsumer(stream: stream, options: options, policy: options.deliverPolicy)
        // Unbounded as a stream; bounded by the backlog's flow control.
        let (messages, continuation) = AsyncThrowingStream.makeStream(of: JetStreamMessage.self, bufferingPolicy: .unbounded)
        let backlog = ConsumerBacklog(limit: options.maxBufferedBytes)
        let client = self.client
        let consumer = OrderedConsumer(initialPending: first.pending, messages: messages, backlog: backlog) { reply in
            _ = try? client.publishWithoutWaiting(reply, payload: [])
        }
        let driver = OrderedConsumerDriver(js: self, stream: stream, options: options, continuation: continuation, backlog: backlog)
        let task = Task { await driver.run(first: first) }
        continuation.onTermination = { _ in task.cancel() }
        consumer.attach(task)
        return consumer
    }

    struct PushConsumer: Sendable {
        var subscription: NATSSubscription
        var name: String
        var pending: UInt64
    }

    func createPushConsumer(stream: String, options: OrderedConsumerOptions, policy: DeliverPolicy) async throws -> PushConsumer {
        let deliver = "\(client.configuration.inboxPrefix).\(NATSClient.nuid())"
        let subscription = try await client.subscribe(to: deliver, bufferSize: 1 << 20)
        var config = ConsumerConfig(deliver_subject: deliver, deliver_policy: "all", idle_heartbeat: options.idleHeartbeat.timeAmount)
        switch policy {
        case .all: config.deliver_policy = "all"
        case .last: config.deliver_policy = "last"
        case .lastPerSubject: config.deliver_policy = "last_per_subject"
        case .new: config.deliver_policy = "new"
        case .startSequence(let seq):
            config.deliver_policy = "by_start_sequence"
            config.opt_start_seq = max(seq, 1)
        }
        config.filter_subject = options.filterSubject
        config.headers_only = options.headersOnly ? true : nil
        do {
            let info = try await call("CONSUMER.CREATE.\(stream)", body: CreateConsumer(stream_name: stream, config: config), as: ConsumerInfo.self)
            return PushConsumer(subscription: subscription, name: info.name, pending: info.num_pending ?? 0)
        } catch {
            try? subscription.unsubscribe()
            throw error
        }
    }

    func deleteConsumer(stream: String, name: String) async {
        struct Deleted: Decodable { var success: Bool? }
        _ = try? await call("CONSUMER.DELETE.\(stream).\(name)", body: Optional<Empty>.none, as: Deleted.self)
    }
}

/// Parsed `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ns>.<pending>` (also the
/// longer v2 form with domain and account hash).
struct JetStreamAckSubject: Equatable {
    var streamSequence: UInt64
    var consumerSequence: UInt64
    var timestamp: Int64
    var pending: UInt64

    init?(_ subject: String) {
        let tokens = subject.split(separator: ".", omittingEmptySubsequences: false)
        guard tokens.count >= 9, tokens[0] == "$JS", tokens[1] == "ACK" else { return nil }
        // v1: 9 tokens; v2: 11 or 12 tokens (domain, account hash, ..., random token).
        let base = tokens.count == 9 ? 4 : 6
        guard tokens.count > base + 4,
              let sseq = UInt64(tokens[base + 1]), let cseq = UInt64(tokens[base + 2]),
              let ts = Int64(tokens[base + 3]), let pending = UInt64(tokens[base + 4]) else { return nil }
        streamSequence = sseq
        consumerSequence = cseq
        timestamp = ts
        self.pending = pending
    }

    /// The stream sequence a replacement consumer starts from once this delivery is taken,
    /// or nil when the delivery is not the one expected: a gap or a repeat (another consumer
    /// sequence), or a stream sequence with none after it (2^64-1: only a broken or hostile
    /// server sends it, and one past it would trap).
    func streamSequenceAfter(expectingConsumerSequence expected: UInt64) -> UInt64? {
        guard consumerSequence == expected, streamSequence < .max else { return nil }
        return streamSequence + 1
    }
}

final class OrderedConsumerDriver: Sendable {
    let js: JetStream
    let stream: String
    let options: OrderedConsumerOptions
    let continuation: AsyncThrowingStream<JetStreamMessage, any Error>.Continuation
    let backlog: ConsumerBacklog
    let lastActivity = Mutex(ContinuousClock.now)

    init(js: JetStream, stream: String, options: OrderedConsumerOptions, continuation: AsyncThrowingStream<JetStreamMessage, any Error>.Continuation,
         backlog: ConsumerBacklog) {
        self.js = js
        self.stream = stream
        self.options = options
        self.continuation = continuation
        self.backlog = backlog
    }

    func run(first: JetStream.PushConsumer) async {
        var consumer = first
        var nextStreamSequence: UInt64? = nil
        while !Task.isCancelled {
            let outcome = await consume(consumer, nextStreamSequence: &nextStreamSequence)
            try? consumer.subscription.unsubscribe()
            await js.deleteConsumer(stream: stream, name: consumer.name)
            if case .finished(let error) = outcome {
                continuation.finish(throwing: error)
                return
            }
            if Task.isCancelled { break }
            backlog.consumerReplaced()
            js.client.logger.debug("nats.ordered_consumer_reset", metadata: ["nats.stream": "\(stream)", "nats.next_sequence": "\(nextStreamSequence ?? 0)"])
            // Recreate from where we stopped, retrying while the server is away.
            var wait = Duration.milliseconds(100)
            while !Task.isCancelled {
                do {
                    let policy = nextStreamSequence.map { DeliverPolicy.startSequence($0) } ?? options.deliverPolicy
                    consumer = try await js.createPushConsumer(stream: stream, options: options, policy: policy)
                    break
                } catch let error as NATSError where error.code == .closed {
                    continuation.finish(throwing: error)
                    return
                } catch {
                    try? await Task.sleep(for: wait)
                    wait = min(wait * 2, .seconds(2))
                }
            }
        }
        continuation.finish()
    }

    enum Outcome { case reset, finished((any Error)?) }

    private func consume(_ consumer: JetStream.PushConsumer, nextStreamSequence: inout UInt64?) async -> Outcome {
        lastActivity.withLock { $0 = .now }
        let heartbeat = options.idleHeartbeat
        let subscription = consumer.subscription
        let watchdog = Task { [self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: heartbeat)
                let idle = ContinuousClock.now - lastActivity.withLock { $0 }
                if idle > heartbeat * 3 {
                    try? subscription.unsubscribe()
                    return
                }
            }
        }
        defer { watchdog.cancel() }
        var expectedConsumerSequence: UInt64 = 1
        for await message in subscription {
            lastActivity.withLock { $0 = .now }
            if let status = message.status {
                if status == 100 {
                    // A flow-control request, or a heartbeat saying the server waits for
                    // the answer to one: answered now, or once the reader has caught up.
                    if let reply = message.replyTo ?? message.headers?["Nats-Consumer-Stalled"], backlog.flowControl(reply: reply) {
                        _ = try? js.client.publishWithoutWaiting(reply, payload: [])
                    }
                    if let last = message.headers?["Nats-Last-Consumer"].flatMap(UInt64.init), last != expectedConsumerSequence - 1 {
                        return .reset
                    }
                    continue
                }
                // 404/408/409: the consumer is gone or the request was rejected.
                return .reset
            }
            guard let replyTo = message.replyTo, let ack = JetStreamAckSubject(replyTo) else { continue }
            guard let next = ack.streamSequenceAfter(expectingConsumerSequence: expectedConsumerSequence) else { return .reset }
            expectedConsumerSequence += 1
            nextStreamSequence = next
            let delivered = JetStreamMessage(
                subject: message.subject, headers: message.headers, payload: message.bytes,
                streamSequence: ack.streamSequence, timestampNanoseconds: ack.timestamp, pending: ack.pending)
            backlog.delivered(ConsumerBacklog.size(of: delivered))
            if case .terminated = continuation.yield(delivered) { return .finished(nil) }
        }
        if Task.isCancelled { return .finished(nil) }
        if js.client.state.withLock({ $0.status == .closed || $0.status == .draining }) {
            return .finished(NATSError(.closed, "The NATS client was closed."))
        }
        return .reset
    }
}
