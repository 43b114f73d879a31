import Foundation
import PlaneCore

/// The ACME account in the drone's state directory (`{state_dir}/acme/`): the P-256 account
/// key (`account-key.pem`, mode 0600), made once and reused for every order, and the
/// account URL per ACME server (`accounts.json`).
public struct ACMEAccountStore: Sendable {
    public let directory: String

    public init(stateDirectory: String) {
        self.directory = stateDirectory + "/acme"
    }

    public var keyPath: String { directory + "/account-key.pem" }
    var accountsPath: String { directory + "/accounts.json" }

    /// The stored key, or a new one written first.
    public func loadOrCreateKey() throws(ACMEError) -> ACMEAccountKey {
        if FileManager.default.fileExists(atPath: keyPath) {
            let pem: String
            do { pem = try String(contentsOfFile: keyPath, encoding: .utf8) } catch {
                throw ACMEError(.storage, "Cannot read the ACME account key \(keyPath).", cause: error)
            }
            return try ACMEAccountKey(pem: pem)
        }
        let key = ACMEAccountKey()
        try CertificateFileWriter.writeAtomically(key.pem, to: keyPath, mode: 0o600)
        return key
    }

    /// The account URL recorded for `server`.
    public func accountURL(server: String) -> String? {
        accounts()[server]
    }

    public func record(accountURL: String, server: String) throws(ACMEError) {
        var all = accounts()
        all[server] = accountURL
        let data: Data
        do { data = try JSONEncoder.sorted.encode(all) } catch {
            throw ACMEError(.storage, "Cannot encode the ACME account list.", cause: error)
        }
        try CertificateFileWriter.writeAtomically(String(decoding: data, as: UTF8.self), to: accountsPath, mode: 0o600)
    }

    func accounts() -> [String: String] {
        guard let data = FileManager.default.contents(atPath: accountsPath),
              let all = try? JSONDecoder().decode([String: String].self, from: data) else { return [:] }
        return all
    }
}

extension JSONEncoder {
    static var sorted: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }
}
