import Synchronization

/// Counts of answered queries by outcome, for `/metrics`.
public final class DNSQueryCounters: Sendable {
    private let counts = Mutex([Int](repeating: 0, count: DNSResponder.Outcome.allCases.count + 1))

    public init() {}

    func record(_ response: DNSResponder.Response) {
        let index = DNSResponder.Outcome.allCases.firstIndex(of: response.outcome) ?? 0
        counts.withLock { counts in
            counts[index] += 1
            if response.truncated { counts[counts.count - 1] += 1 }
        }
    }

    /// Queries per outcome so far.
    public var byOutcome: [DNSResponder.Outcome: Int] {
        let snapshot = counts.withLock { $0 }
        var result: [DNSResponder.Outcome: Int] = [:]
        for (index, outcome) in DNSResponder.Outcome.allCases.enumerated() { result[outcome] = snapshot[index] }
        return result
    }

    /// UDP answers sent truncated (TC set).
    public var truncated: Int { counts.withLock { $0[$0.count - 1] } }
}
