/// A cluster's name: a DNS name such as `plane.test`. Backends are served at
/// `{backend}.{cluster}`. Every label follows `IdentifierRules`; the whole name is at most 253
/// characters. In NATS subjects the cluster appears in its *subject form*, every `.`
/// replaced by `_` (`plane_test`); names cannot contain `_`, so the mapping is one-to-one.
public struct ClusterName: ValidatedString, Comparable, ExpressibleByStringLiteral {
    public let rawValue: String
    public static let maximumLength = 253

    public init(_ text: String) throws(PlaneCoreError) {
        let rule = "a cluster name must be a DNS name such as 'plane.example.com': labels separated by '.', each \(IdentifierRules.ruleText), at most \(Self.maximumLength) characters in all"
        if text.utf8.count > Self.maximumLength {
            throw PlaneCoreError(.invalidClusterName, "Cluster name \(text.quotedForError) is too long; \(rule).")
        }
        if text.hasSuffix(".") {
            throw PlaneCoreError(.invalidClusterName, "Cluster name \(text.quotedForError) ends with '.'; write it without the trailing dot.")
        }
        for label in text.split(separator: ".", omittingEmptySubsequences: false) {
            if let problem = IdentifierRules.labelProblem(String(label)) {
                let which = label.isEmpty ? "it has an empty label" : "label '\(label)' is invalid: \(problem)"
                throw PlaneCoreError(.invalidClusterName, "Cluster name \(text.quotedForError) is invalid: \(which); \(rule).")
            }
        }
        rawValue = text
    }

    public init(stringLiteral value: String) {
        do { try self.init(value) } catch { preconditionFailure(error.message) }
    }

    /// The form used as NATS subject tokens: every `.` replaced by `_`.
    public var subjectForm: String { rawValue.replacingDots(with: "_") }

    /// The host name of a backend of this cluster.
    public func hostname(of backend: BackendID) -> String { "\(backend.rawValue).\(rawValue)" }

    public static func < (lhs: ClusterName, rhs: ClusterName) -> Bool { lhs.rawValue < rhs.rawValue }

}

extension String {
    func replacingDots(with replacement: Character) -> String {
        String(map { $0 == "." ? replacement : $0 })
    }
}
