/// Bearer tokens: 30 alphanumerics from the system's secure random source (v0.3.10's
/// length and alphabet).
public enum BearerToken {
    static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789".utf8)

    public static func generate() -> String {
        var generator = SystemRandomNumberGenerator()
        return String(decoding: (0..<30).map { _ in alphabet.randomElement(using: &generator)! }, as: UTF8.self)
    }
}
