import Foundation

/// When to order and when to look again: pure arithmetic over the certificate's validity,
/// unit-tested without a clock.
public struct RenewalPolicy: Sendable, Hashable {
    /// Renew when this fraction of the lifetime remains.
    public var renewWhenRemaining: Double
    public var checkInterval: Duration
    public var retryInterval: Duration
    /// The longest wait between retries while there is no usable certificate.
    public var retryCapWithoutCertificate: Duration = .seconds(300)
    /// While another drone holds the lease, look for its certificate this often.
    public var followerInterval: Duration = .seconds(5)

    public init(renewWhenRemaining: Double = 1.0 / 3.0, checkInterval: Duration = .seconds(3600), retryInterval: Duration = .seconds(10)) {
        self.renewWhenRemaining = renewWhenRemaining
        self.checkInterval = checkInterval
        self.retryInterval = retryInterval
    }

    public init(_ configuration: ACMEConfiguration) {
        self.init(renewWhenRemaining: configuration.renewWhenRemaining, checkInterval: configuration.checkInterval, retryInterval: configuration.retryInterval)
    }

    /// The moment `bundle` should be renewed.
    public func renewalDate(of bundle: CertificateBundle) -> Date {
        renewalDate(notBefore: bundle.notBefore, notAfter: bundle.notAfter)
    }

    public func renewalDate(notBefore: Date, notAfter: Date) -> Date {
        notAfter.addingTimeInterval(-max(0, notAfter.timeIntervalSince(notBefore)) * renewWhenRemaining)
    }

    public func isDue(notBefore: Date, notAfter: Date, now: Date) -> Bool {
        now >= renewalDate(notBefore: notBefore, notAfter: notAfter)
    }

    /// How long to sleep before looking again at a certificate that is not due.
    public func nextCheck(notBefore: Date, notAfter: Date, now: Date) -> Duration {
        let untilDue = renewalDate(notBefore: notBefore, notAfter: notAfter).timeIntervalSince(now)
        // A certificate's dates are the CA's: bounded to the check interval before the
        // conversion to an integer.
        return .milliseconds(Int64(min(max(1, untilDue), checkInterval.seconds) * 1000))
    }

    /// The wait after `failures` consecutive failed orders: `retryInterval` doubled per
    /// failure, capped, with ±20 % jitter (`jitter` in 0...1) so a fleet does not retry in step.
    public func retryDelay(failures: Int, hasUsableCertificate: Bool, jitter: Double) -> Duration {
        let cap = hasUsableCertificate ? checkInterval : min(checkInterval, retryCapWithoutCertificate)
        let base = retryInterval.seconds * pow(2, Double(max(0, min(failures - 1, 30))))
        let capped = min(base, cap.seconds)
        let factor = 0.8 + 0.4 * min(max(jitter, 0), 1)
        return .milliseconds(Int64(max(capped * factor, 0.1) * 1000))
    }
}
