import Testing
@testable import PlaneDrone

/// A backend's published output stays within its line length and its volume per minute,
/// and what was cut or dropped is said, not silently lost.
struct LogVolumeLimiterTests {
    @Test func longLinesAreCutAtACharacterBoundary() {
        var limiter = LogVolumeLimiter(maxLineBytes: 10, maxBytesPerMinute: 1 << 20)
        let start = ContinuousClock.now
        #expect(limiter.admit("short", at: start) == .init(text: "short"))
        let cut = limiter.admit("0123456789abc", at: start)
        #expect(cut.cut && cut.text == "0123456789 [plane: 3 more bytes cut; max_log_line_bytes]")
        // "é" is two bytes: the cut never splits it.
        let accented = limiter.admit("012345678é", at: start)
        #expect(accented.text == "012345678 [plane: 2 more bytes cut; max_log_line_bytes]")
    }

    @Test func volumeBeyondTheMinutesLimitIsDroppedAndReported() {
        var limiter = LogVolumeLimiter(maxLineBytes: 100, maxBytesPerMinute: 25)
        let start = ContinuousClock.now
        #expect(limiter.admit("0123456789", at: start).text == "0123456789")
        #expect(limiter.admit("0123456789", at: start + .seconds(1)).text == "0123456789")
        #expect(limiter.admit("0123456789", at: start + .seconds(2)).text == nil)
        #expect(limiter.admit("01234", at: start + .seconds(3)).text == "01234")
        #expect(limiter.admit("x", at: start + .seconds(4)).text == nil)
        #expect(limiter.pendingDrops?.lines == 2 && limiter.pendingDrops?.bytes == 11)
        // A new minute: the drops of the last one are reported with its first line.
        let next = limiter.admit("again", at: start + .seconds(60))
        #expect(next.text == "again" && next.droppedBefore?.lines == 2 && next.droppedBefore?.bytes == 11)
        #expect(limiter.pendingDrops == nil)
        #expect(LogVolumeLimiter.dropNotice(lines: 2, bytes: 11, limit: 25).contains("max_log_bytes_per_minute"))
    }
}
