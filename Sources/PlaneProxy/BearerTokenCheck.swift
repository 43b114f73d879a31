import PlaneCore

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

    /// `token` is the backend's bearer token; `also` its per-connect access tokens (issue
    /// 15), each as good as the bearer token until it is revoked.
    public static func check(token: String, also: [String] = [], authorization: [String], cookies: [String]) -> Outcome {
        var presented = false
        var allowed = false
        for value in authorization {
            presented = true
            guard let given = BearerCredential.parse(value) else { continue }
            if ConstantTimeComparison.equal(given, Array(token.utf8)[...]) { allowed = true }
            for other in also where ConstantTimeComparison.equal(given, Array(other.utf8)[...]) { allowed = true }
        }
        for header in cookies {
            for value in cookieValues(named: cookieName, in: header) {
                presented = true
                if ConstantTimeComparison.equal(value, token) { allowed = true }
                for other in also where ConstantTimeComparison.equal(value, other) { allowed = true }
            }
        }
        if allowed { return .allowed }
        return presented ? .wrong : .missing
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
}

extension Substring {
    func trimmingSpaces() -> Substring {
        var result = self.drop { $0 == " " || $0 == "\t" }
        while let last = result.last, last == " " || last == "\t" { result = result.dropLast() }
        return result
    }
}
