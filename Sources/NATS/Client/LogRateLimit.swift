/// At most one log line per `interval` for a kind of event a peer can repeat at will (a
/// server's `-ERR` lines, its lame-duck `INFO`s): the first is logged at once; those that
/// follow within the interval are only counted, and the next line logged says how many.
/// A flood from a broken or hostile server then costs one line per interval, not one per
/// message. Pure, no clock of its own.
struct LogRateLimit: Sendable {
    let interval: Duration
    private var lastLogged: ContinuousClock.Instant?
    private var suppressed = 0

    init(interval: Duration) {
        self.interval = interval
    }

    /// Nil: not now (counted). Otherwise log now: how many were not logged since the last line.
    mutating func admit(at now: ContinuousClock.Instant) -> Int? {
        if let lastLogged, now - lastLogged < interval {
            suppressed += 1
            return nil
        }
        lastLogged = now
        defer { suppressed = 0 }
        return suppressed
    }
}
