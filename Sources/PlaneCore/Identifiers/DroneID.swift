/// A drone's id. It appears in NATS subject tokens (`drone.{id}.spawn`), DNS and log
/// metadata, so it follows `IdentifierRules`.
public struct DroneID: LabelIdentifier {
    public let rawValue: String
    public init(validatedRawValue: String) { rawValue = validatedRawValue }
    public static let kindName = "Drone id"
    public static let invalidCode = PlaneCoreError.Code.invalidDroneID
}
