import Foundation
@testable import PlaneACME

/// What an ACME server (and the shared certificate in JetStream KV) sends a drone: the
/// directory, orders, authorizations and problem documents, `Retry-After`, a certificate
/// chain with its key, the coordination records.
enum ACMEFuzzTarget {
    static let responses = FuzzTarget("acme", "ACME JSON (directory, order, authorization, problem), Retry-After, PEM key and chain, KV lease and certificate records.") { raw in
        let parts = FuzzInput.parts(Array(raw), 3)
        let document = Data(parts[0])
        let decoder = JSONDecoder()
        _ = try? decoder.decode(ACMEDirectory.self, from: document)
        if let order = try? decoder.decode(ACMEOrder.self, from: document) { _ = order.status }
        if let authorization = try? decoder.decode(ACMEAuthorization.self, from: document) { _ = authorization.challenges.count }
        _ = (try? decoder.decode(ACMEProblem.self, from: document))?.description
        _ = try? decoder.decode(CertificateCoordinator.LeaseRecord.self, from: document)
        _ = try? decoder.decode(CertificateCoordinator.SharedRecord.self, from: document)
        let header = String(decoding: parts[0].prefix(200), as: UTF8.self)
        _ = ACMEClient.retryAfter(header, now: Date(timeIntervalSince1970: 1_700_000_000))
        if let bundle = try? CertificateBundle(keyPEM: String(decoding: parts[1], as: UTF8.self), chainPEM: String(decoding: parts[2], as: UTF8.self)) {
            let policy = RenewalPolicy()
            _ = policy.nextCheck(notBefore: bundle.notBefore, notAfter: bundle.notAfter, now: Date(timeIntervalSince1970: 1_700_000_000))
            _ = bundle.lifetime
        }
    }
}
