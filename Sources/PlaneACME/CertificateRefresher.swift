import Foundation
import Logging
import NATS
import PlaneCore
import ServiceLifecycle
import Synchronization

/// Keeps `[cert]` holding a valid certificate for `*.{cluster}` (and the apex): checks it
/// every `check_interval`, orders a new one through `CertificateIssuer` when a third of its
/// lifetime (configurable) remains or when there is none, and retries failures with
/// backoff and jitter. With coordination (the default), only the drone holding the
/// cluster's lease orders; the others install the certificate it shares
/// (`CertificateCoordinator`).
///
/// While there is no certificate the proxy refuses TLS handshakes; it picks up the files
/// this writes without a restart.
public final class CertificateRefresher: Service, Sendable {
    public let cluster: ClusterName
    public let droneID: DroneID
    public let files: CertificateFiles
    public let issuer: CertificateIssuer
    public let metrics: ACMEMetrics
    public let policy: RenewalPolicy
    let jetStream: JetStream?
    let logger: Logger
    private let state = Mutex(State())

    struct State {
        var failures = 0
        var coordinator: CertificateCoordinator?
    }

    /// - Parameter jetStream: where to coordinate with the cluster's other drones; nil: order
    ///   alone (`[acme] coordinate = false`).
    public init(cluster: ClusterName, droneID: DroneID, files: CertificateFiles, issuer: CertificateIssuer,
                jetStream: JetStream?, metrics: ACMEMetrics, logger: Logger) {
        self.cluster = cluster
        self.droneID = droneID
        self.files = files
        self.issuer = issuer
        self.jetStream = jetStream
        self.metrics = metrics
        self.policy = RenewalPolicy(issuer.configuration)
        self.logger = logger
    }

    /// Rounds until the service group shuts down (or the task is cancelled); the HTTP
    /// client is shut down either way.
    public func run() async throws {
        do {
            try await cancelWhenGracefulShutdown {
                while !Task.isCancelled {
                    let delay = await self.refreshOnce()
                    try await Task.sleep(for: delay)
                }
            }
        } catch is CancellationError {
            // Stopping: not an error.
        }
        await issuer.client.shutdown()
    }

    var names: [String] { issuer.configuration.names(for: cluster.rawValue) }

    /// One round: install a newer shared certificate, order when due; returns how long to
    /// wait before the next round.
    public func refreshOnce() async -> Duration {
        let now = Date()
        var best = localCertificate(now: now)
        let coordinator: CertificateCoordinator?
        do {
            coordinator = try await openCoordinator()
        } catch {
            logger.warning("acme.coordination_unavailable", metadata: ["error": "\(error)"])
            return failed(hasUsableCertificate: best != nil)
        }
        if let coordinator, let installed = await installShared(from: coordinator, newerThan: best, now: now) {
            best = installed
        }
        if let best {
            metrics.certificateInstalled(notAfter: best.notAfter.timeIntervalSince1970)
            if !policy.isDue(notBefore: best.notBefore, notAfter: best.notAfter, now: now) {
                state.withLock { $0.failures = 0 }
                return policy.nextCheck(notBefore: best.notBefore, notAfter: best.notAfter, now: now)
            }
        }
        var lease: CertificateCoordinator.Lease?
        if let coordinator {
            do {
                lease = try await coordinator.acquire()
            } catch {
                logger.warning("acme.lease_failed", metadata: ["error": "\(error)"])
                return failed(hasUsableCertificate: best != nil)
            }
            guard let lease else {
                logger.debug("acme.lease_held_by_another_drone", metadata: ["plane.cluster": "\(cluster)"])
                return policy.followerInterval
            }
            // The drone that held the lease before may have just shared a new certificate.
            if let installed = await installShared(from: coordinator, newerThan: best, now: Date()),
               !policy.isDue(notBefore: installed.notBefore, notAfter: installed.notAfter, now: Date()) {
                await coordinator.release(lease)
                return policy.nextCheck(notBefore: installed.notBefore, notAfter: installed.notAfter, now: Date())
            }
        }
        metrics.orderStarted()
        logger.info("acme.order_started", metadata: ["plane.cluster": "\(cluster)", "acme.reason": "\(best == nil ? "no certificate" : "renewal due")"])
        do {
            let bundle = try await issuer.issue(cluster: cluster)
            try CertificateFileWriter.write(bundle, to: files)
            metrics.certificateInstalled(notAfter: bundle.notAfter.timeIntervalSince1970)
            if let coordinator {
                do { try await coordinator.share(bundle) } catch {
                    logger.warning("acme.share_failed", metadata: ["error": "\(error)"])
                }
                if let lease { await coordinator.release(lease) }
            }
            state.withLock { $0.failures = 0 }
            logger.info("acme.certificate_installed", metadata: ["acme.serial": "\(bundle.serialNumber)", "acme.not_after": "\(bundle.notAfter)",
                                                                 "acme.cert_path": "\(files.certificatePath)"])
            return policy.nextCheck(notBefore: bundle.notBefore, notAfter: bundle.notAfter, now: Date())
        } catch {
            metrics.orderFailed()
            logger.error("acme.order_failed", metadata: ["plane.cluster": "\(cluster)", "error.code": "\(error.code)", "error": "\(error)"])
            let delay = failed(hasUsableCertificate: best != nil)
            // Keep the lease over the backoff: the fleet retries at this drone's pace, not
            // once per drone; if this drone dies the lease lapses when the retry was due.
            if let coordinator, let lease { await coordinator.hold(lease, until: Date().addingTimeInterval(delay.seconds)) }
            return delay
        }
    }

    func failed(hasUsableCertificate: Bool) -> Duration {
        let failures = state.withLock { $0.failures += 1; return $0.failures }
        return policy.retryDelay(failures: failures, hasUsableCertificate: hasUsableCertificate, jitter: Double.random(in: 0...1))
    }

    /// The certificate in `[cert]` if it parses, matches its key, names the cluster and has
    /// not expired.
    func localCertificate(now: Date) -> CertificateBundle? {
        do {
            guard let bundle = try CertificateBundle.read(files) else { return nil }
            guard bundle.covers(names) else {
                logger.warning("acme.certificate_names_differ", metadata: ["acme.names": "\(bundle.names)", "acme.wanted": "\(names)"])
                return nil
            }
            return bundle.notAfter > now ? bundle : nil
        } catch {
            logger.warning("acme.certificate_unusable", metadata: ["error": "\(error)", "acme.cert_path": "\(files.certificatePath)"])
            return nil
        }
    }

    /// Installs the shared certificate when it is usable and newer than `current`.
    func installShared(from coordinator: CertificateCoordinator, newerThan current: CertificateBundle?, now: Date) async -> CertificateBundle? {
        do {
            guard let shared = try await coordinator.sharedCertificate(), shared.covers(names), shared.notAfter > now,
                  shared.notAfter > (current?.notAfter ?? .distantPast), shared != current else { return nil }
            try CertificateFileWriter.write(shared, to: files)
            metrics.installedFromFleet()
            logger.info("acme.certificate_installed_from_fleet", metadata: ["acme.serial": "\(shared.serialNumber)", "acme.not_after": "\(shared.notAfter)"])
            return shared
        } catch {
            logger.warning("acme.shared_certificate_unusable", metadata: ["error": "\(error)"])
            return nil
        }
    }

    func openCoordinator() async throws(ACMEError) -> CertificateCoordinator? {
        guard let jetStream else { return nil }
        if let existing = state.withLock({ $0.coordinator }) { return existing }
        let coordinator = try await CertificateCoordinator.open(jetStream: jetStream, cluster: cluster, droneID: droneID)
        state.withLock { $0.coordinator = coordinator }
        return coordinator
    }
}
