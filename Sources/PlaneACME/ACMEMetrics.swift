import Synchronization

/// The refresher's numbers for the drone's `/metrics` (Prometheus text format).
public final class ACMEMetrics: Sendable {
    struct Values {
        var expiry: Double?
        var attempts = 0
        var failures = 0
        var installedFromFleet = 0
    }

    private let values = Mutex(Values())

    public init() {}

    func certificateInstalled(notAfter: Double) { values.withLock { $0.expiry = notAfter } }
    func orderStarted() { values.withLock { $0.attempts += 1 } }
    func orderFailed() { values.withLock { $0.failures += 1 } }
    func installedFromFleet() { values.withLock { $0.installedFromFleet += 1 } }

    public var attempts: Int { values.withLock { $0.attempts } }
    public var failures: Int { values.withLock { $0.failures } }
    public var expiry: Double? { values.withLock { $0.expiry } }

    public func render() -> String {
        let v = values.withLock { $0 }
        var text = """
            # HELP plane_certificate_expiry_timestamp_seconds When the installed certificate expires (Unix time); absent while there is none.
            # TYPE plane_certificate_expiry_timestamp_seconds gauge

            """
        if let expiry = v.expiry { text += "plane_certificate_expiry_timestamp_seconds \(Int64(expiry))\n" }
        text += """
            # HELP plane_acme_renewal_attempts_total Certificate orders this drone started.
            # TYPE plane_acme_renewal_attempts_total counter
            plane_acme_renewal_attempts_total \(v.attempts)
            # HELP plane_acme_renewal_failures_total Certificate orders that failed.
            # TYPE plane_acme_renewal_failures_total counter
            plane_acme_renewal_failures_total \(v.failures)
            # HELP plane_acme_certificates_from_fleet_total Certificates installed from another drone's order.
            # TYPE plane_acme_certificates_from_fleet_total counter
            plane_acme_certificates_from_fleet_total \(v.installedFromFleet)

            """
        return text
    }
}
