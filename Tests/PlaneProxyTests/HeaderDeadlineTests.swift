import NIOCore
@testable import PlaneProxy
import Testing

/// The header read and idle timeouts as a state machine, on a made-up clock.
struct HeaderDeadlineTests {
    let start = NIODeadline.uptimeNanoseconds(1_000_000_000_000)

    @Test func idleThenHeadThenServedThenIdleAgain() {
        var deadline = HeaderDeadline(headLimit: .seconds(10), idleLimit: .seconds(60))
        #expect(deadline.deadline == nil)
        // A new connection's whole first head (and a TLS handshake before it) within the
        // head limit of its start, not the idle limit: a silent client is cut off as soon
        // as one that stalls mid-head. Its bytes do not move the deadline.
        deadline.connectionStarted(now: start)
        #expect(deadline.deadline == start + .seconds(10))
        #expect(deadline.timerTime(now: start) == start + .seconds(10))
        deadline.bytesArrived(now: start + .seconds(5))
        #expect(deadline.deadline == start + .seconds(10))
        #expect(!deadline.isExpired(at: start + .seconds(9)) && deadline.isExpired(at: start + .seconds(10)))
        // Between requests the idle limit; a timer is never armed further than the head
        // limit ahead. The first byte of a head starts the shorter limit; later bytes do
        // not move it.
        deadline.awaitingHead(now: start)
        #expect(deadline.deadline == start + .seconds(60))
        #expect(deadline.timerTime(now: start) == start + .seconds(10))
        deadline.bytesArrived(now: start + .seconds(5))
        #expect(deadline.deadline == start + .seconds(15))
        deadline.bytesArrived(now: start + .seconds(9))
        #expect(deadline.deadline == start + .seconds(15))
        #expect(!deadline.isExpired(at: start + .seconds(14)) && deadline.isExpired(at: start + .seconds(15)))
        // While the request is served there is no limit at all, however long it takes.
        deadline.headReceived()
        #expect(deadline.deadline == nil && !deadline.isExpired(at: start + .hours(5)))
        deadline.bytesArrived(now: start + .seconds(20))  // body bytes
        #expect(deadline.deadline == nil)
        // Between requests: the idle limit, then a new head's limit once it starts.
        deadline.awaitingHead(now: start + .seconds(30))
        #expect(deadline.deadline == start + .seconds(90))
        deadline.bytesArrived(now: start + .seconds(31))
        #expect(deadline.deadline == start + .seconds(41))
    }
}
