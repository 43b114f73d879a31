/// Errors of building a container image; the message says what to do.
public struct ImageBuilderError: Error, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable { case invalidInput, missingLibrary, io, tool }
    public var code: Code
    public var message: String
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }
    public var description: String { message }
}
