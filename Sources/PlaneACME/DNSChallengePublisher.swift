import Logging
import NATS
import PlaneCore
import PlaneMessaging

/// Makes a DNS-01 challenge value visible at `_acme-challenge.{cluster}`.
public protocol DNSChallengePublisher: Sendable {
    func publish(challenge value: String, cluster: ClusterName) async throws(ACMEError)
}

/// Through the controller (spec §7): a request on `acme.set_dns_record` that must be answered
/// `true`, then the `SetDnsRecord` TXT publish v0.3.10 drones also sent, so a controller that
/// only listens to `cluster.*.dns.*` serves the value too.
public struct NATSChallengePublisher: DNSChallengePublisher {
    public let messenger: PlaneMessenger
    public var timeout: Duration

    public init(messenger: PlaneMessenger, timeout: Duration = .seconds(10)) {
        self.messenger = messenger
        self.timeout = timeout
    }

    public func publish(challenge value: String, cluster: ClusterName) async throws(ACMEError) {
        let accepted: Bool
        do {
            accepted = try await messenger.request(PlaneSubjects.acmeSetDnsRecord, SetAcmeDnsRecord(cluster: cluster, value: value), timeout: timeout)
        } catch let error as NATSError where error.code == .noResponders {
            throw ACMEError(.dnsChallenge, "No controller answers acme.set_dns_record, so the DNS-01 challenge for \(cluster) cannot be served; run a Plane for Swift controller with [dns] (v0.3.10 controllers never answer it).", cause: error)
        } catch {
            throw ACMEError(.dnsChallenge, "The controller did not answer acme.set_dns_record for \(cluster) within \(timeout); check that a controller with [dns] is running.", cause: error)
        }
        guard accepted else {
            throw ACMEError(.dnsChallenge, "The controller refused the TXT record for _acme-challenge.\(cluster); check that its [dns] serves the zone \(cluster).")
        }
        do {
            try await messenger.publish(PlaneSubjects.dns(cluster, .txt), SetDnsRecord(cluster: cluster, kind: .txt, name: "_acme-challenge", value: value))
        } catch {
            throw ACMEError(.dnsChallenge, "Could not publish the TXT record for _acme-challenge.\(cluster) on NATS.", cause: error)
        }
    }
}
