
/// The records the DNS server answers from: per fully qualified name one address (A or
/// AAAA; a newer one replaces the older) and a list of TXT values. Every entry expires
/// `ttl` after its last refresh. Thread-safe; lookups never block on I/O.
///
/// Zones are the configured ones plus every cluster a record was ever set for, so a
/// v0.3.10 deployment without a zone list still gets authoritative answers.
public final class DNSRecordStore: Sendable {
    public typealias Clock = @Sendable () -> ContinuousClock.Instant

    struct Entry {
        var address: (data: DNSRecordData, expires: ContinuousClock.Instant)?
        var texts: [(value: String, expires: ContinuousClock.Instant)] = []
        var isEmpty: Bool { address == nil && texts.isEmpty }
    }

    struct State {
        var entries: [String: Entry] = [:]
        var zones: [String]
        /// Names above a record's name inside its zone (empty non-terminals); rebuilt when
        /// expired records are purged.
        var ancestors: Set<String> = []

        mutating func addAncestors(of key: String, zone: String) {
            var name = Substring(key)
            while let dot = name.firstIndex(of: ".") {
                name = name[name.index(after: dot)...]
                if name.utf8.count <= zone.utf8.count { return }
                ancestors.insert(String(name))
            }
        }

        func zone(containing key: String) -> String? {
            var best: String?
            for zone in zones where key == zone || zone.isEmpty || (key.hasSuffix(zone) && key.utf8.dropLast(zone.utf8.count).last == UInt8(ascii: ".")) {
                if best == nil || zone.utf8.count > best!.utf8.count { best = zone }
            }
            return best
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
    private let now: Clock
    private let state: ReadWriteLock<State>

    public init(zones: [DNSName] = [], ttl: Duration = .seconds(60), clock: @escaping Clock = { ContinuousClock.now }) {
        self.ttl = ttl
        self.now = clock
        var keys: [String] = []
        for zone in zones where !keys.contains(zone.key) { keys.append(zone.key) }
        self.state = ReadWriteLock(State(zones: keys))
    }

    /// The zone apex keys this server is authoritative for.
    public var zones: [String] { state.read { $0.zones } }

    /// Adds a zone (idempotent).
    public func addZone(_ zone: DNSName) {
        let key = zone.key
        state.write { if !$0.zones.contains(key) { $0.zones.append(key) } }
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
        state.write { state in
            if !state.zones.contains(zone.key) { state.zones.append(zone.key) }
            state.entries[key, default: Entry()].address = (data, expires)
            state.addAncestors(of: key, zone: zone.key)
        }
    }

    /// Adds a TXT value at `name` in `zone`. Publishing the same value again refreshes it
    /// (v0.3.10 appended duplicates); different values are kept in insertion order.
    public func addText(_ value: String, name: String, zone: DNSName, age: Duration = .zero) throws(DNSError) {
        let key = try Self.key(name: name, zone: zone)
        let expires = now() + ttl - age
        state.write { state in
            if !state.zones.contains(zone.key) { state.zones.append(zone.key) }
            state.addAncestors(of: key, zone: zone.key)
            var entry = state.entries[key, default: Entry()]
            if let index = entry.texts.firstIndex(where: { $0.value == value }) {
                entry.texts[index].expires = max(entry.texts[index].expires, expires)
            } else {
                entry.texts.append((value, expires))
            }
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
