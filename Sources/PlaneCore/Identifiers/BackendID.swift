/// A backend's id. It becomes a DNS label (`{backend}.{cluster}`), a NATS subject token and
/// part of a container name, so it follows `IdentifierRules`.
public struct BackendID: LabelIdentifier {
    public let rawValue: String
    public init(validatedRawValue: String) { rawValue = validatedRawValue }
    public static let kindName = "Backend id"
    public static let invalidCode = PlaneCoreError.Code.invalidBackendID
}
