
/// The records the DNS server answers from: per fully qualified name one address (A or
/// AAAA; a newer one replaces the older) and a list of TXT values. Every entry expires
/// `ttl` after its last refresh. Thread-safe; lookups never block on I/O.
///
/// Zones are the configured ones plus every cluster a record was ever set for, so a
/// v0.3.10 deployment without a zone list still gets authoritative answers.
///
/// Whatever peers publish, the store stays within its `Limits`: a record beyond them is
/// refused with `limitExceeded` (refreshing a record it holds always works).
public final class DNSRecordStore: Sendable {
    public typealias Clock = @Sendable () -> ContinuousClock.Instant

    /// Bounds on what publishers can make the store hold (`[dns]` in `controller.toml`).
    public struct Limits: Sendable, Hashable {
        /// `dns.max_records`: addresses and TXT values in all, expired ones included until
        /// they are purged.
        public var maxRecords: Int
        /// `dns.max_txt_per_name`: TXT values at one name.
        public var maxTextsPerName: Int
        /// `dns.max_txt_bytes`: one TXT value.
        public var maxTextBytes: Int
        /// `dns.max_zones`: zones, configured ones included.
        public var maxZones: Int

        public init(maxRecords: Int = 100_000, maxTextsPerName: Int = 16, maxTextBytes: Int = 1024, maxZones: Int = 64) {
            self.maxRecords = maxRecords
            self.maxTextsPerName = maxTextsPerName
            self.maxTextBytes = maxTextBytes
            self.maxZones = maxZones
        }

        public static let maxRecordsKey = "dns.max_records"
        public static let maxTextsPerNameKey = "dns.max_txt_per_name"
        public static let maxTextBytesKey = "dns.max_txt_bytes"
        public static let maxZonesKey = "dns.max_zones"
    }

    struct Entry {
        var address: (data: DNSRecordData, expires: ContinuousClock.Instant)?
        var texts: [(value: String, expires: ContinuousClock.Instant)] = []
        var isEmpty: Bool { address == nil && texts.isEmpty }
        var recordCount: Int { (address == nil ? 0 : 1) + texts.count }
    }

    struct State {
        var entries: [String: Entry] = [:]
        /// Zone keys in the order they were added, and the same as a set for lookups.
        var zones: [String]
        var zoneSet: Set<String>
        /// Addresses plus TXT values held (live or not yet purged).
        var recordCount = 0
        /// Names above a record's name inside its zone (empty non-terminals); rebuilt when
        /// expired records are purged.
        var ancestors: Set<String> = []

        init(zones: [String]) {
            self.zones = zones
            self.zoneSet = Set(zones)
        }

        mutating func addAncestors(of key: String, zone: String) {
            var name = Substring(key)
            while let dot = name.firstIndex(of: ".") {
                name = name[name.index(after: dot)...]
                if name.utf8.count <= zone.utf8.count { return }
                ancestors.insert(String(name))
            }
        }

        /// The longest zone that is the name or one of its parents. A few zones (the usual
        /// case) are compared directly; beyond that the name's suffixes are looked up from the
        /// longest, so the cost follows the name's labels, not the number of zones.
        func zone(containing key: String) -> String? {
            if zones.count <= 8 {
                var best: String?
                for zone in zones where key == zone || zone.isEmpty || (key.hasSuffix(zone) && key.utf8.dropLast(zone.utf8.count).last == UInt8(ascii: ".")) {
                    if best == nil || zone.utf8.count > best!.utf8.count { best = zone }
                }
                return best
            }
            var name = Substring(key)
            while true {
                if zoneSet.contains(String(name)) { return String(name) }
                guard let dot = name.firstIndex(of: ".") else { break }
                name = name[name.index(after: dot)...]
            }
            return zoneSet.contains("") ? "" : nil
        }

        /// Adds a zone; false when the store holds `limit` zones already.
        mutating func addZone(_ key: String, limit: Int) -> Bool {
            if zoneSet.contains(key) { return true }
            guard zones.count < limit else { return false }
            zones.append(key)
            zoneSet.insert(key)
            return true
        }
    }

    /// Everything a query needs, read under one lock.
    public struct Lookup: Sendable {
        /// The zone containing the name; nil: not ours.
        public var zone: String?
        public var records: Records
        /// Records exist at the name or below it.
        public var exists: Bool
    }

    /// What a lookup found at one name.
    public struct Records: Sendable, Hashable {
        public var address: DNSRecordData?
        public var texts: [String]
        public var isEmpty: Bool { address == nil && texts.isEmpty }
    }

    public let ttl: Duration
    public let limits: Limits
    private let now: Clock
    private let state: ReadWriteLock<State>

    /// Configured `zones` are all kept, even beyond `limits.maxZones` (which then leaves no
    /// room for zones that records bring).
    public init(zones: [DNSName] = [], ttl: Duration = .seconds(60), limits: Limits = Limits(), clock: @escaping Clock = { ContinuousClock.now }) {
        self.ttl = ttl
        self.limits = limits
        self.now = clock
        var keys: [String] = []
        for zone in zones where !keys.contains(zone.key) { keys.append(zone.key) }
        self.state = ReadWriteLock(State(zones: keys))
    }

    /// The zone apex keys this server is authoritative for.
    public var zones: [String] { state.read { $0.zones } }

    /// Adds a zone (idempotent); refused beyond `limits.maxZones`.
    public func addZone(_ zone: DNSName) throws(DNSError) {
        let key = zone.key
        guard state.write({ $0.addZone(key, limit: limits.maxZones) }) else { throw zoneLimit(key) }
    }

    private func zoneLimit(_ key: String) -> DNSError {
        DNSError(.limitExceeded, "The DNS server holds \(limits.maxZones) zones; records for the new zone '\(key)' are refused (\(Limits.maxZonesKey)).",
                 limit: Limits.maxZonesKey)
    }

    private func recordLimit() -> DNSError {
        DNSError(.limitExceeded, "The DNS server holds \(limits.maxRecords) records; new ones are refused until old ones expire (\(Limits.maxRecordsKey)).",
                 limit: Limits.maxRecordsKey)
    }

    /// Sets the address of `name` in `zone` (`name` empty = the apex). The value must be an
    /// IPv4 (answered as A) or IPv6 (answered as AAAA) address. `age` is how long ago the
    /// record was published (for records replayed from a stream).
    public func setAddress(_ value: String, name: String, zone: DNSName, age: Duration = .zero) throws(DNSError) {
        let data: DNSRecordData
        if let v4 = IPv4Address(value) {
            data = .a(v4)
        } else if let v6 = IPv6Address(value) {
            data = .aaaa(v6)
        } else {
            throw DNSError(.invalidName, "'\(value)' is not an IPv4 or IPv6 address; the A record for \(name) is ignored")
        }
        let key = try Self.key(name: name, zone: zone)
        let expires = now() + ttl - age
        try state.write { state throws(DNSError) in
            let isNew = state.entries[key]?.address == nil
            if isNew, state.recordCount >= limits.maxRecords { throw recordLimit() }
            guard state.addZone(zone.key, limit: limits.maxZones) else { throw zoneLimit(zone.key) }
            state.entries[key, default: Entry()].address = (data, expires)
            if isNew { state.recordCount += 1 }
            state.addAncestors(of: key, zone: zone.key)
        }
    }

    /// Adds a TXT value at `name` in `zone`. Publishing the same value again refreshes it
    /// (v0.3.10 appended duplicates); different values are kept in insertion order.
    public func addText(_ value: String, name: String, zone: DNSName, age: Duration = .zero) throws(DNSError) {
        guard value.utf8.count <= limits.maxTextBytes else {
            throw DNSError(.limitExceeded, "A TXT value of \(value.utf8.count) bytes for \(name) is longer than \(limits.maxTextBytes) (\(Limits.maxTextBytesKey)).",
                           limit: Limits.maxTextBytesKey)
        }
        let key = try Self.key(name: name, zone: zone)
        let expires = now() + ttl - age
        try state.write { state throws(DNSError) in
            var entry = state.entries[key] ?? Entry()
            if let index = entry.texts.firstIndex(where: { $0.value == value }) {
                entry.texts[index].expires = max(entry.texts[index].expires, expires)
            } else {
                guard entry.texts.count < limits.maxTextsPerName else {
                    throw DNSError(.limitExceeded, "\(key) holds \(limits.maxTextsPerName) TXT values; another is refused until one expires (\(Limits.maxTextsPerNameKey)).",
                                   limit: Limits.maxTextsPerNameKey)
                }
                guard state.recordCount < limits.maxRecords else { throw recordLimit() }
                guard state.addZone(zone.key, limit: limits.maxZones) else { throw zoneLimit(zone.key) }
                entry.texts.append((value, expires))
                state.recordCount += 1
            }
            state.addAncestors(of: key, zone: zone.key)
            state.entries[key] = entry
        }
    }

    /// The live records at a name key (lower-case, no trailing dot).
    public func records(at key: String) -> Records {
        lookup(key).records
    }

    /// Whether a name has live records or is an ancestor of a name that has (an empty
    /// non-terminal, which answers NODATA rather than NXDOMAIN).
    public func nameExists(_ key: String) -> Bool {
        lookup(key).exists
    }

    /// The longest zone that contains the name key, if any.
    public func zone(containing key: String) -> String? {
        state.read { $0.zone(containing: key) }
    }

    /// Zone, records and existence of a name key in one read.
    public func lookup(_ key: String) -> Lookup {
        let now = now()
        return state.read { state in
            let zone = state.zone(containing: key)
            var records = Records(address: nil, texts: [])
            if let entry = state.entries[key] {
                if let address = entry.address, address.expires > now { records.address = address.data }
                for text in entry.texts where text.expires > now { records.texts.append(text.value) }
            }
            return Lookup(zone: zone, records: records, exists: !records.isEmpty || state.ancestors.contains(key))
        }
    }

    /// Drops every expired record and every name left without records.
    @discardableResult
    public func purgeExpired() -> Int {
        let now = now()
        return state.write { state in
            var removed = 0
            for (key, var entry) in state.entries {
                if let address = entry.address, address.expires <= now { entry.address = nil; removed += 1 }
                let before = entry.texts.count
                entry.texts.removeAll { $0.expires <= now }
                removed += before - entry.texts.count
                state.entries[key] = entry.isEmpty ? nil : entry
            }
            state.recordCount -= removed
            if removed > 0 {
                state.ancestors = []
                for key in state.entries.keys {
                    if let zone = state.zone(containing: key) { state.addAncestors(of: key, zone: zone) }
                }
            }
            return removed
        }
    }

    /// Live record count (addresses plus TXT values).
    public var count: Int {
        let now = now()
        return state.read { state in
            state.entries.values.reduce(0) { total, entry in
                total + (entry.address.map { $0.expires > now ? 1 : 0 } ?? 0) + entry.texts.count { $0.expires > now }
            }
        }
    }

    static func key(name: String, zone: DNSName) throws(DNSError) -> String {
        if name.isEmpty || name == "@" { return zone.key }
        return try zone.prepending(name).key
    }
}
