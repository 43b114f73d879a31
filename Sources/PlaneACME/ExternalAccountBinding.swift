import PlaneCore

/// The key id and MAC key a CA hands out to bind new accounts to an existing customer
/// account (RFC 8555 §7.3.4; `[acme.eab]`).
public struct ExternalAccountBinding: Sendable, Hashable {
    public var keyID: String
    public var macKey: [UInt8]

    /// `key` is base64url (padding allowed), as CAs print it.
    public init(keyID: String, key: String) throws(ACMEError) {
        var text = key.trimmingCharacters(in: .whitespacesAndNewlines)
        while text.hasSuffix("=") { text.removeLast() }
        guard !keyID.isEmpty else { throw ACMEError(.configuration, "[acme.eab] key_id is empty; copy the key id your CA gave you.") }
        guard let bytes = Base64URL.decode(text), !bytes.isEmpty else {
            throw ACMEError(.configuration, "[acme.eab] key is not base64url (A-Z a-z 0-9 - _); copy the HMAC key exactly as your CA gave it.")
        }
        self.keyID = keyID
        self.macKey = bytes
    }
}
