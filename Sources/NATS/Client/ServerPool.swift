/// Which server to try next and how long to wait: the configured list first, then servers
/// that INFO advertised; after a full round without success, back off exponentially with
/// jitter. Pure logic, no I/O, so it is unit-tested directly.
struct ServerPool: Sendable {
    /// The configured servers, then those that servers advertised.
    private(set) var servers: [NATSServerURL]
    /// How many of `servers`, from the start, were configured.
    private let configuredCount: Int
    private var nextIndex = 0
    private(set) var failedRounds = 0
    private let baseWait: Duration
    private let maxWait: Duration
    private let jitter: Double

    init(servers: [NATSServerURL], baseWait: Duration, maxWait: Duration, jitter: Double) {
        self.servers = servers
        configuredCount = servers.count
        self.baseWait = baseWait
        self.maxWait = maxWait
        self.jitter = jitter
    }

    /// The next server to try and the delay before trying it.
    mutating func next<R: RandomNumberGenerator>(using rng: inout R) -> (NATSServerURL, Duration) {
        let server = servers[nextIndex % servers.count]
        let delay: Duration
        if nextIndex > 0, nextIndex % servers.count == 0 {
            failedRounds += 1
            delay = backoff(round: failedRounds, using: &rng)
        } else {
            delay = .zero
        }
        nextIndex += 1
        return (server, delay)
    }

    mutating func next() -> (NATSServerURL, Duration) {
        var rng = SystemRandomNumberGenerator()
        return next(using: &rng)
    }

    /// Delay after `round` full failed rounds: base × 2^(round-1), capped, ± jitter.
    func backoff<R: RandomNumberGenerator>(round: Int, using rng: inout R) -> Duration {
        let exponent = min(max(round - 1, 0), 20)
        var seconds = baseWait.seconds * Double(1 << exponent)
        seconds = min(seconds, maxWait.seconds)
        if jitter > 0 { seconds *= Double.random(in: (1 - jitter)...(1 + jitter), using: &rng) }
        return .milliseconds(Int64((seconds * 1000).rounded()))
    }

    /// The server we are connected to worked: start the next search from it, no backoff.
    mutating func connected(to server: NATSServerURL) {
        if let index = servers.firstIndex(where: { $0.sameServer(as: server) }) { nextIndex = index }
        failedRounds = 0
    }

    /// After a disconnect, begin with the next server (not the one that just failed).
    mutating func disconnected() {
        nextIndex += 1
        nextIndex %= max(servers.count, 1)
        failedRounds = 0
    }

    /// What an `updateDiscovered` changed.
    struct DiscoveryChange: Equatable, Sendable {
        var added = 0
        var removed = 0
        /// Advertised servers beyond `maxDiscovered`, not taken.
        var ignored = 0
        /// The list is over the limit, and the one before was not (worth a warning once,
        /// not at every INFO of a server that keeps advertising too many).
        var becameLimited = false
    }

    /// At most this many servers that servers advertised are kept besides the configured
    /// ones. A real cluster advertises its handful of nodes; a hostile or broken server
    /// (or whoever answers in its place) must not grow the list, or a reconnect's first
    /// round, without end.
    static let maxDiscovered = 64
    private var overLimit = false

    /// The servers the connected server advertises now (INFO's `connect_urls`, `host:port`,
    /// taking `current`'s TLS, credentials and, for an address, the name its certificate is
    /// checked against). The list replaces the one advertised before,
    /// in the order kept so far: a server no longer advertised is dropped (a cluster that
    /// replaced its nodes must not leave the client trying dead addresses before live
    /// ones), new ones are added, up to `maxDiscovered`. The configured servers and
    /// `current` always stay. An empty list changes nothing (a server that advertises
    /// nobody, as a nats-server outside a cluster, or an INFO about something else).
    mutating func updateDiscovered(_ urls: [String], current: NATSServerURL) -> DiscoveryChange {
        var change = DiscoveryChange()
        guard !urls.isEmpty else { return change }
        let configured = servers[..<configuredCount]
        var advertised: [NATSServerURL] = []
        for text in urls {
            guard var url = try? NATSServerURL(text) else { continue }
            if configured.contains(where: { $0.sameServer(as: url) }) || advertised.contains(where: { $0.sameServer(as: url) }) { continue }
            guard advertised.count < Self.maxDiscovered else {
                change.ignored += 1
                continue
            }
            url.requiresTLS = current.requiresTLS
            url.user = current.user
            url.password = current.password
            // Advertised by address: its certificate is checked as the current server's was.
            url.tlsName = url.hostIsIP ? current.tlsServerName : nil
            advertised.append(url)
        }
        var discovered: [NATSServerURL] = []
        for server in servers[configuredCount...] {
            if server.sameServer(as: current) || advertised.contains(where: { $0.sameServer(as: server) }) {
                discovered.append(server)
            } else {
                change.removed += 1
            }
        }
        for url in advertised where !discovered.contains(where: { $0.sameServer(as: url) }) {
            discovered.append(url)
            change.added += 1
        }
        servers = Array(configured) + discovered
        change.becameLimited = change.ignored > 0 && !overLimit
        overLimit = change.ignored > 0
        // The search after a disconnect goes on from the current server, wherever it is now.
        if let index = servers.firstIndex(where: { $0.sameServer(as: current) }) { nextIndex = index }
        return change
    }
}

extension Duration {
    var seconds: Double {
        let (s, attos) = components
        return Double(s) + Double(attos) / 1e18
    }

    /// Nanoseconds, saturating (a timeout of `Int.max` seconds from a command line is "forever",
    /// not an overflow).
    var timeAmount: Int64 {
        let (s, attos) = components
        let (nanoseconds, overflow) = s.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return s < 0 ? .min : .max }
        let (sum, overflowed) = nanoseconds.addingReportingOverflow(attos / 1_000_000_000)
        return overflowed ? (s < 0 ? .min : .max) : sum
    }
}
