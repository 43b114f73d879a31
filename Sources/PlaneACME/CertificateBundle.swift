import Foundation
import SwiftASN1
import X509

/// A certificate chain (PEM, leaf first) and the leaf's private key (PEM), checked to
/// belong together, with what renewal and installation need to know about the leaf.
public struct CertificateBundle: Sendable, Hashable {
    public let keyPEM: String
    public let chainPEM: String
    public let notBefore: Date
    public let notAfter: Date
    /// The leaf's DNS subject alternative names.
    public let names: [String]
    public let serialNumber: String
    /// Certificates in the chain (leaf included).
    public let chainLength: Int

    public init(keyPEM: String, chainPEM: String) throws(ACMEError) {
        let documents: [PEMDocument]
        do {
            documents = try PEMDocument.parseMultiple(pemString: chainPEM).filter { $0.discriminator == "CERTIFICATE" }
        } catch {
            throw ACMEError(.invalidCertificate, "The certificate chain is not PEM.", cause: error)
        }
        guard let first = documents.first else {
            throw ACMEError(.invalidCertificate, "The certificate chain holds no certificate.")
        }
        let leaf: Certificate
        let key: Certificate.PrivateKey
        do {
            leaf = try Certificate(derEncoded: first.derBytes)
            for document in documents.dropFirst() { _ = try Certificate(derEncoded: document.derBytes) }
        } catch {
            throw ACMEError(.invalidCertificate, "A certificate of the chain does not parse.", cause: error)
        }
        do {
            key = try Certificate.PrivateKey(pemEncoded: keyPEM)
        } catch {
            throw ACMEError(.invalidCertificate, "The private key is not a PEM private key.", cause: error)
        }
        guard key.publicKey == leaf.publicKey else {
            throw ACMEError(.invalidCertificate, "The private key does not belong to the certificate (its public key differs from the leaf's).")
        }
        var names: [String] = []
        if let alternatives = try? leaf.extensions.subjectAlternativeNames {
            for name in alternatives { if case .dnsName(let dns) = name { names.append(dns) } }
        }
        self.keyPEM = keyPEM
        self.chainPEM = chainPEM
        self.notBefore = leaf.notValidBefore
        self.notAfter = leaf.notValidAfter
        self.names = names
        self.serialNumber = leaf.serialNumber.description
        self.chainLength = documents.count
    }

    /// Reads the pair from its files; nil when either file is missing.
    public static func read(_ files: CertificateFiles) throws(ACMEError) -> CertificateBundle? {
        let manager = FileManager.default
        guard manager.fileExists(atPath: files.keyPath), manager.fileExists(atPath: files.certificatePath) else { return nil }
        let key: String
        let chain: String
        do {
            key = try String(contentsOfFile: files.keyPath, encoding: .utf8)
            chain = try String(contentsOfFile: files.certificatePath, encoding: .utf8)
        } catch {
            throw ACMEError(.storage, "Cannot read \(files.keyPath) or \(files.certificatePath).", cause: error)
        }
        return try CertificateBundle(keyPEM: key, chainPEM: chain)
    }

    /// Whether the leaf names every one of `required` (compared case-insensitively).
    public func covers(_ required: [String]) -> Bool {
        let have = Set(names.map { $0.lowercased() })
        return required.allSatisfy { have.contains($0.lowercased()) }
    }

    public var lifetime: TimeInterval { notAfter.timeIntervalSince(notBefore) }
}
