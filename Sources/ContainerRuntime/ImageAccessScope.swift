import Crypto

/// Who may use an image a runtime pulled: `anonymous` (anyone: the registry served it
/// without credentials), or one set of credentials at one registry, named by a SHA-256 of
/// them (the secret itself is never stored). A runtime keeps, per image and per blob, the
/// scopes the registry granted, and asks the registry again before a spawn with another
/// scope uses what is already on the drone: a spawn without the credentials cannot run a
/// private image another spawn pulled.
public struct ImageAccessScope: Sendable, Hashable, Codable, CustomStringConvertible {
    public let rawValue: String

    public static let anonymous = ImageAccessScope(rawValue: "anonymous")

    public init(rawValue: String) { self.rawValue = rawValue }

    public init(_ credentials: RegistryCredentials?, registry: String) {
        guard let credentials else {
            self = .anonymous
            return
        }
        var hash = SHA256()
        for part in [registry, credentials.username, credentials.password] {
            hash.update(data: Array(part.utf8))
            hash.update(data: [0])
        }
        rawValue = "sha256:" + hash.finalize().map { byte in
            let hex = String(byte, radix: 16)
            return hex.count == 1 ? "0" + hex : hex
        }.joined()
    }

    public var description: String { rawValue == Self.anonymous.rawValue ? rawValue : "credentials \(rawValue.prefix(19))…" }
}
