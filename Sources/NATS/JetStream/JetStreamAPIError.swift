/// An error returned by the JetStream API (`{"error":{"code":404,"err_code":10059,...}}`).
public struct JetStreamAPIError: Error, Sendable, Hashable, Decodable, CustomStringConvertible {
    public var code: Int
    public var errorCode: Int
    public var errorDescription: String

    public static let streamNotFound = 10059
    public static let noMessageFound = 10037
    public static let wrongLastSequence = 10071
    public static let consumerNotFound = 10014
    public static let streamNameInUse = 10058

    enum CodingKeys: String, CodingKey {
        case code
        case errorCode = "err_code"
        case errorDescription = "description"
    }

    public init(code: Int, errorCode: Int, errorDescription: String) {
        self.code = code
        self.errorCode = errorCode
        self.errorDescription = errorDescription
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        code = try c.decodeIfPresent(Int.self, forKey: .code) ?? 0
        errorCode = try c.decodeIfPresent(Int.self, forKey: .errorCode) ?? 0
        errorDescription = try c.decodeIfPresent(String.self, forKey: .errorDescription) ?? "unknown error"
    }

    public var description: String { "\(errorDescription) (status \(code), err_code \(errorCode))" }
}

extension NATSError {
    /// The JetStream API error behind this error, if any.
    public var jetStreamError: JetStreamAPIError? { cause as? JetStreamAPIError }
}
