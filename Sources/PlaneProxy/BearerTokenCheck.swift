/// The bearer-token check of a route with a token (spec §6.3, with v0.3.10's gaps fixed):
/// `Authorization: Bearer <token>` (scheme in any case) or a `_plane_auth=<token>` cookie;
/// either one valid is enough. Comparisons take the same time however much of the token
/// matches. No header value, however short or odd, is a problem: it is just not a match.
public enum BearerTokenCheck {
    public enum Outcome: Sendable, Hashable {
        case allowed
        /// No credentials at all: 401 `Expected bearer token.`
        case missing
        /// Credentials that do not match: 403.
        case wrong
    }

    public static let cookieName = "_plane_auth"

    public static func check(token: String, authorization: [String], cookies: [String]) -> Outcome {
        var presented = false
        var allowed = false
        for value in authorization {
            presented = true
            if let given = bearerCredential(value), constantTimeEqual(given, Array(token.utf8)[...]) { allowed = true }
        }
        for header in cookies {
            for value in cookieValues(named: cookieName, in: header) {
                presented = true
                if constantTimeEqual(value, token) { allowed = true }
            }
        }
        if allowed { return .allowed }
        return presented ? .wrong : .missing
    }

    /// The credential bytes of `Bearer <credential>` (scheme in any case, RFC 9110 §11.1;
    /// surrounding blanks ignored), nil for any other value.
    static func bearerCredential(_ value: String) -> ArraySlice<UInt8>? {
        let bytes = Array(value.utf8)
        let blank: (UInt8) -> Bool = { $0 == 0x20 || $0 == 0x09 }
        guard let first = bytes.firstIndex(where: { !blank($0) }), let last = bytes.lastIndex(where: { !blank($0) }) else { return nil }
        let trimmed = bytes[first...last]
        let scheme = Array("bearer".utf8)
        guard trimmed.count > scheme.count + 1 else { return nil }
        guard zip(trimmed.prefix(scheme.count), scheme).allSatisfy({ lowercase($0) == $1 }) else { return nil }
        let rest = trimmed.dropFirst(scheme.count)
        guard let separator = rest.first, blank(separator), let start = rest.firstIndex(where: { !blank($0) }) else { return nil }
        return trimmed[start...]
    }

    /// Values of cookie `name` in one `Cookie` header (`a=b; c=d`).
    static func cookieValues(named name: String, in header: String) -> [Substring] {
        header.split(separator: ";").compactMap { pair in
            let item = pair.drop { $0 == " " || $0 == "\t" }
            guard let equals = item.firstIndex(of: "=") else { return nil }
            let key = item[item.startIndex..<equals].trimmingSpaces()
            guard key == name else { return nil }
            return item[item.index(after: equals)...].trimmingSpaces()
        }
    }

    /// Equal byte strings, in a time that depends only on the lengths.
    static func constantTimeEqual<A: StringProtocol, B: StringProtocol>(_ a: A, _ b: B) -> Bool {
        constantTimeEqual(Array(a.utf8)[...], Array(b.utf8)[...])
    }

    static func constantTimeEqual(_ x: ArraySlice<UInt8>, _ y: ArraySlice<UInt8>) -> Bool {
        let x = Array(x), y = Array(y)
        var difference = UInt8(truncatingIfNeeded: x.count ^ y.count) | (x.count == y.count ? 0 : 1)
        for index in 0..<max(x.count, y.count) {
            let left = index < x.count ? x[index] : 0
            let right = index < y.count ? y[index] : 0
            difference |= left ^ right
        }
        return difference == 0
    }

    private static func lowercase(_ byte: UInt8) -> UInt8 {
        (byte >= 65 && byte <= 90) ? byte + 32 : byte
    }
}

extension Substring {
    func trimmingSpaces() -> Substring {
        var result = self.drop { $0 == " " || $0 == "\t" }
        while let last = result.last, last == " " || last == "\t" { result = result.dropLast() }
        return result
    }
}
