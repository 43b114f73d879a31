/// The shared rule for names that must be usable as a DNS label, a NATS subject token and a
/// container name at once: lower-case `[a-z0-9-]`, 1 to 63 characters, no `-` at either end.
enum IdentifierRules {
    static let maximumLabelLength = 63

    /// Returns `nil` when `text` is a valid label, else why it is not.
    static func labelProblem(_ text: String) -> String? {
        let utf8 = text.utf8
        if utf8.isEmpty { return "it is empty" }
        if utf8.count > maximumLabelLength { return "it is \(utf8.count) characters long (at most \(maximumLabelLength))" }
        if utf8.first == UInt8(ascii: "-") || utf8.last == UInt8(ascii: "-") { return "it starts or ends with '-'" }
        for byte in utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"):
                continue
            case UInt8(ascii: "A")...UInt8(ascii: "Z"):
                return "it contains upper-case letters"
            default:
                let scalar = Unicode.Scalar(byte)
                let shown = byte < 0x80 ? "'\(Character(scalar))'" : "non-ASCII characters"
                return "it contains \(shown)"
            }
        }
        return nil
    }

    static let ruleText = "use 1 to 63 characters from a-z, 0-9 and '-', not starting or ending with '-'"
}

extension String {
    /// The string quoted for an error message, shortened if very long.
    var quotedForError: String {
        let limit = 80
        if count <= limit { return "'\(self)'" }
        return "'\(prefix(limit))…'"
    }
}
