import Foundation
import PlaneTestSupport
import Testing
@testable import PlaneACME

/// Certificate pairs: parsing and checks, and the atomic writes the proxy reads.
struct CertificateFileTests {
    func pair(in directory: String, names: [String] = ["DNS:*.plane.test", "DNS:plane.test"]) async throws -> (key: String, chain: String) {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let certificates = try await TestCertificates.generate(in: directory, names: names)
        return (try String(contentsOfFile: certificates.serverKey, encoding: .utf8), try String(contentsOfFile: certificates.serverCertificate, encoding: .utf8))
    }

    @Test func aBundleKnowsItsNamesAndValidityAndRejectsAForeignKey() async throws {
        let directory = try TestEnvironment.temporaryDirectory("plane-acme-bundle")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let first = try await pair(in: directory + "/a")
        let bundle = try CertificateBundle(keyPEM: first.key, chainPEM: first.chain)
        #expect(bundle.names == ["*.plane.test", "plane.test"] && bundle.chainLength == 1)
        #expect(bundle.covers(["*.PLANE.test"]) && bundle.covers(["*.plane.test", "plane.test"]) && !bundle.covers(["*.other.test"]))
        #expect(bundle.notAfter > Date() && bundle.notBefore < Date() && bundle.lifetime > 86_400)
        let second = try await pair(in: directory + "/b")
        #expect { try CertificateBundle(keyPEM: second.key, chainPEM: first.chain) } throws: {
            ($0 as? ACMEError)?.code == .invalidCertificate && "\($0)".contains("does not belong")
        }
        #expect { try CertificateBundle(keyPEM: first.key, chainPEM: "garbage") } throws: { ($0 as? ACMEError)?.code == .invalidCertificate }
        #expect { try CertificateBundle(keyPEM: "garbage", chainPEM: first.chain) } throws: { ($0 as? ACMEError)?.code == .invalidCertificate }
    }

    @Test func filesAreReplacedWholeWithTheKeyPrivate() async throws {
        let directory = try TestEnvironment.temporaryDirectory("plane-acme-files")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let files = CertificateFiles(keyPath: directory + "/tls/key.pem", certificatePath: directory + "/tls/cert.pem")
        #expect(try CertificateBundle.read(files) == nil)
        let made = try await pair(in: directory + "/a")
        let first = try CertificateBundle(keyPEM: made.key, chainPEM: made.chain)
        // A longer file first, then a shorter one: nothing of the old one may remain (v0.3.10 did not truncate).
        try "x".padding(toLength: 20_000, withPad: "x", startingAt: 0).write(toFile: directory + "/tls-placeholder", atomically: true, encoding: .utf8)
        try FileManager.default.createDirectory(atPath: directory + "/tls", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: directory + "/tls-placeholder", toPath: files.certificatePath)
        try CertificateFileWriter.write(first, to: files)
        #expect(try CertificateBundle.read(files) == first)
        let attributes = try FileManager.default.attributesOfItem(atPath: files.keyPath)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory + "/tls").sorted() == ["cert.pem", "key.pem"])
        let second = try await pair(in: directory + "/b")
        try CertificateFileWriter.write(try CertificateBundle(keyPEM: second.key, chainPEM: second.chain), to: files)
        #expect(try String(contentsOfFile: files.certificatePath, encoding: .utf8) == second.chain)
    }

    @Test func anUnwritableDirectoryIsAStorageError() throws {
        #expect { try CertificateFileWriter.writeAtomically("x", to: "/proc/plane-test/key.pem", mode: 0o600) } throws: {
            ($0 as? ACMEError)?.code == .storage
        }
    }

    @Test func theAccountKeyIsMadeOnceAndKept() throws {
        let directory = try TestEnvironment.temporaryDirectory("plane-acme-account")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = ACMEAccountStore(stateDirectory: directory)
        let key = try store.loadOrCreateKey()
        #expect(try store.loadOrCreateKey().thumbprint == key.thumbprint)
        let attributes = try FileManager.default.attributesOfItem(atPath: store.keyPath)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        #expect(store.accountURL(server: "https://a/dir") == nil)
        try store.record(accountURL: "https://a/acct/1", server: "https://a/dir")
        try store.record(accountURL: "https://b/acct/9", server: "https://b/dir")
        #expect(store.accountURL(server: "https://a/dir") == "https://a/acct/1" && store.accountURL(server: "https://b/dir") == "https://b/acct/9")
    }
}
