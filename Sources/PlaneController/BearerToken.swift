import PlaneCore

/// Bearer tokens: 30 alphanumerics from the system's secure random source (v0.3.10's
/// length and alphabet).
public enum BearerToken {
    static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789".utf8)

    public static func generate(length: Int = 30) -> String {
        var generator = SystemRandomNumberGenerator()
        return String(decoding: (0..<length).map { _ in alphabet.randomElement(using: &generator) ?? 0x41 }, as: UTF8.self)
    }

    /// A per-connect access token of `backend`: `{backend}.` and 32 alphanumerics (issue 15).
    public static func accessToken(for backend: BackendID) -> String {
        "\(backend.rawValue).\(generate(length: BackendAccessTokenMessage.randomLength))"
    }
}
