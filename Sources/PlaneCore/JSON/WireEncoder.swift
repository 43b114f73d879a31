/// Encodes `Encodable` values to JSON exactly as serde_json would: members in the order the
/// type encodes them, compact, with serde's escaping and number formatting.
///
/// `Optional` values encoded with `encode(_:forKey:)` become `null`; with
/// `encodeIfPresent(_:forKey:)` they are omitted. Wire types choose per field, as the spec says.
public struct WireEncoder: Sendable {
    public init() {}

    public func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        JSONWriter.write(try encodeToValue(value))
    }

    public func encodeToValue<T: Encodable>(_ value: T) throws -> JSONValue {
        let node = EncodingNode()
        try EncoderImpl(node: node, codingPath: []).encodeAny(value)
        return node.resolved()
    }
}

final class EncodingNode {
    enum Kind {
        case unset
        case value(JSONValue)
        case object([(String, EncodingNode)])
        case array([EncodingNode])
    }
    var kind: Kind = .unset

    func resolved() -> JSONValue {
        switch kind {
        case .unset: return .object(JSONObject())
        case .value(let v): return v
        case .object(let members): return .object(JSONObject(members.map { ($0.0, $0.1.resolved()) }))
        case .array(let elements): return .array(elements.map { $0.resolved() })
        }
    }

    func child(forKey key: String) -> EncodingNode {
        let child = EncodingNode()
        if case .object(var members) = kind {
            if let index = members.firstIndex(where: { $0.0 == key }) {
                members[index].1 = child
            } else {
                members.append((key, child))
            }
            kind = .object(members)
        } else {
            kind = .object([(key, child)])
        }
        return child
    }

    func appendChild() -> EncodingNode {
        let child = EncodingNode()
        if case .array(var elements) = kind {
            elements.append(child)
            kind = .array(elements)
        } else {
            kind = .array([child])
        }
        return child
    }
}

struct AnyCodingKey: CodingKey {
    var stringValue: String
    var intValue: Int?
    init(stringValue: String) { self.stringValue = stringValue }
    init(intValue: Int) { self.stringValue = String(intValue); self.intValue = intValue }
}

struct EncoderImpl: Encoder {
    let node: EncodingNode
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func encodeAny<T: Encodable>(_ value: T) throws {
        switch value {
        case let v as JSONValue: node.kind = .value(v)
        case let v as String: node.kind = .value(.string(v))
        case let v as Bool: node.kind = .value(.bool(v))
        case let v as Double:
            guard v.isFinite else {
                throw EncodingError.invalidValue(v, .init(codingPath: codingPath, debugDescription: "JSON cannot hold \(v)"))
            }
            node.kind = .value(.double(v))
        case let v as Float:
            guard v.isFinite else {
                throw EncodingError.invalidValue(v, .init(codingPath: codingPath, debugDescription: "JSON cannot hold \(v)"))
            }
            node.kind = .value(.double(Double(v)))
        case let v as Int: node.kind = .value(.integer(v))
        case let v as Int8: node.kind = .value(.integer(v))
        case let v as Int16: node.kind = .value(.integer(v))
        case let v as Int32: node.kind = .value(.integer(v))
        case let v as Int64: node.kind = .value(.integer(v))
        case let v as UInt: node.kind = .value(.integer(v))
        case let v as UInt8: node.kind = .value(.integer(v))
        case let v as UInt16: node.kind = .value(.integer(v))
        case let v as UInt32: node.kind = .value(.integer(v))
        case let v as UInt64: node.kind = .value(.integer(v))
        default: try value.encode(to: self)
        }
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        if case .object = node.kind {} else { node.kind = .object([]) }
        return KeyedEncodingContainer(KeyedContainer<Key>(node: node, codingPath: codingPath))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        if case .array = node.kind {} else { node.kind = .array([]) }
        return UnkeyedContainer(node: node, codingPath: codingPath)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer { SingleContainer(encoder: self) }

    struct KeyedContainer<Key: CodingKey>: KeyedEncodingContainerProtocol {
        let node: EncodingNode
        let codingPath: [any CodingKey]

        mutating func encodeNil(forKey key: Key) throws { node.child(forKey: key.stringValue).kind = .value(.null) }
        mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
            try EncoderImpl(node: node.child(forKey: key.stringValue), codingPath: codingPath + [key]).encodeAny(value)
        }
        mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
            EncoderImpl(node: node.child(forKey: key.stringValue), codingPath: codingPath + [key]).container(keyedBy: keyType)
        }
        mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
            EncoderImpl(node: node.child(forKey: key.stringValue), codingPath: codingPath + [key]).unkeyedContainer()
        }
        mutating func superEncoder() -> any Encoder {
            EncoderImpl(node: node.child(forKey: "super"), codingPath: codingPath + [AnyCodingKey(stringValue: "super")])
        }
        mutating func superEncoder(forKey key: Key) -> any Encoder {
            EncoderImpl(node: node.child(forKey: key.stringValue), codingPath: codingPath + [key])
        }
    }

    struct UnkeyedContainer: UnkeyedEncodingContainer {
        let node: EncodingNode
        let codingPath: [any CodingKey]
        var count: Int {
            if case .array(let elements) = node.kind { return elements.count }
            return 0
        }
        private var nextPath: [any CodingKey] { codingPath + [AnyCodingKey(intValue: count)] }

        mutating func encodeNil() throws { node.appendChild().kind = .value(.null) }
        mutating func encode<T: Encodable>(_ value: T) throws {
            let path = nextPath
            try EncoderImpl(node: node.appendChild(), codingPath: path).encodeAny(value)
        }
        mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
            let path = nextPath
            return EncoderImpl(node: node.appendChild(), codingPath: path).container(keyedBy: keyType)
        }
        mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
            let path = nextPath
            return EncoderImpl(node: node.appendChild(), codingPath: path).unkeyedContainer()
        }
        mutating func superEncoder() -> any Encoder {
            let path = nextPath
            return EncoderImpl(node: node.appendChild(), codingPath: path)
        }
    }

    struct SingleContainer: SingleValueEncodingContainer {
        let encoder: EncoderImpl
        var codingPath: [any CodingKey] { encoder.codingPath }
        mutating func encodeNil() throws { encoder.node.kind = .value(.null) }
        mutating func encode<T: Encodable>(_ value: T) throws { try encoder.encodeAny(value) }
    }
}
