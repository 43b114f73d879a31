/// A DNS record for the controller's DNS server (subject `cluster.{cluster_s}.dns.{kind}`,
/// spec §3.12): an A record `{name}.{cluster}` or the ACME TXT record.
public struct SetDnsRecord: Sendable, Hashable, Codable {
    public var cluster: ClusterName
    public var kind: DnsRecordType
    /// Left-most label: the backend id for A, `_acme-challenge` for TXT.
    public var name: String
    /// IPv4 dotted quad for A; the challenge digest for TXT.
    public var value: String

    public init(cluster: ClusterName, kind: DnsRecordType, name: String, value: String) {
        self.cluster = cluster
        self.kind = kind
        self.name = name
        self.value = value
    }
}

public enum DnsRecordType: String, Sendable, Hashable, Codable, CaseIterable {
    case a = "A"
    case txt = "TXT"
}

/// The ACME DNS-01 challenge value for `_acme-challenge.{cluster}` (subject
/// `acme.set_dns_record`, reply `true` when accepted, spec §3.13).
public struct SetAcmeDnsRecord: Sendable, Hashable, Codable {
    public var cluster: ClusterName
    public var value: String

    public init(cluster: ClusterName, value: String) {
        self.cluster = cluster
        self.value = value
    }
}
