/// The name of a runtime class (`sandbox`, `fast`) or of a pool of drones (`eu-west`): what
/// an operator gives drones in `drone.toml` and a spawn asks for. 1 to 63 bytes of lower-case
/// letters, digits, `-`, `_` and `.`, starting with a letter or digit, so it can be printed,
/// logged and used as a metric label as it is.
public struct FleetLabel: ValidatedString, Comparable, ExpressibleByStringLiteral {
    public let rawValue: String
    public static let maximumLength = 63
    public static let ruleText = "1 to 63 characters of a-z, 0-9, '-', '_' and '.', starting with a letter or digit"

    public init(_ text: String) throws(PlaneCoreError) {
        let bytes = Array(text.utf8)
        func allowed(_ byte: UInt8) -> Bool {
            (0x61...0x7A).contains(byte) || (0x30...0x39).contains(byte) || byte == 0x2D || byte == 0x5F || byte == 0x2E
        }
        guard let first = bytes.first, bytes.count <= Self.maximumLength, bytes.allSatisfy(allowed),
              first != 0x2D, first != 0x5F, first != 0x2E else {
            throw PlaneCoreError(.invalidFleetField, "\(text.quotedForError) is not a runtime class or pool name: use \(Self.ruleText).")
        }
        rawValue = text
    }

    public init(stringLiteral value: String) {
        do { try self.init(value) } catch { preconditionFailure(error.message) }
    }

    public static func < (lhs: FleetLabel, rhs: FleetLabel) -> Bool { lhs.rawValue < rhs.rawValue }
}
