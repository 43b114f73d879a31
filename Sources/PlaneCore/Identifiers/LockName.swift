/// A lock: at most one live backend holds a given lock at a time (`ScheduleRequest.lock`,
/// later Plane 0.3.x). Any UTF-8 text of 1 to 2048 bytes. Because it may contain anything,
/// it is never used raw in a NATS subject or a KV key: use `encodedToken`.
public struct LockName: ValidatedString, ExpressibleByStringLiteral {
    public let rawValue: String
    public static let maximumByteCount = 2048

    public init(_ text: String) throws(PlaneCoreError) {
        let count = text.utf8.count
        if count == 0 {
            throw PlaneCoreError(.invalidLock, "The lock is an empty string; omit `lock` (or send null) for a backend without a lock.")
        }
        if count > Self.maximumByteCount {
            throw PlaneCoreError(.invalidLock, "The lock is \(count) bytes long; a lock may be at most \(Self.maximumByteCount) bytes of UTF-8 (hash longer keys first).")
        }
        rawValue = text
    }

    public init(stringLiteral value: String) {
        do { try self.init(value) } catch { preconditionFailure(error.message) }
    }

    /// The lock as base64url without padding (alphabet `A-Za-z0-9-_`): a valid NATS subject
    /// token and JetStream KV key for any lock text, and distinct for distinct locks.
    public var encodedToken: String { Base64URL.encode(Array(rawValue.utf8)) }

    /// Decodes a token made by `encodedToken`.
    public init(encodedToken token: String) throws(PlaneCoreError) {
        guard let bytes = Base64URL.decode(token), let text = String(validating: bytes, as: UTF8.self) else {
            throw PlaneCoreError(.invalidLock, "'\(token)' is not an encoded lock token.")
        }
        try self.init(text)
    }


}

/// Base64url (RFC 4648 §5) without padding.
public enum Base64URL {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)

    public static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count * 4 + 2) / 3)
        var i = 0
        while i + 3 <= bytes.count {
            let n = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2])
            out.append(alphabet[Int(n >> 18 & 63)]); out.append(alphabet[Int(n >> 12 & 63)])
            out.append(alphabet[Int(n >> 6 & 63)]); out.append(alphabet[Int(n & 63)])
            i += 3
        }
        let rest = bytes.count - i
        if rest == 1 {
            let n = UInt32(bytes[i]) << 16
            out.append(alphabet[Int(n >> 18 & 63)]); out.append(alphabet[Int(n >> 12 & 63)])
        } else if rest == 2 {
            let n = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8
            out.append(alphabet[Int(n >> 18 & 63)]); out.append(alphabet[Int(n >> 12 & 63)])
            out.append(alphabet[Int(n >> 6 & 63)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    public static func decode(_ text: String) -> [UInt8]? {
        var values: [UInt32] = []
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): values.append(UInt32(byte - UInt8(ascii: "A")))
            case UInt8(ascii: "a")...UInt8(ascii: "z"): values.append(UInt32(byte - UInt8(ascii: "a") + 26))
            case UInt8(ascii: "0")...UInt8(ascii: "9"): values.append(UInt32(byte - UInt8(ascii: "0") + 52))
            case UInt8(ascii: "-"): values.append(62)
            case UInt8(ascii: "_"): values.append(63)
            default: return nil
            }
        }
        if values.count % 4 == 1 { return nil }
        var out: [UInt8] = []
        var i = 0
        while i < values.count {
            let chunk = values[i..<min(i + 4, values.count)]
            var n: UInt32 = 0
            for (j, v) in chunk.enumerated() { n |= v << (18 - 6 * UInt32(j)) }
            out.append(UInt8(n >> 16 & 0xFF))
            if chunk.count > 2 { out.append(UInt8(n >> 8 & 0xFF)) }
            if chunk.count > 3 { out.append(UInt8(n & 0xFF)) }
            i += 4
        }
        // Reject non-canonical encodings (stray bits in the last character).
        return encode(out) == text ? out : nil
    }
}
