import PlaneCore

/// One message of the runtime plugin protocol (the JSON object inside one frame).
///
/// - `{"id": 7, "method": "start", "params": {...}}` — a call (drone → plugin);
/// - `{"id": 7, "result": ...}` — its answer;
/// - `{"id": 7, "error": {"code": "image_unavailable", "message": "...", "cause": "..."}}` —
///   a failed call, or a stream that ended with an error;
/// - `{"id": 7, "item": ...}` — one element of a stream (`events`, `logs`);
/// - `{"id": 7, "end": true}` — the end of a stream.
public enum PluginMessage: Sendable, Hashable {
    case call(id: UInt64, method: String, params: JSONValue)
    case result(id: UInt64, JSONValue)
    case failure(id: UInt64, PluginFailure)
    case item(id: UInt64, JSONValue)
    case end(id: UInt64)

    public var id: UInt64 {
        switch self {
        case .call(let id, _, _), .result(let id, _), .failure(let id, _), .item(let id, _), .end(let id): id
        }
    }

    /// The message in a frame's payload.
    public static func decode(_ payload: [UInt8]) throws(PluginProtocolError) -> PluginMessage {
        let value: JSONValue
        do {
            value = try JSONParser.parse(payload)
        } catch {
            throw PluginProtocolError(.malformedMessage, "A frame is not JSON: \(error.message)")
        }
        return try decode(value)
    }

    public static func decode(_ value: JSONValue) throws(PluginProtocolError) -> PluginMessage {
        guard let object = value.objectValue else { throw PluginProtocolError(.malformedMessage, "A message is a JSON \(value.kindName), not an object.") }
        guard let idValue = object["id"], let id = idValue.int64Value.flatMap({ UInt64(exactly: $0) }) else {
            throw PluginProtocolError(.malformedMessage, "A message has no \"id\" (a non-negative integer).")
        }
        if let method = object["method"] {
            guard let name = method.stringValue else { throw PluginProtocolError(.malformedMessage, "Message \(id): \"method\" is not a string.") }
            return .call(id: id, method: name, params: object["params"] ?? .null)
        }
        if let error = object["error"] { return .failure(id: id, try PluginFailure(json: error, id: id)) }
        if let item = object["item"] { return .item(id: id, item) }
        if object["end"]?.boolValue == true { return .end(id: id) }
        if let result = object["result"] { return .result(id: id, result) }
        throw PluginProtocolError(.malformedMessage, "Message \(id) has none of method, result, error, item or end.")
    }

    public var json: JSONValue {
        switch self {
        case .call(let id, let method, let params):
            .object(JSONObject([("id", .integer(id)), ("method", .string(method)), ("params", params)]))
        case .result(let id, let result):
            .object(JSONObject([("id", .integer(id)), ("result", result)]))
        case .failure(let id, let failure):
            .object(JSONObject([("id", .integer(id)), ("error", failure.json)]))
        case .item(let id, let item):
            .object(JSONObject([("id", .integer(id)), ("item", item)]))
        case .end(let id):
            .object(JSONObject([("id", .integer(id)), ("end", .bool(true))]))
        }
    }

    /// The message as one frame.
    public var frame: [UInt8] { PluginFrame.encode(JSONWriter.write(json)) }
}

/// The `error` of a message: a `RuntimeError` code (`image_unavailable`, `invalid_spec`,
/// `not_found`, `already_exists`, `unavailable`, `unsupported`, `timeout`, `internal`), a
/// message for people, and optionally its cause.
public struct PluginFailure: Sendable, Hashable {
    public var code: String
    public var message: String
    public var cause: String?

    public init(code: String, message: String, cause: String? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    init(json: JSONValue, id: UInt64) throws(PluginProtocolError) {
        guard let object = json.objectValue, let code = object["code"]?.stringValue, let message = object["message"]?.stringValue else {
            throw PluginProtocolError(.malformedMessage, "Message \(id): \"error\" needs a string \"code\" and \"message\".")
        }
        self.init(code: code, message: message, cause: object["cause"]?.stringValue)
    }

    public var json: JSONValue {
        var object = JSONObject([("code", .string(code)), ("message", .string(message))])
        if let cause { object["cause"] = .string(cause) }
        return .object(object)
    }
}
