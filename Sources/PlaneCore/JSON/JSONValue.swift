/// A JSON document as a value, with object members kept in document order.
///
/// Plane's wire format is serde_json's output; to reproduce it byte for byte we need the
/// order of keys and the exact text of numbers, which `Foundation.JSONSerialization` loses.
public enum JSONValue: Sendable, Hashable {
    case null
    case bool(Bool)
    /// A number kept as its JSON text (e.g. `"30"`, `"0.0371"`), so integer fields can
    /// reject `30.0` and relayed numbers come out unchanged.
    case number(String)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)

    public static func integer<T: BinaryInteger>(_ value: T) -> JSONValue { .number(String(value)) }
    public static func double(_ value: Double) -> JSONValue {
        value.isFinite ? .number(JSONNumberFormatter.format(value)) : .null
    }

    public var objectValue: JSONObject? { if case .object(let o) = self { return o } else { return nil } }
    public var stringValue: String? { if case .string(let s) = self { return s } else { return nil } }
    public var arrayValue: [JSONValue]? { if case .array(let a) = self { return a } else { return nil } }
    public var boolValue: Bool? { if case .bool(let b) = self { return b } else { return nil } }
    public var isNull: Bool { if case .null = self { return true } else { return false } }
    /// The number as an integer, when it is written as one.
    public var int64Value: Int64? { if case .number(let n) = self { return Int64(n) } else { return nil } }
    public var doubleValue: Double? { if case .number(let n) = self { return Double(n) } else { return nil } }

    /// A short name of the kind of value, for error messages.
    public var kindName: String {
        switch self {
        case .null: "null"
        case .bool: "a boolean"
        case .number: "a number"
        case .string: "a string"
        case .array: "an array"
        case .object: "an object"
        }
    }

    /// Structural equality in which object member order does not matter and numbers are
    /// compared by value; this is "the same JSON value" as a JSON peer sees it.
    public func isEquivalent(to other: JSONValue) -> Bool {
        switch (self, other) {
        case (.null, .null): return true
        case (.bool(let a), .bool(let b)): return a == b
        case (.number(let a), .number(let b)): return a == b || (Double(a) != nil && Double(a) == Double(b))
        case (.string(let a), .string(let b)): return a == b
        case (.array(let a), .array(let b)):
            return a.count == b.count && zip(a, b).allSatisfy { $0.isEquivalent(to: $1) }
        case (.object(let a), .object(let b)):
            guard a.count == b.count else { return false }
            for (key, value) in a.members {
                guard let otherValue = b[key], value.isEquivalent(to: otherValue) else { return false }
            }
            return true
        default: return false
        }
    }
}

/// JSON object members in document order. Lookup is linear while an object is small (wire
/// objects are) and goes through an index beyond `indexedCount` members, so that a peer's
/// object with many thousands of members costs linear time to decode, not quadratic.
public struct JSONObject: Sendable, Hashable {
    public private(set) var members: [(key: String, value: JSONValue)]
    /// Key → position of its last occurrence, for objects of more than `indexedCount` members.
    private var index: [String: Int]?

    static let indexedCount = 16

    public init() { members = [] }
    public init(_ members: [(String, JSONValue)]) {
        self.members = members.map { (key: $0.0, value: $0.1) }
        rebuildIndex()
    }

    private mutating func rebuildIndex() {
        guard members.count > Self.indexedCount else {
            index = nil
            return
        }
        var positions: [String: Int] = [:]
        positions.reserveCapacity(members.count)
        for (position, member) in members.enumerated() { positions[member.key] = position }
        index = positions
    }

    public var count: Int { members.count }
    public var keys: [String] { members.map(\.key) }

    public subscript(key: String) -> JSONValue? {
        get {
            // Like serde_json, the last occurrence of a duplicated key wins.
            if let index { return index[key].map { members[$0].value } }
            return members.last(where: { $0.key == key })?.value
        }
        set {
            if let position = index?[key] ?? members.lastIndex(where: { $0.key == key }) {
                if let newValue {
                    members[position].value = newValue
                } else {
                    members.remove(at: position)
                    rebuildIndex()
                }
            } else if let newValue {
                members.append((key: key, value: newValue))
                if index != nil { index?[key] = members.count - 1 } else if members.count > Self.indexedCount { rebuildIndex() }
            }
        }
    }

    public static func == (lhs: JSONObject, rhs: JSONObject) -> Bool {
        lhs.members.count == rhs.members.count
            && zip(lhs.members, rhs.members).allSatisfy { $0.key == $1.key && $0.value == $1.value }
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(members.count)
        for member in members {
            hasher.combine(member.key)
            hasher.combine(member.value)
        }
    }
}
