/// An id that follows `IdentifierRules` (a DNS label, NATS token and container name at
/// once). `BackendID` and `DroneID` share their validation, coding and printing through it.
public protocol LabelIdentifier: Sendable, Hashable, Comparable, Codable, CustomStringConvertible, ExpressibleByStringLiteral {
    var rawValue: String { get }
    /// Creates the id without checking; only for text that passed `IdentifierRules`.
    init(validatedRawValue: String)
    /// "Backend id", "Drone id": how error messages name this kind of id.
    static var kindName: String { get }
    static var invalidCode: PlaneCoreError.Code { get }
}

extension LabelIdentifier {
    /// Validates `text` (throws a `PlaneCoreError` saying what is wrong) and wraps it.
    public init(_ text: String) throws(PlaneCoreError) {
        if let problem = IdentifierRules.labelProblem(text) {
            throw PlaneCoreError(Self.invalidCode, "\(Self.kindName) \(text.quotedForError) is invalid: \(problem); \(IdentifierRules.ruleText).")
        }
        self.init(validatedRawValue: text)
    }

    /// For literals in code and tests; traps on an invalid id. Note that `ID("literal")` also
    /// uses this initializer; for input from outside use `try ID(text)` with a variable.
    public init(stringLiteral value: String) {
        do { try self.init(value) } catch { preconditionFailure(error.message) }
    }

    /// A fresh random id: a lower-case UUIDv4, the form Plane v0.3.10 generates.
    public static func random() -> Self { Self(validatedRawValue: UUIDv4.random()) }

    public var description: String { rawValue }
    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        do { try self.init(text) } catch {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: error.message, underlyingError: error))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}
