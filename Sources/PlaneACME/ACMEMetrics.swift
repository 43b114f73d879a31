import CoreMetrics
import PlaneMetrics
import Synchronization

/// The refresher's numbers, written through swift-metrics into its process's registry
/// (`PlaneMetrics`, rendered on the drone's `/metrics`).
public final class ACMEMetrics: Sendable {
    struct Values {
        var expiry: Double?
        var attempts = 0
        var failures = 0
        var installedFromFleet = 0
    }

    public let registry: PlaneMetrics
    private let values = Mutex(Values())
    private let attemptsCounter: CoreMetrics.Counter
    private let failuresCounter: CoreMetrics.Counter
    private let fromFleetCounter: CoreMetrics.Counter

    public init(registry: PlaneMetrics = PlaneMetrics()) {
        self.registry = registry
        attemptsCounter = registry.counter(MetricCatalog.acmeRenewalAttempts)
        failuresCounter = registry.counter(MetricCatalog.acmeRenewalFailures)
        fromFleetCounter = registry.counter(MetricCatalog.acmeCertificatesFromFleet)
    }

    func certificateInstalled(notAfter: Double) {
        values.withLock { $0.expiry = notAfter }
        // Created with the first certificate: absent while there is none.
        registry.gauge(MetricCatalog.certificateExpiry).record(notAfter.rounded(.down))
    }

    func orderStarted() {
        values.withLock { $0.attempts += 1 }
        attemptsCounter.increment()
    }

    func orderFailed() {
        values.withLock { $0.failures += 1 }
        failuresCounter.increment()
    }

    func installedFromFleet() {
        values.withLock { $0.installedFromFleet += 1 }
        fromFleetCounter.increment()
    }

    public var attempts: Int { values.withLock { $0.attempts } }
    public var failures: Int { values.withLock { $0.failures } }
    public var expiry: Double? { values.withLock { $0.expiry } }

    /// The exposition text of the process's registry.
    public func render() -> String { registry.exposition() }
}
