import Crypto
import Foundation
import PlaneCore

/// The account's P-256 key: signs requests (JWS ES256) and names the account by its JWK
/// (RFC 7517) and thumbprint (RFC 7638).
public struct ACMEAccountKey: Sendable {
    public let privateKey: P256.Signing.PrivateKey

    public init(_ privateKey: P256.Signing.PrivateKey = P256.Signing.PrivateKey()) {
        self.privateKey = privateKey
    }

    public init(pem: String) throws(ACMEError) {
        do {
            privateKey = try P256.Signing.PrivateKey(pemRepresentation: pem)
        } catch {
            throw ACMEError(.storage, "The ACME account key is not a P-256 private key in PEM.", cause: error)
        }
    }

    /// PKCS#8 PEM.
    public var pem: String { privateKey.pemRepresentation }

    /// The public JWK members, in the lexicographic order RFC 7638 hashes them in.
    public var jwkMembers: [(String, String)] {
        let raw = Array(privateKey.publicKey.rawRepresentation)  // x || y, 32 bytes each
        return [("crv", "P-256"), ("kty", "EC"), ("x", Base64URL.encode(Array(raw[0..<32]))), ("y", Base64URL.encode(Array(raw[32..<64])))]
    }

    /// The JWK as compact JSON with sorted members (also the thumbprint's input).
    public var jwkJSON: String {
        "{" + jwkMembers.map { "\"\($0.0)\":\"\($0.1)\"" }.joined(separator: ",") + "}"
    }

    /// RFC 7638 thumbprint: base64url(SHA-256(canonical JWK)).
    public var thumbprint: String { Base64URL.encode(Array(SHA256.hash(data: Array(jwkJSON.utf8)))) }

    /// The key authorization of a challenge token (RFC 8555 §8.1).
    public func keyAuthorization(token: String) -> String { token + "." + thumbprint }

    /// The TXT value of a dns-01 challenge (RFC 8555 §8.4): base64url(SHA-256(key authorization)).
    public func dnsChallengeValue(token: String) -> String {
        Base64URL.encode(Array(SHA256.hash(data: Array(keyAuthorization(token: token).utf8))))
    }

    /// ES256 signature of `input` as the 64-byte `r || s` JWS wants.
    func sign(_ input: [UInt8]) throws(ACMEError) -> [UInt8] {
        do {
            return Array(try privateKey.signature(for: input).rawRepresentation)
        } catch {
            throw ACMEError(.protocolViolation, "Could not sign an ACME request with the account key.", cause: error)
        }
    }
}
