import Crypto
import Foundation
import Logging
import PlaneCore
import SwiftASN1
import X509

/// One certificate order, start to finish (RFC 8555 §7.4): the account (the stored key,
/// reused), a new order for the names, a DNS-01 challenge per authorization served through
/// `DNSChallengePublisher`, validation, finalization with a CSR for a fresh P-256 key, and
/// the chain, checked before it is returned.
public struct CertificateIssuer: Sendable {
    public let client: ACMEClient
    public let accounts: ACMEAccountStore
    public let challenges: any DNSChallengePublisher
    public let configuration: ACMEConfiguration
    public let logger: Logger
    /// Shortest wait between two polls of an authorization or order (a `Retry-After` may ask
    /// for more, up to 10 s).
    public var pollInterval: Duration = .milliseconds(500)
    /// A published challenge value is sent again this often while validation runs (the
    /// controller keeps TXT records 60 s).
    public var republishInterval: Duration = .seconds(40)

    public init(client: ACMEClient, accounts: ACMEAccountStore, challenges: any DNSChallengePublisher, configuration: ACMEConfiguration, logger: Logger) {
        self.client = client
        self.accounts = accounts
        self.challenges = challenges
        self.configuration = configuration
        self.logger = logger
    }

    /// The account to order with: the stored key, registered (or found) on the server.
    public func account() async throws(ACMEError) -> ACMEClient.Signed {
        let key = try accounts.loadOrCreateKey()
        let registration = try await client.account(key: key, contactEmail: configuration.adminEmail, binding: configuration.externalAccountBinding)
        if accounts.accountURL(server: client.directoryURL) != registration.url {
            try accounts.record(accountURL: registration.url, server: client.directoryURL)
        }
        logger.info("acme.account", metadata: ["acme.account": "\(registration.url)", "acme.account_created": "\(registration.created)"])
        return ACMEClient.Signed(key: key, accountURL: registration.url)
    }

    /// Orders a certificate for the cluster's names and returns it with its new key.
    public func issue(cluster: ClusterName) async throws(ACMEError) -> CertificateBundle {
        let names = configuration.names(for: cluster.rawValue)
        let account = try await account()
        let deadline = ContinuousClock.now + configuration.validationTimeout
        let (orderURL, created) = try await client.newOrder(names: names, as: account)
        logger.info("acme.order_created", metadata: ["acme.order": "\(orderURL)", "acme.names": "\(names.joined(separator: ","))"])
        var order = created
        if order.status == .pending {
            try await authorize(order.authorizations, cluster: cluster, account: account, deadline: deadline)
            order = try await poll(orderURL, account: account, deadline: deadline, until: [.ready, .valid], what: "become ready")
        }
        let key = P256.Signing.PrivateKey()
        if order.status == .ready {
            order = try await client.finalize(order.finalize, csr: try Self.signingRequest(names: names, key: key), as: account)
        }
        if order.status != .valid {
            order = try await poll(orderURL, account: account, deadline: deadline, until: [.valid], what: "be issued")
        }
        guard let certificateURL = order.certificate else {
            throw ACMEError(.protocolViolation, "The ACME server's order \(orderURL) is valid but names no certificate URL.")
        }
        let chain = try await client.certificateChain(certificateURL, as: account)
        let bundle = try CertificateBundle(keyPEM: key.pemRepresentation, chainPEM: chain)
        guard bundle.covers(names) else {
            throw ACMEError(.invalidCertificate, "The issued certificate names \(bundle.names) but \(names) were ordered.")
        }
        logger.info("acme.certificate_issued", metadata: ["acme.serial": "\(bundle.serialNumber)", "acme.not_after": "\(bundle.notAfter)"])
        return bundle
    }

    /// Serves every pending authorization's DNS-01 challenge, asks for validation and waits
    /// until all are valid.
    func authorize(_ urls: [String], cluster: ClusterName, account: ACMEClient.Signed, deadline: ContinuousClock.Instant) async throws(ACMEError) {
        var pending: [(url: String, value: String)] = []
        var challengeURLs: [String] = []
        for url in urls {
            let (authorization, _) = try await client.authorization(url, as: account)
            if authorization.status == .valid { continue }
            guard authorization.status == .pending else {
                throw ACMEError(.validationFailed, "The authorization for \(authorization.identifier.value) is \(authorization.status.rawValue); start a new order.")
            }
            guard let challenge = authorization.dnsChallenge, let token = challenge.token else {
                throw ACMEError(.validationFailed, "The ACME server offers no dns-01 challenge for \(authorization.identifier.value); Plane needs a CA that supports DNS-01 (wildcard certificates require it).")
            }
            guard authorization.identifier.value.lowercased() == cluster.rawValue.lowercased() else {
                throw ACMEError(.validationFailed, "The authorization is for \(authorization.identifier.value), but only _acme-challenge.\(cluster) can be served.")
            }
            let value = account.key.dnsChallengeValue(token: token)
            try await challenges.publish(challenge: value, cluster: cluster)
            pending.append((url, value))
            challengeURLs.append(challenge.url)
        }
        for url in challengeURLs { try await client.respond(toChallenge: url, as: account) }
        var lastPublish = ContinuousClock.now
        for item in pending {
            while true {
                let (authorization, response) = try await client.authorization(item.url, as: account)
                switch authorization.status {
                case .valid: break
                case .pending:
                    try await wait(response, deadline: deadline, what: "the authorization for \(authorization.identifier.value) to become valid")
                    if ContinuousClock.now - lastPublish > republishInterval {
                        for other in pending { try await challenges.publish(challenge: other.value, cluster: cluster) }
                        lastPublish = ContinuousClock.now
                    }
                    continue
                default:
                    let problem = authorization.dnsChallenge?.error.map { ": \($0)" } ?? ""
                    throw ACMEError(.validationFailed, "The CA could not validate _acme-challenge.\(cluster) for \(authorization.identifier.value)\(problem); check that the cluster's DNS is delegated to the controller (docs/operations.md).")
                }
                break
            }
        }
    }

    func poll(_ url: String, account: ACMEClient.Signed, deadline: ContinuousClock.Instant, until wanted: Set<ACMEOrder.Status>, what: String) async throws(ACMEError) -> ACMEOrder {
        while true {
            let (order, response) = try await client.order(url, as: account)
            if wanted.contains(order.status) { return order }
            if order.status == .invalid {
                throw ACMEError(.orderFailed, "The order \(url) became invalid\(order.error.map { ": \($0)" } ?? ""); a new order follows after the retry interval.")
            }
            try await wait(response, deadline: deadline, what: "the order to \(what)")
        }
    }

    /// Waits `Retry-After` (bounded to [pollInterval, 10 s]), or fails at the deadline.
    func wait(_ response: ACMEClient.Response, deadline: ContinuousClock.Instant, what: String) async throws(ACMEError) {
        let delay = min(max(response.retryAfter ?? pollInterval, pollInterval), .seconds(10))
        guard ContinuousClock.now + delay < deadline else {
            throw ACMEError(.validationFailed, "Gave up waiting for \(what) after \(configuration.validationTimeout) ([acme] validation_timeout_secs).")
        }
        do { try await Task.sleep(for: delay) } catch {
            throw ACMEError(.orderFailed, "The order was cancelled (the drone is stopping).", cause: error)
        }
    }

    /// A PKCS#10 request (DER) for `names` with `key`; the first name is also the subject's CN.
    static func signingRequest(names: [String], key: P256.Signing.PrivateKey) throws(ACMEError) -> [UInt8] {
        do {
            let subject = try DistinguishedName { CommonName(names[0]) }
            let extensions = try Certificate.Extensions { SubjectAlternativeNames(names.map { GeneralName.dnsName($0) }) }
            let attributes = CertificateSigningRequest.Attributes([try .init(ExtensionRequest(extensions: extensions))])
            let request = try CertificateSigningRequest(version: .v1, subject: subject, privateKey: Certificate.PrivateKey(key),
                                                        attributes: attributes, signatureAlgorithm: .ecdsaWithSHA256)
            var serializer = DER.Serializer()
            try serializer.serialize(request)
            return serializer.serializedBytes
        } catch {
            throw ACMEError(.protocolViolation, "Could not build the certificate signing request for \(names).", cause: error)
        }
    }
}
