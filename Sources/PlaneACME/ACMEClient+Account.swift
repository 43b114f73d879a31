/// Accounts (RFC 8555 §7.3).
extension ACMEClient {
    /// The account URL of `key` on this server: an existing account is looked up
    /// (`onlyReturnExisting`), otherwise one is created with the contact, the terms agreed
    /// and the external account binding if given.
    public func account(key: ACMEAccountKey, contactEmail: String, binding: ExternalAccountBinding?) async throws(ACMEError) -> ACMEAccountRegistration {
        let directory = try await directory()
        let lookup = try? await post(directory.newAccount, payload: "{\"onlyReturnExisting\":true}", key: key, signer: .jwk, doing: "looking up the account")
        if let lookup, let url = lookup.location {
            return ACMEAccountRegistration(url: url, created: false)
        }
        if directory.meta?.externalAccountRequired == true, binding == nil {
            throw ACMEError(.account, "The ACME server \(directoryURL) requires External Account Binding: set [acme.eab] key_id and key from your CA's account page.")
        }
        var payload = "{\"termsOfServiceAgreed\":true,\"contact\":[\(JSONWebSignature.jsonString("mailto:" + contactEmail))]"
        if let binding {
            let eab = JSONWebSignature.externalAccountBinding(keyID: binding.keyID, macKey: binding.macKey, accountKey: key, url: directory.newAccount)
            payload += ",\"externalAccountBinding\":\(eab.json)"
        }
        payload += "}"
        let response: Response
        do {
            response = try await post(directory.newAccount, payload: payload, key: key, signer: .jwk, doing: "creating the account")
        } catch where error.code == .serverProblem {
            let hint = binding == nil ? "" : " Check [acme.eab] key_id and key: the CA checks the binding's HMAC with them."
            throw ACMEError(.account, error.message + hint, cause: error.cause)
        }
        guard let url = response.location else {
            throw ACMEError(.protocolViolation, "The ACME server created an account but sent no Location header with its URL.")
        }
        return ACMEAccountRegistration(url: url, created: response.status == 201)
    }
}

/// The outcome of `ACMEClient.account`.
public struct ACMEAccountRegistration: Sendable, Hashable {
    public var url: String
    /// Whether the server made a new account (HTTP 201) rather than finding one.
    public var created: Bool
}
