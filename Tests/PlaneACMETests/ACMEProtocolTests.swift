import Crypto
import Foundation
import Logging
import PlaneCore
import Testing
@testable import PlaneACME

/// JWS, JWK thumbprints, EAB and the small parsers, checked against independent
/// computations (CryptoKit verification, JSONSerialization) rather than our own code.
struct ACMEProtocolTests {
    func decodeJSON(_ base64url: String) throws -> [String: Any] {
        let bytes = try #require(Base64URL.decode(base64url))
        return try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
    }

    @Test func aSignedRequestCarriesTheJWKOrTheAccountAndVerifies() throws {
        let key = ACMEAccountKey()
        let jws = try JSONWebSignature.sign(payload: "{\"a\":1}", url: "https://ca.test/new-acct", nonce: "n-1", key: key, signer: .jwk)
        let header = try decodeJSON(jws.protected)
        #expect(header["alg"] as? String == "ES256" && header["nonce"] as? String == "n-1" && header["url"] as? String == "https://ca.test/new-acct")
        let jwk = try #require(header["jwk"] as? [String: String])
        #expect(jwk["kty"] == "EC" && jwk["crv"] == "P-256" && header["kid"] == nil)
        // The JWK's coordinates are the public key.
        let x = try #require(Base64URL.decode(jwk["x"]!)), y = try #require(Base64URL.decode(jwk["y"]!))
        #expect(x + y == Array(key.privateKey.publicKey.rawRepresentation))
        // ES256 over "protected.payload", verified by swift-crypto from the raw r||s form.
        let signature = try P256.Signing.ECDSASignature(rawRepresentation: try #require(Base64URL.decode(jws.signature)))
        #expect(key.privateKey.publicKey.isValidSignature(signature, for: Array("\(jws.protected).\(jws.payload)".utf8)))
        #expect(try #require(Base64URL.decode(jws.payload)) == Array("{\"a\":1}".utf8))
        // Tampering breaks it.
        #expect(!key.privateKey.publicKey.isValidSignature(signature, for: Array("\(jws.protected).e30".utf8)))

        let get = try JSONWebSignature.sign(payload: nil, url: "https://ca.test/order/1", nonce: "n-2", key: key, signer: .account(url: "https://ca.test/acct/7"))
        let getHeader = try decodeJSON(get.protected)
        #expect(get.payload == "" && getHeader["kid"] as? String == "https://ca.test/acct/7" && getHeader["jwk"] == nil)
        let body = try #require(try JSONSerialization.jsonObject(with: Data(get.json.utf8)) as? [String: String])
        #expect(body == ["protected": get.protected, "payload": "", "signature": get.signature])
    }

    @Test func theThumbprintIsTheSHA256OfTheCanonicalJWK() throws {
        let key = ACMEAccountKey()
        let members = Dictionary(uniqueKeysWithValues: key.jwkMembers)
        let canonical = try JSONSerialization.data(withJSONObject: members, options: [.sortedKeys, .withoutEscapingSlashes])
        #expect(key.thumbprint == Base64URL.encode(Array(SHA256.hash(data: canonical))))
        #expect(key.keyAuthorization(token: "tok") == "tok." + key.thumbprint)
        let digest = SHA256.hash(data: Array("tok.\(key.thumbprint)".utf8))
        #expect(key.dnsChallengeValue(token: "tok") == Base64URL.encode(Array(digest)))
        #expect(key.dnsChallengeValue(token: "tok").count == 43)
        // A reloaded key is the same account.
        #expect(try ACMEAccountKey(pem: key.pem).thumbprint == key.thumbprint)
        #expect(throws: ACMEError.self) { try ACMEAccountKey(pem: "not a key") }
    }

    @Test func theExternalAccountBindingIsAnHMACOverTheAccountKey() throws {
        let binding = try ExternalAccountBinding(keyID: "kid-1", key: "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W")
        #expect(binding.macKey.count == 48)
        let key = ACMEAccountKey()
        let eab = JSONWebSignature.externalAccountBinding(keyID: binding.keyID, macKey: binding.macKey, accountKey: key, url: "https://ca.test/new-acct")
        let header = try decodeJSON(eab.protected)
        #expect(header["alg"] as? String == "HS256" && header["kid"] as? String == "kid-1" && header["url"] as? String == "https://ca.test/new-acct")
        #expect(header["nonce"] == nil)
        #expect(try #require(Base64URL.decode(eab.payload)) == Array(key.jwkJSON.utf8))
        let mac = try #require(Base64URL.decode(eab.signature))
        #expect(HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: Array("\(eab.protected).\(eab.payload)".utf8), using: SymmetricKey(data: binding.macKey)))
        // Padding is accepted; other alphabets and empty values are not.
        #expect(try ExternalAccountBinding(keyID: "k", key: "bXkgYmFzZTY0IGtleQ==").macKey == Array("my base64 key".utf8))
        #expect(throws: ACMEError.self) { try ExternalAccountBinding(keyID: "k", key: "not base64!") }
        #expect(throws: ACMEError.self) { try ExternalAccountBinding(keyID: "", key: "AAAA") }
    }

    @Test func jsonStringsAreEscaped() {
        #expect(JSONWebSignature.jsonString("a\"b\\c\nd\u{1}") == "\"a\\\"b\\\\c\\nd\\u0001\"")
    }

    @Test func retryAfterIsSecondsOrAnHTTPDate() {
        #expect(ACMEClient.retryAfter("3") == .seconds(3))
        #expect(ACMEClient.retryAfter(" 0 ") == .seconds(0))
        let now = Date(timeIntervalSince1970: 1_700_000_000)
        // 2023-11-14 22:13:30 GMT is now + 10 s.
        #expect(ACMEClient.retryAfter("Tue, 14 Nov 2023 22:13:30 GMT", now: now) == .seconds(10))
        #expect(ACMEClient.retryAfter("soon") == nil && ACMEClient.retryAfter(nil) == nil)
        // Bounded to a year; a date in the past is now.
        #expect(ACMEClient.retryAfter("99999999999") == .seconds(365 * 86_400))
        #expect(ACMEClient.retryAfter("Mon, 01 Jan 1990 00:00:00 GMT", now: now) == .zero)
        #expect(ACMEClient.retryAfter("Fri, 31 Dec 9999 23:59:59 GMT", now: now) == .seconds(365 * 86_400))
    }

    /// HTTP dates by hand: Foundation's DateFormatter trapped on a hostile server's
    /// non-ASCII `Retry-After` (a finding of the acme fuzz target, now in its corpus).
    @Test func httpDatesAreParsedStrictly() {
        #expect(HTTPDate.parse("Sun, 06 Nov 1994 08:49:37 GMT") == Date(timeIntervalSince1970: 784_111_777))
        #expect(HTTPDate.parse("Thu, 01 Jan 1970 00:00:00 GMT") == Date(timeIntervalSince1970: 0))
        #expect(HTTPDate.parse("Tue, 29 Feb 2000 12:00:00 GMT") == Date(timeIntervalSince1970: 951_825_600))
        for bad in ["Wed, 21\u{670}\u{FFFD}\u{FFFD} 4052 07:28:00 GOT", "Sun, 06 Nov 1994 08:49:37 UTC", "Sunday, 06-Nov-94 08:49:37 GMT",
                    "Sun Nov  6 08:49:37 1994", "Sun, 31 Nov 1994 08:49:37 GMT", "Sun, 29 Feb 1900 08:49:37 GMT", "Sun, 06 Nov 1994 24:00:00 GMT",
                    "Sun, 06 Nov 1994 08:60:00 GMT", "Sun, 06 Nov 199x 08:49:37 GMT", "Sun, 06 Nov 1994 08:49:37 GMT ", "Xyz, 06 Nov 1994 08:49:37 GMT",
                    "Sun, 06 Foo 1994 08:49:37 GMT", "Sun, +6 Nov 1994 08:49:37 GMT", ""] {
            #expect(HTTPDate.parse(bad) == nil, "\(bad)")
        }
    }

    @Test func problemsNameTheirType() throws {
        let problem = try JSONDecoder().decode(ACMEProblem.self, from: Data(#"{"type":"urn:ietf:params:acme:error:badNonce","detail":"JWS has an invalid anti-replay nonce","status":400}"#.utf8))
        #expect(problem.isBadNonce && problem.name == "badNonce" && problem.status == 400)
        #expect(problem.description == "badNonce: JWS has an invalid anti-replay nonce")
        #expect(!ACMEProblem(type: "urn:ietf:params:acme:error:unauthorized", detail: nil).isBadNonce)
    }

    @Test func aBadDirectoryURLOrCABundleIsAConfigurationError() async throws {
        let logger = Logger(label: "test")
        #expect { try ACMEClient(directoryURL: "ftp://ca.test/dir", logger: logger) } throws: { ($0 as? ACMEError)?.code == .configuration }
        #expect { try ACMEClient(directoryURL: "https://ca.test/dir", caBundlePath: "/nonexistent/ca.pem", logger: logger) } throws: {
            ($0 as? ACMEError)?.code == .configuration && "\($0)".contains("ca_bundle")
        }
    }

    /// Without the shutdown in `deinit`, AsyncHTTPClient traps here and the whole test
    /// process dies (it did in CI when a failed expectation ended a test early).
    @Test func aUsedClientDroppedWithoutShutdownDoesNotTrap() async throws {
        do {
            let client = try ACMEClient(directoryURL: "http://127.0.0.1:9/dir", logger: Logger(label: "test"))
            await #expect(throws: ACMEError.self) { try await client.directory() }
        }
        try await Task.sleep(for: .milliseconds(300))
    }

    @Test func namesAreTheWildcardAndTheApexUnlessTurnedOff() {
        var configuration = ACMEConfiguration(server: "https://ca.test/dir", adminEmail: "a@b.c")
        #expect(configuration.names(for: "plane.test") == ["*.plane.test", "plane.test"])
        configuration.includeApex = false
        #expect(configuration.names(for: "plane.test") == ["*.plane.test"])
    }
}
