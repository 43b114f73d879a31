import Synchronization

/// Counts of answered queries by outcome, for `/metrics`. Lock-free: every query on every
/// DNS thread updates it.
public final class DNSQueryCounters: Sendable {
    private let answered = Atomic<Int>(0)
    private let noData = Atomic<Int>(0)
    private let nameError = Atomic<Int>(0)
    private let refused = Atomic<Int>(0)
    private let formatError = Atomic<Int>(0)
    private let notImplemented = Atomic<Int>(0)
    private let badVersion = Atomic<Int>(0)
    private let dropped = Atomic<Int>(0)
    private let truncatedCount = Atomic<Int>(0)

    public init() {}

    func record(_ response: DNSResponder.Response) {
        switch response.outcome {
        case .answered: answered.wrappingAdd(1, ordering: .relaxed)
        case .noData: noData.wrappingAdd(1, ordering: .relaxed)
        case .nameError: nameError.wrappingAdd(1, ordering: .relaxed)
        case .refused: refused.wrappingAdd(1, ordering: .relaxed)
        case .formatError: formatError.wrappingAdd(1, ordering: .relaxed)
        case .notImplemented: notImplemented.wrappingAdd(1, ordering: .relaxed)
        case .badVersion: badVersion.wrappingAdd(1, ordering: .relaxed)
        case .dropped: dropped.wrappingAdd(1, ordering: .relaxed)
        }
        if response.truncated { truncatedCount.wrappingAdd(1, ordering: .relaxed) }
    }

    /// Queries per outcome so far.
    public var byOutcome: [DNSResponder.Outcome: Int] {
        [
            .answered: answered.load(ordering: .relaxed), .noData: noData.load(ordering: .relaxed),
            .nameError: nameError.load(ordering: .relaxed), .refused: refused.load(ordering: .relaxed),
            .formatError: formatError.load(ordering: .relaxed), .notImplemented: notImplemented.load(ordering: .relaxed),
            .badVersion: badVersion.load(ordering: .relaxed), .dropped: dropped.load(ordering: .relaxed),
        ]
    }

    /// UDP answers sent truncated (TC set).
    public var truncated: Int { truncatedCount.load(ordering: .relaxed) }
}
