import NATS
import ServiceContextModule
import PlaneCore

/// One delivery on a `PlaneSubscription`.
public struct PlaneDelivery<Message: Codable & Sendable, Reply: Codable & Sendable>: Sendable {
    public let subject: String
    public let replyTo: String?
    /// The decoded message, or why it could not be decoded.
    public let message: Result<Message, PlaneCoreError>
    /// The message's NATS headers (a trace context, when the sender had one).
    public var headers: NATSHeaders? = nil
    let messenger: PlaneMessenger

    /// The trace context the sender put in the headers (top level without one).
    public var traceContext: ServiceContext { TraceContextHeaders.context(from: headers) }

    /// Replies to the sender; logged and ignored when the message had no reply subject.
    @discardableResult
    public func respond(_ reply: Reply) async throws -> Bool {
        try await messenger.respond(to: replyTo, subject: subject, with: reply)
    }
}

/// A typed subscription; ending iteration unsubscribes.
public struct PlaneSubscription<Message: Codable & Sendable, Reply: Codable & Sendable>: AsyncSequence, Sendable {
    public typealias Element = PlaneDelivery<Message, Reply>
    let subscription: NATSSubscription
    let messenger: PlaneMessenger

    public var subject: String { subscription.subject }

    public func unsubscribe() throws { try subscription.unsubscribe() }

    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: NATSSubscription.AsyncIterator
        let messenger: PlaneMessenger

        public mutating func next() async -> PlaneDelivery<Message, Reply>? {
            guard let raw = await base.next() else { return nil }
            return PlaneDelivery(subject: raw.subject, replyTo: raw.replyTo, message: messenger.decode(Message.self, raw), headers: raw.headers, messenger: messenger)
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(base: subscription.makeAsyncIterator(), messenger: messenger)
    }
}

/// Stored backend state changes, oldest first, then live ones. An entry that does not
/// decode is delivered as a failure (callers skip it, as v0.3.10 consumers do) so that its
/// `pending` count still tells when the replay has caught up.
public struct BackendStateHistory: AsyncSequence, Sendable {
    public typealias Element = StoredBackendState
    let consumer: OrderedConsumer

    public var initialPending: UInt64 { consumer.initialPending }
    public func stop() { consumer.stop() }

    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: OrderedConsumer.AsyncIterator

        public mutating func next() async throws -> StoredBackendState? {
            guard let message = try await base.next() else { return nil }
            let decoded = Result { () throws(PlaneCoreError) -> BackendStateMessage in
                try WireDecoder().decode(BackendStateMessage.self, from: message.payload)
            }
            return StoredBackendState(message: decoded, streamSequence: message.streamSequence, pending: message.pending)
        }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(base: consumer.makeAsyncIterator()) }
}

public struct StoredBackendState: Sendable, Hashable {
    /// The stored change, or why the stored bytes are not a `BackendStateMessage`.
    public let message: Result<BackendStateMessage, PlaneCoreError>
    public let streamSequence: UInt64
    /// Stored changes still to come after this one (0: caught up with the history).
    public let pending: UInt64
}
