import NIOCore

/// When a client connection is closed for not sending a request head in time, as a pure
/// state machine: a new connection's first head must be complete within `headLimit` of its
/// start (over TLS the handshake is part of that time, so a client that stalls in it or
/// never sends anything gives its place back as soon as one that stalls mid-head), a later
/// head that started must be complete within `headLimit`, and a kept-alive connection
/// between requests may stay silent for `idleLimit`. While a request is being served there
/// is no limit. `ProxyHandler` feeds it the connection's events and arms one timer for
/// `deadline`.
struct HeaderDeadline {
    let headLimit: TimeAmount
    let idleLimit: TimeAmount
    /// When the connection closes unless something changes it; nil: no limit now.
    private(set) var deadline: NIODeadline?
    private var waitingForHead = true
    private var headStarted = false

    init(headLimit: TimeAmount, idleLimit: TimeAmount) {
        self.headLimit = headLimit
        self.idleLimit = idleLimit
    }

    /// The connection is open and waits for its first request: all of it within `headLimit`.
    mutating func connectionStarted(now: NIODeadline) {
        headStarted = true
        deadline = now + headLimit
    }

    /// Bytes arrived: the first of a head start its (shorter) limit.
    mutating func bytesArrived(now: NIODeadline) {
        guard waitingForHead, !headStarted else { return }
        headStarted = true
        deadline = now + headLimit
    }

    /// A complete request head arrived: no limit until the exchange is over.
    mutating func headReceived() {
        waitingForHead = false
        headStarted = false
        deadline = nil
    }

    /// The exchange is over: the next request may take `idleLimit` to begin.
    mutating func awaitingHead(now: NIODeadline) {
        waitingForHead = true
        headStarted = false
        deadline = now + idleLimit
    }

    func isExpired(at now: NIODeadline) -> Bool {
        deadline.map { $0 <= now } ?? false
    }

    /// When a timer armed at `now` for `deadline` should fire: never more than `headLimit`
    /// ahead, so that a head starting later (deadline `now + headLimit`) is never earlier
    /// than an armed timer, and a timer need not be replaced per request.
    func timerTime(now: NIODeadline) -> NIODeadline? {
        deadline.map { min($0, now + headLimit) }
    }
}
