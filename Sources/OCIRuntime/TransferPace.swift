/// The slowest a registry may send what a pull reads from it (`[agent.oci]`
/// `pull_min_bytes_per_sec` over `pull_slow_secs`). A registry, or anything between it and
/// the drone, that sends a byte now and then never trips a read timeout, yet holds the pull
/// (and every other pull waiting for the same blob) for as long as it likes; measured over
/// windows, such a transfer is cut and the pull fails, naming the key. Zero bytes per second
/// turns the check off.
public struct TransferPace: Sendable, Hashable {
    public var minimumBytesPerSecond: Int64 = 4096
    public var window: Duration = .seconds(60)

    public init() {}

    public init(minimumBytesPerSecond: Int64, window: Duration) {
        self.minimumBytesPerSecond = minimumBytesPerSecond
        self.window = window
    }

    /// Watches one transfer: the bytes of each window (from the transfer's start, then from
    /// the end of the one before) must reach the minimum rate over that window's length.
    /// Checked as bytes arrive; a transfer that sends nothing at all ends by the HTTP
    /// client's read timeout.
    struct Meter {
        let pace: TransferPace
        private var windowStart: ContinuousClock.Instant
        private var bytesInWindow: Int64 = 0

        init(_ pace: TransferPace, now: ContinuousClock.Instant = .now) {
            self.pace = pace
            windowStart = now
        }

        /// Counts `count` bytes that arrived at `now`. Nil while the pace is kept; else the
        /// bytes and seconds of the window that fell short.
        mutating func arrived(_ count: Int, at now: ContinuousClock.Instant = .now) -> (bytes: Int64, seconds: Int64)? {
            let (sum, overflow) = bytesInWindow.addingReportingOverflow(Int64(count))
            bytesInWindow = overflow ? .max : sum
            let elapsed = now - windowStart
            guard pace.minimumBytesPerSecond > 0, elapsed >= pace.window else { return nil }
            let (product, tooMany) = pace.minimumBytesPerSecond.multipliedReportingOverflow(by: Self.milliseconds(elapsed))
            let required = tooMany ? Int64.max / 1000 : product / 1000
            defer {
                windowStart = now
                bytesInWindow = 0
            }
            return bytesInWindow >= required ? nil : (bytesInWindow, elapsed.components.seconds)
        }

        /// Whole milliseconds of a non-negative duration, at most `Int64.max`.
        static func milliseconds(_ duration: Duration) -> Int64 {
            let (seconds, attoseconds) = duration.components
            guard seconds >= 0 else { return 0 }
            let (whole, overflowed) = seconds.multipliedReportingOverflow(by: 1000)
            let (sum, tooLong) = whole.addingReportingOverflow(attoseconds / 1_000_000_000_000_000)
            return overflowed || tooLong ? .max : sum
        }
    }
}
