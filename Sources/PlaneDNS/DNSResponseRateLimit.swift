/// Response rate limiting (RRL) of UDP answers, per client network (`[dns] rate_limit`,
/// `rate_limit_slip`, `rate_limit_ipv4_prefix`, `rate_limit_ipv6_prefix`).
///
/// A UDP query's source address can be forged, so an open authoritative server can be made
/// to send its answers to a victim who never asked (a reflection attack). Each client
/// network (the source address cut to its prefix) gets `responsesPerSecond` answers a second,
/// with a burst of one second's worth; beyond that, every `slip`-th query is answered with an
/// empty truncated response (TC set), so that a real resolver asks again over TCP (which
/// cannot be forged and is not rate limited), and the others get nothing. TCP answers are
/// never limited here (`tcp_max_connections*` bound them).
public struct DNSResponseRateLimit: Sendable, Hashable {
    /// Answers a second per client network; 0 turns rate limiting off.
    public var responsesPerSecond: Int = 200
    /// Of the queries over the rate, every `slip`-th gets a truncated answer (1: all of them);
    /// 0: none, all are dropped.
    public var slip: Int = 2
    /// How much of an IPv4 source address names its network (0...32).
    public var ipv4PrefixLength: Int = 24
    /// How much of an IPv6 source address names its network (0...128).
    public var ipv6PrefixLength: Int = 56

    /// The key hits are counted and logged under (`plane_input_limit_hits_total{limit=...}`).
    public static let key = "dns.rate_limit"
    /// The allowed range of `rate_limit` besides 0 (config loaders check it).
    public static let responsesPerSecondRange = 1...10_000_000

    public var isEnabled: Bool { responsesPerSecond > 0 }

    public init() {}
}

/// The buckets of `DNSResponseRateLimit`, without I/O or locks: one slot per client network
/// hash (networks whose hashes meet share a slot, so the table never grows), each a cell rate
/// meter (GCRA): the time its next answer is due, which moves on by one interval per answer;
/// an answer is allowed while that time is at most a second ahead of now.
struct DNSRateLimitTable {
    enum Decision: Equatable {
        case answer
        /// Over the rate: answer with an empty truncated response (TC), so TCP is tried.
        case truncate
        /// Over the rate: no answer.
        case drop
    }

    /// Per slot: when (nanoseconds on the caller's monotonic clock) the next answer is due.
    private var due: [Int64]
    /// Per slot: queries over the rate since the last answer (for `slip`).
    private var over: [UInt32]
    /// Nanoseconds per answer.
    let interval: Int64
    /// How far ahead of now `due` may run: a burst of one second's answers.
    let tolerance: Int64
    let slip: UInt32

    /// `responsesPerSecond` must be in `DNSResponseRateLimit.responsesPerSecondRange`
    /// (clamped to it otherwise); `slots` at least 1.
    init(slots: Int, limit: DNSResponseRateLimit) {
        let count = max(slots, 1)
        due = Array(repeating: Int64.min, count: count)
        over = Array(repeating: 0, count: count)
        let range = DNSResponseRateLimit.responsesPerSecondRange
        let rate = Int64(min(max(limit.responsesPerSecond, range.lowerBound), range.upperBound))
        interval = max(1_000_000_000 / rate, 1)
        tolerance = interval * (rate - 1)
        slip = UInt32(clamping: max(limit.slip, 0))
    }

    var slotCount: Int { due.count }

    /// Decides on one query from the network of `slot` (taken modulo the slot count) at
    /// `now` (monotonic nanoseconds, never negative).
    mutating func decide(slot: Int, now: Int64) -> Decision {
        let index = Int(UInt(bitPattern: slot) % UInt(due.count))
        let start = max(due[index], now)
        if start - now <= tolerance {
            due[index] = start + interval
            over[index] = 0
            return .answer
        }
        over[index] &+= 1
        guard slip > 0, over[index] % slip == 0 else { return .drop }
        return .truncate
    }
}
