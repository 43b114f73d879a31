/// Helpers shared by the wire message types.
extension KeyedEncodingContainer {
    /// Encodes a string map with its keys sorted, so output is deterministic (serde's
    /// `HashMap` order is arbitrary; peers never depend on it).
    mutating func encodeSortedMap(_ map: [String: String], forKey key: Key) throws {
        var nested = nestedContainer(keyedBy: AnyCodingKey.self, forKey: key)
        for k in map.keys.sorted() {
            try nested.encode(map[k]!, forKey: AnyCodingKey(stringValue: k))
        }
    }
}

extension KeyedDecodingContainer {
    /// Decodes a field that serde fills with a default when it is missing (but not when it
    /// is `null`, which is an error for non-optional fields, as in serde).
    func decode<T: Decodable>(_ type: T.Type, forKey key: Key, default defaultValue: @autoclosure () -> T) throws -> T {
        contains(key) ? try decode(type, forKey: key) : defaultValue()
    }
}

/// The JSON literal `null`: the reply to requests whose Rust reply type is `()`
/// (`DrainDrone`, `TerminationRequest`, `UpdateBackendStateMessage`).
public struct NullReply: Sendable, Hashable, Codable {
    public init() {}
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        guard container.decodeNil() else {
            throw DecodingError.typeMismatch(NullReply.self, .init(codingPath: decoder.codingPath, debugDescription: "expected null"))
        }
    }
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encodeNil()
    }
}

extension KeyedDecodingContainer {
    /// A JSON object field that may be missing or `null` (both: empty); anything else that is
    /// not an object is an error naming the field.
    func decodeObject(forKey key: Key) throws -> JSONObject {
        guard let value = try decodeIfPresent(JSONValue.self, forKey: key), !value.isNull else { return JSONObject() }
        guard let object = value.objectValue else {
            throw DecodingError.dataCorruptedError(forKey: key, in: self, debugDescription: "\(key.stringValue) must be a JSON object")
        }
        return object
    }

    /// A list field that may be missing (empty), at most `maximum` long.
    func decodeList<T: Decodable>(_ type: T.Type, forKey key: Key, maximum: Int) throws -> [T] {
        guard let list = try decodeIfPresent([T].self, forKey: key) else { return [] }
        guard list.count <= maximum else {
            throw DecodingError.dataCorruptedError(forKey: key, in: self, debugDescription: "\(key.stringValue) has \(list.count) entries; at most \(maximum) are allowed")
        }
        return list
    }
}

extension KeyedEncodingContainer {
    mutating func encodeUnlessEmpty(_ object: JSONObject, forKey key: Key) throws {
        if object.count > 0 { try encode(JSONValue.object(object), forKey: key) }
    }

    mutating func encodeUnlessEmpty<T: Encodable>(_ list: [T], forKey key: Key) throws {
        if !list.isEmpty { try encode(list, forKey: key) }
    }
}
