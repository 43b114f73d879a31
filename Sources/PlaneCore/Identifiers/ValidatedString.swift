/// A string that is only valid under rules checked by `init(_:)`. Conforming types get
/// Codable as a JSON string whose decoding runs the same checks (a bad value becomes a
/// `DecodingError` carrying the `PlaneCoreError`, which `WireDecoder` reports with the field).
public protocol ValidatedString: Sendable, Hashable, Codable, CustomStringConvertible {
    var rawValue: String { get }
    init(_ text: String) throws(PlaneCoreError)
}

extension ValidatedString {
    public var description: String { rawValue }

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
