import Foundation
import NATS
import PlaneCore

/// Keeps the drones of a cluster from all ordering at once, and hands the certificate the
/// one that ordered got to all the others, through the JetStream key-value bucket
/// `plane_acme`:
///
/// - `lease.{cluster as base64url}`: `{"drone": ..., "expires_ms": ...}`. A drone orders only
///   while it holds the lease; it is taken with a compare-and-set (create, or update of an
///   expired lease at its revision), so exactly one of many concurrent drones wins.
/// - `certificate.{cluster as base64url}`: `{"key_pem", "chain_pem", "drone", "issued_ms"}`,
///   the newest certificate and its key. Every drone installs it into its own `[cert]` files
///   when it is newer than what it has.
public struct CertificateCoordinator: Sendable {
    public static let bucketName = "plane_acme"
    public let bucket: KeyValueBucket
    public let cluster: ClusterName
    public let droneID: DroneID
    /// How long a lease holds without being released (an order that takes longer may be
    /// duplicated by another drone; a drone that dies holding it blocks others this long).
    public var leaseDuration: Duration = .seconds(600)

    /// A held lease, released with `release(_:)`.
    public struct Lease: Sendable, Hashable {
        public var revision: UInt64
    }

    struct LeaseRecord: Codable {
        var drone: String
        var expiresMs: Int64
        enum CodingKeys: String, CodingKey {
            case drone
            case expiresMs = "expires_ms"
        }
    }

    struct SharedRecord: Codable {
        var keyPEM: String
        var chainPEM: String
        var drone: String
        var issuedMs: Int64
        enum CodingKeys: String, CodingKey {
            case keyPEM = "key_pem"
            case chainPEM = "chain_pem"
            case drone
            case issuedMs = "issued_ms"
        }
    }

    /// Opens (creating if needed) the bucket.
    public static func open(jetStream: JetStream, cluster: ClusterName, droneID: DroneID) async throws(ACMEError) -> CertificateCoordinator {
        var configuration = KeyValueConfiguration(bucket: bucketName)
        configuration.description = "Plane: ACME certificate lease and shared certificate per cluster"
        configuration.maxValueSize = 1 << 20
        do {
            let bucket = try await jetStream.keyValue(configuration)
            return CertificateCoordinator(bucket: bucket, cluster: cluster, droneID: droneID)
        } catch {
            throw ACMEError(.coordination, "Cannot open the JetStream bucket \(bucketName); the NATS server needs JetStream enabled (or set [acme] coordinate = false).", cause: error)
        }
    }

    public init(bucket: KeyValueBucket, cluster: ClusterName, droneID: DroneID) {
        self.bucket = bucket
        self.cluster = cluster
        self.droneID = droneID
    }

    var clusterToken: String { Base64URL.encode(Array(cluster.rawValue.utf8)) }
    var leaseKey: String { "lease.\(clusterToken)" }
    var certificateKey: String { "certificate.\(clusterToken)" }

    /// Takes the lease if it is free, expired or already ours; nil when another drone holds it.
    public func acquire(now: Date = Date()) async throws(ACMEError) -> Lease? {
        let record = LeaseRecord(drone: droneID.rawValue, expiresMs: Int64((now.timeIntervalSince1970 + leaseDuration.seconds) * 1000))
        let value = Array(try encode(record))
        do {
            if let current = try await bucket.get(leaseKey) {
                let holder = try? JSONDecoder().decode(LeaseRecord.self, from: Data(current.value))
                let expired = holder.map { Double($0.expiresMs) / 1000 < now.timeIntervalSince1970 } ?? true
                guard expired || holder?.drone == droneID.rawValue else { return nil }
                return Lease(revision: try await bucket.update(leaseKey, value: value, revision: current.revision))
            }
            return Lease(revision: try await bucket.create(leaseKey, value: value))
        } catch let error as NATSError where error.code == .wrongLastSequence {
            return nil
        } catch {
            throw ACMEError(.coordination, "Cannot take the certificate lease in JetStream bucket \(Self.bucketName).", cause: error)
        }
    }

    /// Keeps the lease until `until` (after a failed order: until this drone's retry, so the
    /// other drones do not each try the CA in turn). Fails silently if it was taken over.
    public func hold(_ lease: Lease, until: Date) async {
        let record = LeaseRecord(drone: droneID.rawValue, expiresMs: Int64(until.timeIntervalSince1970 * 1000))
        guard let value = try? encode(record) else { return }
        _ = try? await bucket.update(leaseKey, value: value, revision: lease.revision)
    }

    /// Gives the lease back (only if nobody took it over meanwhile).
    public func release(_ lease: Lease) async {
        try? await bucket.delete(leaseKey, revision: lease.revision)
    }

    /// The cluster's shared certificate, if any drone stored one and it parses.
    public func sharedCertificate() async throws(ACMEError) -> CertificateBundle? {
        let entry: KeyValueEntry?
        do { entry = try await bucket.get(certificateKey) } catch {
            throw ACMEError(.coordination, "Cannot read the shared certificate from JetStream bucket \(Self.bucketName).", cause: error)
        }
        guard let entry else { return nil }
        let record: SharedRecord
        do { record = try JSONDecoder().decode(SharedRecord.self, from: Data(entry.value)) } catch {
            throw ACMEError(.coordination, "The shared certificate in \(Self.bucketName) is not valid JSON; the next order replaces it.", cause: error)
        }
        return try CertificateBundle(keyPEM: record.keyPEM, chainPEM: record.chainPEM)
    }

    /// Stores `bundle` as the cluster's certificate.
    public func share(_ bundle: CertificateBundle, now: Date = Date()) async throws(ACMEError) {
        let record = SharedRecord(keyPEM: bundle.keyPEM, chainPEM: bundle.chainPEM, drone: droneID.rawValue, issuedMs: Int64(now.timeIntervalSince1970 * 1000))
        do { try await bucket.put(certificateKey, value: try encode(record)) } catch {
            throw ACMEError(.coordination, "Cannot store the certificate in JetStream bucket \(Self.bucketName).", cause: error)
        }
    }

    func encode(_ value: some Encodable) throws(ACMEError) -> Data {
        do { return try JSONEncoder.sorted.encode(value) } catch {
            throw ACMEError(.coordination, "Cannot encode a record for \(Self.bucketName).", cause: error)
        }
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
