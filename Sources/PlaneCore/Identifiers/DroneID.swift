/// A drone's id. It appears in NATS subject tokens (`drone.{id}.spawn`) and DNS/log
/// metadata, so it follows `IdentifierRules`.
public struct DroneID: Sendable, Hashable, Comparable, Codable, CustomStringConvertible, ExpressibleByStringLiteral {
    public let rawValue: String

    public init(_ text: String) throws(PlaneCoreError) {
        if let problem = IdentifierRules.labelProblem(text) {
            throw PlaneCoreError(.invalidDroneID, "Drone id \(text.quotedForError) is invalid: \(problem); \(IdentifierRules.ruleText).")
        }
        rawValue = text
    }

    /// For literals in code and tests; traps on an invalid id. Note that `DroneID("literal")`
    /// also uses this initializer; for input from outside use `try DroneID(text)` with a variable.
    public init(stringLiteral value: String) {
        do { try self.init(value) } catch { preconditionFailure(error.message) }
    }

    /// A fresh random id (a lower-case UUIDv4, the form Plane v0.3.10 drones use).
    public static func random() -> DroneID {
        DroneID(uncheckedValidated: UUIDv4.random())
    }

    init(uncheckedValidated: String) { rawValue = uncheckedValidated }

    public var description: String { rawValue }
    public static func < (lhs: DroneID, rhs: DroneID) -> Bool { lhs.rawValue < rhs.rawValue }

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
