/// The credential of an `Authorization: Bearer <credential>` header value (RFC 6750 §2.1):
/// the scheme in any case (RFC 9110 §11.1), blanks around ignored.
public enum BearerCredential {
    /// The credential's bytes, or nil for any other value (another scheme, no credential).
    public static func parse(_ value: String) -> ArraySlice<UInt8>? {
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

    private static func lowercase(_ byte: UInt8) -> UInt8 {
        (byte >= 65 && byte <= 90) ? byte + 32 : byte
    }
}
