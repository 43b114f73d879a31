/// An id that follows `IdentifierRules` (a DNS label, NATS token and container name at
/// once). `BackendID` and `DroneID` share their validation, coding and printing through it.
public protocol LabelIdentifier: ValidatedString, Comparable, ExpressibleByStringLiteral {
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

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
}
