/// Bounds on one backend's published output (`[agent] max_log_line_bytes` and
/// `max_log_bytes_per_minute`): a backend's output goes to NATS (and from there to anyone
/// following it), so a backend that prints without pause must not be able to flood it.
/// Pure: the monitor asks it about each line, with the time.
struct LogVolumeLimiter {
    /// A line longer than this is cut to it, and the cut is said at its end.
    let maxLineBytes: Int
    /// Output beyond this many bytes in a minute is not published.
    let maxBytesPerMinute: Int

    private var windowStart: ContinuousClock.Instant?
    private var windowBytes = 0
    private var droppedLines = 0
    private var droppedBytes = 0

    static let maxLineBytesKey = "agent.max_log_line_bytes"
    static let maxBytesPerMinuteKey = "agent.max_log_bytes_per_minute"

    init(maxLineBytes: Int, maxBytesPerMinute: Int) {
        self.maxLineBytes = maxLineBytes
        self.maxBytesPerMinute = maxBytesPerMinute
    }

    struct Decision: Equatable {
        /// What to publish, cut if it was too long; nil: dropped (the minute's volume is spent).
        var text: String?
        /// The line was cut to `maxLineBytes`.
        var cut = false
        /// Output dropped in the minute that just ended, to report before this line.
        var droppedBefore: (lines: Int, bytes: Int)?

        static func == (a: Decision, b: Decision) -> Bool {
            a.text == b.text && a.cut == b.cut && a.droppedBefore?.lines == b.droppedBefore?.lines && a.droppedBefore?.bytes == b.droppedBefore?.bytes
        }
    }

    mutating func admit(_ text: String, at now: ContinuousClock.Instant) -> Decision {
        var decision = Decision()
        if windowStart.map({ now - $0 >= .seconds(60) }) ?? true {
            if droppedLines > 0 { decision.droppedBefore = (droppedLines, droppedBytes) }
            windowStart = now
            windowBytes = 0
            droppedLines = 0
            droppedBytes = 0
        }
        var line = text
        if line.utf8.count > maxLineBytes {
            // Cut at a character boundary at or below the limit (a valid string loses at most
            // the three bytes of one character more).
            var bytes = Array(line.utf8.prefix(maxLineBytes))
            while !bytes.isEmpty, String(validating: bytes, as: UTF8.self) == nil { bytes.removeLast() }
            line = String(decoding: bytes, as: UTF8.self) + " [plane: \(line.utf8.count - bytes.count) more bytes cut; max_log_line_bytes]"
            decision.cut = true
        }
        let size = line.utf8.count
        guard windowBytes + size <= maxBytesPerMinute else {
            droppedLines += 1
            droppedBytes += size
            return decision
        }
        windowBytes += size
        decision.text = line
        return decision
    }

    /// Output dropped in the current minute so far (reported when the next minute starts,
    /// or when the backend ends).
    var pendingDrops: (lines: Int, bytes: Int)? { droppedLines > 0 ? (droppedLines, droppedBytes) : nil }

    /// The line that says what was not published.
    static func dropNotice(lines: Int, bytes: Int, limit: Int) -> String {
        "[plane: \(lines) lines (\(bytes) bytes) of this backend's output were not published: it wrote more than \(limit) bytes in a minute; max_log_bytes_per_minute]"
    }
}
