import PlaneCore

/// Orders, authorizations, challenges, finalization and the certificate (RFC 8555 §7.4, §7.5).
extension ACMEClient {
    public struct Signed: Sendable {
        public var key: ACMEAccountKey
        public var accountURL: String
        public init(key: ACMEAccountKey, accountURL: String) {
            self.key = key
            self.accountURL = accountURL
        }
    }

    /// A new order for `names`; returns it with its URL.
    func newOrder(names: [String], as account: Signed) async throws(ACMEError) -> (url: String, order: ACMEOrder) {
        let directory = try await directory()
        let identifiers = names.map { "{\"type\":\"dns\",\"value\":\(JSONWebSignature.jsonString($0))}" }.joined(separator: ",")
        let response = try await post(directory.newOrder, payload: "{\"identifiers\":[\(identifiers)]}", key: account.key,
                                      signer: .account(url: account.accountURL), doing: "a new order for \(names.joined(separator: ", "))")
        guard let url = response.location else {
            throw ACMEError(.protocolViolation, "The ACME server created an order but sent no Location header with its URL.")
        }
        return (url, try decode(response, as: "order"))
    }

    func order(_ url: String, as account: Signed) async throws(ACMEError) -> (ACMEOrder, Response) {
        let response = try await post(url, payload: nil, key: account.key, signer: .account(url: account.accountURL), doing: "reading the order")
        return (try decode(response, as: "order"), response)
    }

    func authorization(_ url: String, as account: Signed) async throws(ACMEError) -> (ACMEAuthorization, Response) {
        let response = try await post(url, payload: nil, key: account.key, signer: .account(url: account.accountURL), doing: "reading an authorization")
        return (try decode(response, as: "authorization"), response)
    }

    /// Tells the server the challenge is ready to be validated.
    func respond(toChallenge url: String, as account: Signed) async throws(ACMEError) {
        _ = try await post(url, payload: "{}", key: account.key, signer: .account(url: account.accountURL), doing: "the challenge response")
    }

    func finalize(_ url: String, csr: [UInt8], as account: Signed) async throws(ACMEError) -> ACMEOrder {
        let payload = "{\"csr\":\"\(Base64URL.encode(csr))\"}"
        let response = try await post(url, payload: payload, key: account.key, signer: .account(url: account.accountURL), doing: "finalizing the order")
        return try decode(response, as: "order")
    }

    /// The issued chain as PEM, leaf first.
    func certificateChain(_ url: String, as account: Signed) async throws(ACMEError) -> String {
        let response = try await post(url, payload: nil, key: account.key, signer: .account(url: account.accountURL),
                                      accept: "application/pem-certificate-chain", doing: "downloading the certificate")
        return String(decoding: response.body, as: UTF8.self)
    }
}
