import Crypto
import Foundation
import PlaneCore

/// A flattened JWS (RFC 7515 §7.2.2) as ACME requests carry them (RFC 8555 §6.2).
struct JSONWebSignature: Sendable {
    var protected: String
    var payload: String
    var signature: String

    /// How the signer is named in the protected header.
    enum Signer {
        /// `jwk`: new accounts and account lookups.
        case jwk
        /// `kid`: the account URL, for everything else.
        case account(url: String)
    }

    /// Signs `payload` (nil: POST-as-GET, an empty payload) for `url` with the account key.
    static func sign(payload: String?, url: String, nonce: String, key: ACMEAccountKey, signer: Signer) throws(ACMEError) -> JSONWebSignature {
        var header = "{\"alg\":\"ES256\","
        switch signer {
        case .jwk: header += "\"jwk\":\(key.jwkJSON),"
        case .account(let account): header += "\"kid\":\(jsonString(account)),"
        }
        header += "\"nonce\":\(jsonString(nonce)),\"url\":\(jsonString(url))}"
        let protected = Base64URL.encode(Array(header.utf8))
        let encodedPayload = payload.map { Base64URL.encode(Array($0.utf8)) } ?? ""
        let signature = try key.sign(Array("\(protected).\(encodedPayload)".utf8))
        return JSONWebSignature(protected: protected, payload: encodedPayload, signature: Base64URL.encode(signature))
    }

    /// The External Account Binding (RFC 8555 §7.3.4): the account's JWK signed with HS256
    /// under the CA-issued key id and MAC key.
    static func externalAccountBinding(keyID: String, macKey: [UInt8], accountKey: ACMEAccountKey, url: String) -> JSONWebSignature {
        let header = "{\"alg\":\"HS256\",\"kid\":\(jsonString(keyID)),\"url\":\(jsonString(url))}"
        let protected = Base64URL.encode(Array(header.utf8))
        let payload = Base64URL.encode(Array(accountKey.jwkJSON.utf8))
        let mac = HMAC<SHA256>.authenticationCode(for: Array("\(protected).\(payload)".utf8), using: SymmetricKey(data: macKey))
        return JSONWebSignature(protected: protected, payload: payload, signature: Base64URL.encode(Array(mac)))
    }

    var json: String {
        "{\"protected\":\"\(protected)\",\"payload\":\"\(payload)\",\"signature\":\"\(signature)\"}"
    }

    /// `text` as a JSON string literal.
    static func jsonString(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20: out += String(format: "\\u%04x", scalar.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}
