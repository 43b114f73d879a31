/// Comparison of secrets (bearer tokens, API tokens) whose running time does not depend on
/// where the first differing byte is, so a caller cannot find a token byte by byte by
/// timing its answers. The length of the expected secret is not hidden.
public enum ConstantTimeComparison {
    public static func equal<A: StringProtocol, B: StringProtocol>(_ a: A, _ b: B) -> Bool {
        equal(Array(a.utf8)[...], Array(b.utf8)[...])
    }

    public static func equal(_ x: ArraySlice<UInt8>, _ y: ArraySlice<UInt8>) -> Bool {
        let x = Array(x), y = Array(y)
        var difference: UInt8 = x.count == y.count ? 0 : 1
        for index in 0..<max(x.count, y.count) {
            let left = index < x.count ? x[index] : 0
            let right = index < y.count ? y[index] : 0
            difference |= left ^ right
        }
        return difference == 0
    }
}
