/// Where the drone keeps its certificate (`[cert]` in `drone.toml`): the private key (PEM)
/// and the chain (PEM, leaf first). The proxy reads them; the refresher writes them.
public struct CertificateFiles: Sendable, Hashable {
    public var keyPath: String
    public var certificatePath: String

    public init(keyPath: String, certificatePath: String) {
        self.keyPath = keyPath
        self.certificatePath = certificatePath
    }
}
