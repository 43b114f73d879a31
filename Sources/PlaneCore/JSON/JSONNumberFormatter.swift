/// Formats a finite `Double` the way serde_json (ryu) does, e.g. `0.0`, `100.0`, `0.0371`,
/// `1e-5`, `1.5e16`: the shortest digits that round-trip, laid out by ryu's rules.
enum JSONNumberFormatter {
    static func format(_ value: Double) -> String {
        if value == 0 { return value.sign == .minus ? "-0.0" : "0.0" }
        // Swift's description already yields the shortest round-tripping digits.
        var (digits, exponent) = decompose(abs(value).description)
        // Strip trailing zeros of the digit string (keep at least one digit).
        while digits.count > 1, digits.last == "0" {
            digits.removeLast()
            exponent += 1
        }
        let sign = value < 0 ? "-" : ""
        let length = digits.count
        // kk is the position of the decimal point relative to the start of the digits.
        let kk = length + exponent
        if exponent >= 0, kk <= 16 {
            return sign + digits + String(repeating: "0", count: exponent) + ".0"
        } else if kk > 0, kk <= 16 {
            let split = digits.index(digits.startIndex, offsetBy: kk)
            return sign + digits[..<split] + "." + digits[split...]
        } else if kk > -5, kk <= 0 {
            return sign + "0." + String(repeating: "0", count: -kk) + digits
        } else if length == 1 {
            return sign + digits + "e" + String(kk - 1)
        } else {
            let first = digits.prefix(1)
            return sign + first + "." + digits.dropFirst() + "e" + String(kk - 1)
        }
    }

    /// Splits a decimal or scientific string into significant digits and a base-10 exponent
    /// such that value = digits × 10^exponent.
    private static func decompose(_ text: String) -> (String, Int) {
        var mantissa = Substring(text)
        var exponent = 0
        if let e = text.firstIndex(where: { $0 == "e" || $0 == "E" }) {
            mantissa = text[..<e]
            exponent = Int(text[text.index(after: e)...]) ?? 0
        }
        var digits = ""
        if let dot = mantissa.firstIndex(of: ".") {
            let fraction = mantissa[mantissa.index(after: dot)...]
            digits = String(mantissa[..<dot]) + fraction
            exponent -= fraction.count
        } else {
            digits = String(mantissa)
        }
        // Strip leading zeros.
        while digits.count > 1, digits.first == "0" { digits.removeFirst() }
        return (digits, exponent)
    }
}
