/// `[acme]` in `drone.toml`: where and how the drone gets its certificate.
public struct ACMEConfiguration: Sendable, Hashable {
    /// The ACME directory URL.
    public var server: String
    /// The account's contact (`mailto:`).
    public var adminEmail: String
    /// `[acme.eab]`, for CAs that require External Account Binding.
    public var externalAccountBinding: ExternalAccountBinding?
    /// Extra CA certificates (PEM) to trust for the ACME server's own TLS (a private CA, pebble).
    public var caBundlePath: String?
    /// Also order the apex `{cluster}` besides `*.{cluster}`.
    public var includeApex = true
    /// Renew when this fraction of the certificate's lifetime remains.
    public var renewWhenRemaining = 1.0 / 3.0
    /// How often the certificate is checked while it is not due.
    public var checkInterval: Duration = .seconds(3600)
    /// The first wait after a failed order; it doubles per failure (with jitter) up to
    /// `checkInterval` (5 minutes while the drone has no usable certificate).
    public var retryInterval: Duration = .seconds(10)
    /// How long challenges and the order may take to become valid.
    public var validationTimeout: Duration = .seconds(120)
    /// Coordinate the drones of the cluster through JetStream (one orders, all install).
    public var coordinate = true

    public init(server: String, adminEmail: String) {
        self.server = server
        self.adminEmail = adminEmail
    }

    /// The names ordered for `cluster`.
    public func names(for cluster: String) -> [String] {
        includeApex ? ["*.\(cluster)", cluster] : ["*.\(cluster)"]
    }
}
