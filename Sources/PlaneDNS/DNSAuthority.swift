/// How the server describes its zones: the name server (SOA MNAME and the NS target), the
/// responsible mailbox (SOA RNAME), and the TTLs it hands out.
public struct DNSAuthority: Sendable, Hashable {
    /// MNAME and NS target. Nil: the zone apex itself.
    public var nameServer: DNSName?
    /// RNAME. Nil: `hostmaster.{zone}`.
    public var mailbox: DNSName?
    /// TTL of A, AAAA and TXT answers (v0.3.10: 60).
    public var recordTTL: UInt32 = 60
    /// TTL of SOA and NS answers.
    public var zoneTTL: UInt32 = 300
    /// SOA MINIMUM: how long resolvers may cache NXDOMAIN/NODATA. Short, because a backend
    /// that does not exist yet may exist a second later.
    public var negativeTTL: UInt32 = 5
    public var serial: UInt32 = 1
    /// The largest UDP answer we send to EDNS clients (the DNS flag day 2020 value).
    public var maxUDPPayload: UInt16 = 1232

    public init(nameServer: DNSName? = nil, mailbox: DNSName? = nil) {
        self.nameServer = nameServer
        self.mailbox = mailbox
    }

    /// Converts a `soa_email` setting to an RNAME: `foo@bar.com` → `foo.bar.com.`,
    /// `foo.bar@baz.com` → `foo\.bar.baz.com.`. A value already in RNAME form (no `@`,
    /// e.g. `admin.plane.test.`) is taken as is.
    public static func mailbox(fromEmail email: String) throws(DNSError) -> DNSName {
        guard let at = email.firstIndex(of: "@") else {
            guard email.contains(".") else {
                throw DNSError(.invalidConfiguration, "soa_email '\(email)' is not an email address; write it as user@domain (e.g. admin@plane.example.com)")
            }
            return try DNSName(email)
        }
        let local = email[..<at]
        let domain = String(email[email.index(after: at)...])
        guard !local.isEmpty, !domain.isEmpty, !domain.contains("@") else {
            throw DNSError(.invalidConfiguration, "soa_email '\(email)' is not an email address; write it as user@domain")
        }
        let domainName = try DNSName(domain)
        let localLabel = Array(local.utf8)
        guard localLabel.count <= 63, localLabel.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            throw DNSError(.invalidConfiguration, "soa_email '\(email)': the part before @ must be printable ASCII of at most 63 characters")
        }
        return DNSName(uncheckedLabels: [localLabel] + domainName.labels)
    }

    /// The textual RNAME with dots in the first label escaped, as zone files write it.
    public static func presentation(ofMailbox name: DNSName) -> String {
        guard let first = name.labels.first else { return "." }
        let escaped = String(decoding: first, as: UTF8.self).split(separator: ".", omittingEmptySubsequences: false).joined(separator: "\\.")
        return ([escaped] + name.labels.dropFirst().map { String(decoding: $0, as: UTF8.self) }).joined(separator: ".") + "."
    }
}
