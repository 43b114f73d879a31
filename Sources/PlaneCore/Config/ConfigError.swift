/// A configuration that cannot be used: every problem found, each naming its key.
public struct ConfigError: Error, Sendable, CustomStringConvertible {
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }
        /// The file is missing or unreadable.
        public static let unreadable = Code(rawValue: "unreadable")
        /// The file is not valid TOML.
        public static let syntax = Code(rawValue: "syntax")
        /// Keys are unknown, missing, of the wrong type or out of range.
        public static let invalid = Code(rawValue: "invalid")
    }

    public var code: Code
    /// Where the configuration came from (a file path).
    public var source: String
    public var problems: [String]
    public var cause: (any Error)?

    public init(_ code: Code, source: String, problems: [String], cause: (any Error)? = nil) {
        self.code = code
        self.source = source
        self.problems = problems
        self.cause = cause
    }

    public var message: String {
        switch code {
        case .unreadable: "Cannot read the configuration \(source): \(problems.joined(separator: "; "))"
        case .syntax: "\(source) is not valid TOML: \(problems.joined(separator: "; "))"
        default: "\(source) has \(problems.count == 1 ? "a problem" : "\(problems.count) problems"); nothing was started:\n" + problems.map { "  - \($0)" }.joined(separator: "\n")
        }
    }

    public var description: String { message }
}
