import PlaneCore
import Testing
@testable import PlaneDrone

/// The drone's lease under a manual clock: when lock holders stop, when they are killed,
/// what a revoked lease does, and when lock-holding spawns are taken.
struct DroneLeaseTests {
    let t0 = ContinuousClock.now
    let timing = DroneLease.Timing(renewInterval: .seconds(2), soft: .seconds(10), hard: .seconds(20))

    @Test func aNeverGrantedLeaseAllowsNoLockHoldersAndStopsNothing() {
        var lease = DroneLease(timing: timing)
        #expect(lease.phase == .none)
        #expect(!lease.allowsLockHolders(at: t0))
        #expect(lease.tick(now: t0 + .seconds(100)).isEmpty)
    }

    @Test func renewedInTimeNothingStops() {
        var lease = DroneLease(timing: timing)
        #expect(lease.granted(epoch: 1, sentAt: t0, now: t0 + .milliseconds(5)).isEmpty)
        for second in stride(from: 2, through: 60, by: 2) {
            #expect(lease.granted(epoch: 1, sentAt: t0 + .seconds(second), now: t0 + .seconds(second) + .milliseconds(5)).isEmpty)
            #expect(lease.tick(now: t0 + .seconds(second + 1)).isEmpty)
            #expect(lease.allowsLockHolders(at: t0 + .seconds(second + 1)))
        }
    }

    @Test func softThenHardCountFromTheSendingOfTheLastGrantedRenewal() {
        var lease = DroneLease(timing: timing)
        // The grant arrives late; the lease still counts from when the renewal was sent.
        _ = lease.granted(epoch: 1, sentAt: t0, now: t0 + .seconds(3))
        #expect(lease.allowsLockHolders(at: t0 + .seconds(7)))
        #expect(!lease.allowsLockHolders(at: t0 + .seconds(8)), "a renewal could not come in time any more")
        #expect(lease.tick(now: t0 + .milliseconds(9_999)).isEmpty)
        #expect(lease.tick(now: t0 + .milliseconds(10_250)) == [.stopLockHolders(grace: .milliseconds(9_750))])
        #expect(lease.tick(now: t0 + .seconds(15)).isEmpty, "stopped once")
        #expect(!lease.allowsLockHolders(at: t0 + .seconds(15)))
        #expect(lease.tick(now: t0 + .seconds(20)) == [.killLockHolders])
        #expect(lease.tick(now: t0 + .seconds(30)).isEmpty)
        #expect(lease.phase == .expired)
    }

    @Test func aDroneThatWasAwayPastHardKillsAtOnce() {
        var lease = DroneLease(timing: timing, epoch: 4, grantedAt: t0 - .seconds(40))
        #expect(lease.tick(now: t0) == [.killLockHolders])
    }

    @Test func aGrantAfterTheSoftPhaseMakesTheLeaseValidAgain() {
        var lease = DroneLease(timing: timing)
        _ = lease.granted(epoch: 1, sentAt: t0, now: t0)
        #expect(lease.tick(now: t0 + .seconds(11)).count == 1)
        #expect(lease.granted(epoch: 1, sentAt: t0 + .seconds(12), now: t0 + .seconds(12)).isEmpty)
        #expect(lease.phase == .valid && lease.allowsLockHolders(at: t0 + .seconds(13)))
        // And a lapse after that is announced again.
        #expect(lease.tick(now: t0 + .seconds(22)) == [.stopLockHolders(grace: .seconds(10))])
    }

    @Test func aNewEpochFencesWhatRanUnderTheOldOne() {
        var lease = DroneLease(timing: timing)
        _ = lease.granted(epoch: 1, sentAt: t0, now: t0)
        #expect(lease.granted(epoch: 2, sentAt: t0 + .seconds(25), now: t0 + .seconds(25)) == [.fenceLockHolders(epoch: 2)])
        #expect(lease.epoch == 2 && lease.allowsLockHolders(at: t0 + .seconds(26)))
    }

    @Test func anOlderGrantAnsweredLateDoesNotMoveTheLeaseBack() {
        var lease = DroneLease(timing: timing)
        _ = lease.granted(epoch: 1, sentAt: t0 + .seconds(5), now: t0 + .seconds(5))
        _ = lease.granted(epoch: 1, sentAt: t0, now: t0 + .seconds(6))
        #expect(lease.grantedAt == t0 + .seconds(5))
    }

    @Test func timingsThatCannotWorkAreNamed() {
        #expect(DroneLease.Timing().problem == nil)
        #expect(DroneLease.Timing(renewInterval: .seconds(10), soft: .seconds(10), hard: .seconds(20)).problem?.contains("lease_soft_secs") == true)
        #expect(DroneLease.Timing(renewInterval: .seconds(1), soft: .seconds(10), hard: .seconds(10)).problem?.contains("lease_hard_secs") == true)
    }
}
