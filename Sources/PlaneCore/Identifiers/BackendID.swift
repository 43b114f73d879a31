/// A backend's id. It becomes a DNS label (`{backend}.{cluster}`), a NATS subject token and
/// part of a container name, so it follows `IdentifierRules`.
public struct BackendID: Sendable, Hashable, Comparable, Codable, CustomStringConvertible, ExpressibleByStringLiteral {
    public let rawValue: String

    public init(_ text: String) throws(PlaneCoreError) {
        if let problem = IdentifierRules.labelProblem(text) {
            throw PlaneCoreError(.invalidBackendID, "Backend id \(text.quotedForError) is invalid: \(problem); \(IdentifierRules.ruleText).")
        }
        rawValue = text
    }

    /// For literals in code and tests; traps on an invalid id. Note that `BackendID("literal")`
    /// also uses this initializer; for input from outside use `try BackendID(text)` with a variable.
    public init(stringLiteral value: String) {
        do { try self.init(value) } catch { preconditionFailure(error.message) }
    }

    /// A fresh random id (a lower-case UUIDv4, as Plane v0.3.10 generates).
    public static func random() -> BackendID {
        BackendID(uncheckedValidated: UUIDv4.random())
    }

    init(uncheckedValidated: String) { rawValue = uncheckedValidated }

    public var description: String { rawValue }
    public static func < (lhs: BackendID, rhs: BackendID) -> Bool { lhs.rawValue < rhs.rawValue }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        do { try self.init(text) } catch {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: error.message, underlyingError: error))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}
