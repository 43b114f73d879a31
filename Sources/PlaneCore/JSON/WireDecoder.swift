/// Decodes `Decodable` values from JSON with serde's strictness where it matters for the
/// Plane wire format: integers must be written as integers (`30.0` is rejected for an
/// integer field, as serde_json does), unknown keys are ignored, and every failure becomes a
/// `PlaneCoreError` naming the offending field.
public struct WireDecoder: Sendable {
    /// Bounds on the documents decoded (`JSONLimits.wire` unless said otherwise; a process's
    /// own store uses `.stored`).
    public var limits: JSONLimits

    public init(limits: JSONLimits = .wire) { self.limits = limits }

    public func decode<T: Decodable, Bytes: Collection>(_ type: T.Type, from bytes: Bytes) throws(PlaneCoreError) -> T where Bytes.Element == UInt8 {
        let value = try JSONParser.parse(bytes, limits: limits)
        return try decode(type, from: value)
    }

    public func decode<T: Decodable>(_ type: T.Type, from value: JSONValue) throws(PlaneCoreError) -> T {
        do {
            return try DecoderImpl(value: value, codingPath: []).decodeAny(type)
        } catch let error as PlaneCoreError {
            throw error
        } catch let error as DecodingError {
            throw Self.translate(error, type: T.self)
        } catch {
            throw PlaneCoreError(.invalidMessage, "Could not decode \(T.self): \(error).")
        }
    }

    static func path(_ codingPath: [any CodingKey]) -> String {
        var out = ""
        for key in codingPath {
            if let index = key.intValue {
                out += "[\(index)]"
            } else {
                if !out.isEmpty { out += "." }
                out += key.stringValue
            }
        }
        return out
    }

    static func translate(_ error: DecodingError, type: Any.Type) -> PlaneCoreError {
        switch error {
        case .keyNotFound(let key, let context):
            let field = path(context.codingPath + [key])
            return PlaneCoreError(.invalidMessage, "\(type) is missing the required field `\(field)`.", field: field)
        case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context):
            let field = path(context.codingPath)
            if let underlying = context.underlyingError as? PlaneCoreError {
                var e = underlying
                e.field = e.field ?? field
                return e
            }
            let where_ = field.isEmpty ? "" : " in `\(field)`"
            return PlaneCoreError(.invalidMessage, "Invalid \(type)\(where_): \(context.debugDescription)", field: field)
        @unknown default:
            return PlaneCoreError(.invalidMessage, "Could not decode \(type): \(error).")
        }
    }
}

struct DecoderImpl: Decoder {
    let value: JSONValue
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func mismatch(_ expected: String) -> DecodingError {
        .typeMismatch(Any.self, .init(codingPath: codingPath, debugDescription: "expected \(expected), found \(value.kindName)"))
    }

    func decodeAny<T: Decodable>(_ type: T.Type) throws -> T {
        if type == JSONValue.self { return value as! T }
        if type == String.self { return try decodeString() as! T }
        if type == Bool.self { return try decodeBool() as! T }
        if type == Double.self { return try decodeDouble() as! T }
        if type == Float.self { return Float(try decodeDouble()) as! T }
        if type == Int.self { return try decodeInteger(Int.self) as! T }
        if type == Int8.self { return try decodeInteger(Int8.self) as! T }
        if type == Int16.self { return try decodeInteger(Int16.self) as! T }
        if type == Int32.self { return try decodeInteger(Int32.self) as! T }
        if type == Int64.self { return try decodeInteger(Int64.self) as! T }
        if type == UInt.self { return try decodeInteger(UInt.self) as! T }
        if type == UInt8.self { return try decodeInteger(UInt8.self) as! T }
        if type == UInt16.self { return try decodeInteger(UInt16.self) as! T }
        if type == UInt32.self { return try decodeInteger(UInt32.self) as! T }
        if type == UInt64.self { return try decodeInteger(UInt64.self) as! T }
        return try T(from: self)
    }

    func decodeString() throws -> String {
        guard case .string(let s) = value else { throw mismatch("a string") }
        return s
    }

    func decodeBool() throws -> Bool {
        guard case .bool(let b) = value else { throw mismatch("a boolean") }
        return b
    }

    func decodeDouble() throws -> Double {
        guard case .number(let n) = value, let d = Double(n) else { throw mismatch("a number") }
        return d
    }

    func decodeInteger<I: FixedWidthInteger>(_ type: I.Type) throws -> I {
        guard case .number(let text) = value else { throw mismatch("an integer") }
        guard !text.contains(where: { $0 == "." || $0 == "e" || $0 == "E" }) else {
            throw DecodingError.dataCorrupted(.init(codingPath: codingPath, debugDescription: "expected an integer, found \(text)"))
        }
        guard let int = I(text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: codingPath, debugDescription: "\(text) is out of range for \(I.self) (\(I.min)...\(I.max))"))
        }
        return int
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard case .object(let object) = value else { throw mismatch("an object") }
        return KeyedDecodingContainer(KeyedContainer<Key>(object: object, codingPath: codingPath))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        guard case .array(let elements) = value else { throw mismatch("an array") }
        return UnkeyedContainer(elements: elements, codingPath: codingPath)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer { SingleContainer(decoder: self) }

    struct KeyedContainer<Key: CodingKey>: KeyedDecodingContainerProtocol {
        let object: JSONObject
        let codingPath: [any CodingKey]

        var allKeys: [Key] { object.keys.compactMap { Key(stringValue: $0) } }
        func contains(_ key: Key) -> Bool { object[key.stringValue] != nil }

        private func value(for key: Key) throws -> JSONValue {
            guard let v = object[key.stringValue] else {
                throw DecodingError.keyNotFound(key, .init(codingPath: codingPath, debugDescription: "missing"))
            }
            return v
        }

        func decodeNil(forKey key: Key) throws -> Bool { try value(for: key).isNull }

        func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
            try DecoderImpl(value: value(for: key), codingPath: codingPath + [key]).decodeAny(type)
        }

        func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
            try DecoderImpl(value: value(for: key), codingPath: codingPath + [key]).container(keyedBy: type)
        }
        func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
            try DecoderImpl(value: value(for: key), codingPath: codingPath + [key]).unkeyedContainer()
        }
        func superDecoder() throws -> any Decoder {
            DecoderImpl(value: object["super"] ?? .null, codingPath: codingPath + [AnyCodingKey(stringValue: "super")])
        }
        func superDecoder(forKey key: Key) throws -> any Decoder {
            DecoderImpl(value: object[key.stringValue] ?? .null, codingPath: codingPath + [key])
        }
    }

    struct UnkeyedContainer: UnkeyedDecodingContainer {
        let elements: [JSONValue]
        let codingPath: [any CodingKey]
        var currentIndex = 0
        var count: Int? { elements.count }
        var isAtEnd: Bool { currentIndex >= elements.count }

        init(elements: [JSONValue], codingPath: [any CodingKey]) {
            self.elements = elements
            self.codingPath = codingPath
        }

        private mutating func next() throws -> DecoderImpl {
            guard !isAtEnd else {
                throw DecodingError.valueNotFound(Any.self, .init(codingPath: codingPath, debugDescription: "array has no more elements"))
            }
            defer { currentIndex += 1 }
            return DecoderImpl(value: elements[currentIndex], codingPath: codingPath + [AnyCodingKey(intValue: currentIndex)])
        }

        mutating func decodeNil() throws -> Bool {
            guard !isAtEnd else { return false }
            if elements[currentIndex].isNull { currentIndex += 1; return true }
            return false
        }
        mutating func decode<T: Decodable>(_ type: T.Type) throws -> T { try next().decodeAny(type) }
        mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
            try next().container(keyedBy: type)
        }
        mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer { try next().unkeyedContainer() }
        mutating func superDecoder() throws -> any Decoder { try next() }
    }

    struct SingleContainer: SingleValueDecodingContainer {
        let decoder: DecoderImpl
        var codingPath: [any CodingKey] { decoder.codingPath }
        func decodeNil() -> Bool { decoder.value.isNull }
        func decode<T: Decodable>(_ type: T.Type) throws -> T { try decoder.decodeAny(type) }
    }
}

extension JSONValue: Codable {
    public init(from decoder: any Decoder) throws {
        if let impl = decoder as? DecoderImpl {
            self = impl.value
            return
        }
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let b = try? container.decode(Bool.self) {
            self = .bool(b)
        } else if let i = try? container.decode(Int64.self) {
            self = .integer(i)
        } else if let d = try? container.decode(Double.self) {
            self = .double(d)
        } else if let s = try? container.decode(String.self) {
            self = .string(s)
        } else if let a = try? container.decode([JSONValue].self) {
            self = .array(a)
        } else {
            let dict = try container.decode([String: JSONValue].self)
            self = .object(JSONObject(dict.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        if let impl = encoder as? EncoderImpl {
            impl.node.kind = .value(self)
            return
        }
        switch self {
        case .null:
            var c = encoder.singleValueContainer()
            try c.encodeNil()
        case .bool(let b):
            var c = encoder.singleValueContainer()
            try c.encode(b)
        case .number(let n):
            var c = encoder.singleValueContainer()
            if let i = Int64(n) { try c.encode(i) } else { try c.encode(Double(n) ?? 0) }
        case .string(let s):
            var c = encoder.singleValueContainer()
            try c.encode(s)
        case .array(let a):
            var c = encoder.unkeyedContainer()
            for e in a { try c.encode(e) }
        case .object(let o):
            var c = encoder.container(keyedBy: AnyCodingKey.self)
            for m in o.members { try c.encode(m.value, forKey: AnyCodingKey(stringValue: m.key)) }
        }
    }
}
