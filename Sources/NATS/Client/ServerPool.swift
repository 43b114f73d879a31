/// Which server to try next and how long to wait: the configured list first, then servers
/// that INFO advertised; after a full round without success, back off exponentially with
/// jitter. Pure logic, no I/O, so it is unit-tested directly.
struct ServerPool: Sendable {
    private(set) var servers: [NATSServerURL]
    private var nextIndex = 0
    private(set) var failedRounds = 0
    private let baseWait: Duration
    private let maxWait: Duration
    private let jitter: Double

    init(servers: [NATSServerURL], baseWait: Duration, maxWait: Duration, jitter: Double) {
        self.servers = servers
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

    /// Adds servers a server advertised (`connect_urls`, `host:port`), once each.
    mutating func addDiscovered(_ urls: [String], template: NATSServerURL) {
        for text in urls {
            guard var url = try? NATSServerURL(text) else { continue }
            url.requiresTLS = template.requiresTLS
            url.user = template.user
            url.password = template.password
            if !servers.contains(where: { $0.sameServer(as: url) }) { servers.append(url) }
        }
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
