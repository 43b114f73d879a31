import Crypto
import Foundation
import SwiftASN1
import X509

/// A certificate authority of one machine, for `plane dev`: a P-256 root made once in a
/// directory (`ca.pem`, `ca-key.pem` mode 0600) and server certificates it signs, so a
/// local cluster serves HTTPS that `curl --cacert ca.pem` (or a browser that was told to
/// trust the root) validates.
public struct LocalCertificateAuthority: Sendable {
    public let certificatePath: String
    let key: P256.Signing.PrivateKey
    let certificate: Certificate

    /// Loads the authority in `directory`, or makes it there.
    public static func openOrCreate(in directory: String, name: String = "Plane for Swift local development CA") throws(ACMEError) -> LocalCertificateAuthority {
        let certificatePath = directory + "/ca.pem", keyPath = directory + "/ca-key.pem"
        if let pem = try? String(contentsOfFile: certificatePath, encoding: .utf8), let keyPEM = try? String(contentsOfFile: keyPath, encoding: .utf8),
           let certificate = try? Certificate(pemEncoded: pem), let key = try? P256.Signing.PrivateKey(pemRepresentation: keyPEM),
           certificate.notValidAfter > Date().addingTimeInterval(86_400) {
            return LocalCertificateAuthority(certificatePath: certificatePath, key: key, certificate: certificate)
        }
        let key = P256.Signing.PrivateKey()
        let certificate: Certificate
        do {
            let subject = try DistinguishedName { CommonName(name) }
            let now = Date()
            certificate = try Certificate(
                version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: .init(key.publicKey),
                notValidBefore: now.addingTimeInterval(-3600), notValidAfter: now.addingTimeInterval(365 * 86_400),
                issuer: subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256,
                extensions: try Certificate.Extensions {
                    Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                    Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                    SubjectKeyIdentifier(hash: .init(key.publicKey))
                },
                issuerPrivateKey: .init(key))
        } catch {
            throw ACMEError(.invalidCertificate, "Could not make the local certificate authority.", cause: error)
        }
        try CertificateFileWriter.writeAtomically(key.pemRepresentation, to: keyPath, mode: 0o600)
        try CertificateFileWriter.writeAtomically(try pem(certificate), to: certificatePath, mode: 0o644)
        return LocalCertificateAuthority(certificatePath: certificatePath, key: key, certificate: certificate)
    }

    /// A server certificate for `names` (DNS names; IP addresses as text become IP SANs),
    /// valid for `days`, written to `files` (key first, atomically).
    @discardableResult
    public func issue(names: [String], days: Int = 30, to files: CertificateFiles) throws(ACMEError) -> CertificateBundle {
        let leafKey = P256.Signing.PrivateKey()
        let chain: String
        do {
            let now = Date()
            let leaf = try Certificate(
                version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: .init(leafKey.publicKey),
                notValidBefore: now.addingTimeInterval(-3600), notValidAfter: now.addingTimeInterval(Double(days) * 86_400),
                issuer: certificate.subject, subject: try DistinguishedName { CommonName(names[0]) }, signatureAlgorithm: .ecdsaWithSHA256,
                extensions: try Certificate.Extensions {
                    Critical(BasicConstraints.notCertificateAuthority)
                    Critical(KeyUsage(digitalSignature: true))
                    try ExtendedKeyUsage([.serverAuth])
                    SubjectAlternativeNames(names.map { name in
                        if let address = IPAddressBytes(name) { return GeneralName.ipAddress(ASN1OctetString(contentBytes: address.bytes[...])) }
                        return GeneralName.dnsName(name)
                    })
                },
                issuerPrivateKey: .init(key))
            chain = try Self.pem(leaf) + Self.pem(certificate)
        } catch {
            throw ACMEError(.invalidCertificate, "Could not issue a local certificate for \(names).", cause: error)
        }
        let bundle = try CertificateBundle(keyPEM: leafKey.pemRepresentation, chainPEM: chain)
        try CertificateFileWriter.write(bundle, to: files)
        return bundle
    }

    static func pem(_ certificate: Certificate) throws(ACMEError) -> String {
        do { return try certificate.serializeAsPEM().pemString + "\n" } catch {
            throw ACMEError(.invalidCertificate, "Could not encode a certificate as PEM.", cause: error)
        }
    }
}

/// An IPv4 or IPv6 address in text form as its network bytes.
struct IPAddressBytes {
    var bytes: [UInt8]

    init?(_ text: String) {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            bytes = withUnsafeBytes(of: &v4) { Array($0) }
            return
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 {
            bytes = withUnsafeBytes(of: &v6) { Array($0) }
            return
        }
        return nil
    }
}
