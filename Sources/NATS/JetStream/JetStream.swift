import Foundation
import NIOCore

/// JetStream over a `NATSClient`: streams, acknowledged publishes, reading stored messages,
/// ordered consumers and key-value buckets.
public struct JetStream: Sendable {
    public let client: NATSClient
    public var apiPrefix: String
    public var timeout: Duration

    public init(client: NATSClient, apiPrefix: String = "$JS.API", timeout: Duration = .seconds(5)) {
        self.client = client
        self.apiPrefix = apiPrefix
        self.timeout = timeout
    }

    // MARK: API plumbing

    /// Calls a JetStream API subject and decodes the JSON answer, turning `{"error":...}`
    /// into a `NATSError` with code `.jetStream` (or `.wrongLastSequence`).
    func call<Response: Decodable>(_ api: String, body: (some Encodable)?, as type: Response.Type) async throws -> Response {
        let payload: [UInt8] = try body.map { Array(try JSONEncoder().encode($0)) } ?? []
        let reply: NATSMessage
        do {
            reply = try await client.request("\(apiPrefix).\(api)", payload: payload, timeout: timeout)
        } catch let error as NATSError where error.code == .noResponders {
            throw NATSError(.jetStream, "JetStream is not available on this NATS server; start nats-server with -js (JetStream enabled).", cause: error)
        }
        let data = Data(reply.payload.readableBytesView)
        try Self.throwIfError(data, api: api)
        do {
            return try JSONDecoder().decode(Response.self, from: data)
        } catch {
            throw NATSError(.jetStream, "Unexpected answer from JetStream API \(api).", cause: NATSErrorCause(error))
        }
    }

    struct ErrorEnvelope: Decodable { var error: JetStreamAPIError? }

    static func throwIfError(_ data: Data, api: String) throws {
        guard let envelope = try? JSONDecoder().decode(ErrorEnvelope.self, from: data), let apiError = envelope.error else { return }
        let code: NATSError.Code = apiError.errorCode == JetStreamAPIError.wrongLastSequence ? .wrongLastSequence : .jetStream
        throw NATSError(code, "JetStream \(api) failed: \(apiError.errorDescription).", cause: apiError)
    }

    struct Empty: Encodable {}

    // MARK: Streams

    /// Creates a stream; fails if one with that name exists with another configuration.
    public func createStream(_ config: StreamConfiguration) async throws -> StreamInfo {
        try validateName(config.name, what: "stream name")
        return try await call("STREAM.CREATE.\(config.name)", body: config, as: StreamInfo.self)
    }

    /// The stream's info, or nil when it does not exist.
    public func streamInfo(_ name: String) async throws -> StreamInfo? {
        try validateName(name, what: "stream name")
        do {
            return try await call("STREAM.INFO.\(name)", body: Optional<Empty>.none, as: StreamInfo.self)
        } catch let error as NATSError where error.jetStreamError?.errorCode == JetStreamAPIError.streamNotFound {
            return nil
        }
    }

    public func updateStream(_ config: StreamConfiguration) async throws -> StreamInfo {
        try validateName(config.name, what: "stream name")
        return try await call("STREAM.UPDATE.\(config.name)", body: config, as: StreamInfo.self)
    }

    public func deleteStream(_ name: String) async throws {
        struct Deleted: Decodable { var success: Bool }
        try validateName(name, what: "stream name")
        _ = try await call("STREAM.DELETE.\(name)", body: Optional<Empty>.none, as: Deleted.self)
    }

    /// Get-or-create: returns the existing stream (unchanged) or creates it. Safe when
    /// several processes race to create the same stream.
    public func ensureStream(_ config: StreamConfiguration) async throws -> StreamInfo {
        if let info = try await streamInfo(config.name) { return info }
        do {
            return try await createStream(config)
        } catch let error as NATSError where error.jetStreamError?.errorCode == JetStreamAPIError.streamNameInUse {
            if let info = try await streamInfo(config.name) { return info }
            throw error
        }
    }

    func validateName(_ name: String, what: String) throws(NATSError) {
        if name.isEmpty || name.utf8.contains(where: { $0 <= 0x20 || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "*") || $0 == UInt8(ascii: ">") || $0 == 0x7F }) {
            throw NATSError(.invalidArgument, "The \(what) '\(name)' is invalid: use letters, digits, '-' and '_' (no '.', '*', '>' or spaces).")
        }
    }

    // MARK: Publish

    /// Publishes to a subject captured by a stream and waits for the stream's acknowledgement.
    /// `expectedLastSubjectSequence` makes the write conditional (optimistic concurrency).
    public func publish(
        _ subject: String, payload: some Collection<UInt8> = [], headers: NATSHeaders? = nil,
        messageID: String? = nil, expectedLastSubjectSequence: UInt64? = nil
    ) async throws -> PublishAck {
        var headers = headers ?? NATSHeaders()
        if let messageID { headers["Nats-Msg-Id"] = messageID }
        if let expectedLastSubjectSequence { headers["Nats-Expected-Last-Subject-Sequence"] = String(expectedLastSubjectSequence) }
        let reply: NATSMessage
        do {
            reply = try await client.request(subject, payload: payload, headers: headers.isEmpty ? nil : headers, timeout: timeout)
        } catch let error as NATSError where error.code == .noResponders {
            throw NATSError(.jetStream, "No JetStream stream stores subject '\(subject)'; create the stream first.", cause: error)
        }
        let data = Data(reply.payload.readableBytesView)
        try Self.throwIfError(data, api: "publish to \(subject)")
        do {
            return try JSONDecoder().decode(PublishAck.self, from: data)
        } catch {
            throw NATSError(.jetStream, "Unexpected publish acknowledgement for '\(subject)'.", cause: NATSErrorCause(error))
        }
    }

    // MARK: Reading

    struct StoredMessageEnvelope: Decodable {
        struct Stored: Decodable {
            var subject: String
            var seq: UInt64
            var hdrs: String?
            var data: String?
            var time: String
        }
        var message: Stored
    }

    /// The last message stored for `subject` in `stream`, or nil.
    public func lastMessage(stream: String, subject: String) async throws -> JetStreamMessage? {
        struct Request: Encodable { var last_by_subj: String }
        do {
            let envelope = try await call("STREAM.MSG.GET.\(stream)", body: Request(last_by_subj: subject), as: StoredMessageEnvelope.self)
            let m = envelope.message
            var headers: NATSHeaders?
            if let h = m.hdrs, let bytes = Data(base64Encoded: h) { headers = try NATSHeaders.parse(Array(bytes)) }
            let payload = m.data.flatMap { Data(base64Encoded: $0) }.map { Array($0) } ?? []
            return JetStreamMessage(subject: m.subject, headers: headers, payload: payload, streamSequence: m.seq, timestampNanoseconds: 0, pending: 0)
        } catch let error as NATSError where error.jetStreamError?.errorCode == JetStreamAPIError.noMessageFound {
            return nil
        }
    }
}
