/// A violation of the runtime plugin protocol: a frame that is too long, bytes that are not
/// a JSON message, a message of an unknown shape, no protocol version both sides speak.
public struct PluginProtocolError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Code: String, Sendable, Hashable {
        /// A frame's length prefix exceeds `PluginFrame.maximumLength`.
        case frameTooLong = "frame_too_long"
        /// A frame's payload is not a JSON object, or not a message of the protocol.
        case malformedMessage = "malformed_message"
        /// A message's fields do not fit the call (a missing or mistyped field).
        case malformedPayload = "malformed_payload"
        /// The two sides share no protocol version.
        case noCommonVersion = "no_common_version"
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
