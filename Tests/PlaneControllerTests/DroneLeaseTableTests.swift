import PlaneCore
import Testing
@testable import PlaneController

/// When a controller may revoke a drone's lease, under a manual clock.
struct DroneLeaseTableTests {
    let t0 = ContinuousClock.now
    let drone = DroneID.random()

    func record(epoch: UInt64 = 1, revoked: Bool = false, hardSeconds: UInt64 = 20) -> DroneLeaseRecord {
        DroneLeaseRecord(drone: drone, cluster: "plane.test", epoch: epoch, revoked: revoked, leaseHardMilliseconds: hardSeconds * 1000, renewed: .now())
    }

    func verdict(_ table: DroneLeaseTable, at offset: Duration, reassignAfter: Duration = .seconds(30)) -> DroneLeaseTable.Verdict {
        table.verdict(for: drone, at: t0 + offset, reassignAfter: reassignAfter, margin: .seconds(5))
    }

    @Test func nothingIsJudgedBeforeTheWatchCaughtUp() {
        var table = DroneLeaseTable()
        table.observe(record(), revision: 3, at: t0)
        #expect(verdict(table, at: .seconds(100)) == .valid)
        table.watchCaughtUp()
        #expect(verdict(table, at: .seconds(100)) == .stale(revision: 3))
        table.watchRestarted()
        #expect(verdict(table, at: .seconds(200)) == .valid)
    }

    @Test func aDroneWithoutALeaseIsJudgedByHeartbeats() {
        var table = DroneLeaseTable()
        table.watchCaughtUp()
        #expect(verdict(table, at: .seconds(100)) == .none)
    }

    @Test func staleOnlyAfterNoNewRevisionForTheWholeWait() {
        var table = DroneLeaseTable()
        table.watchCaughtUp()
        table.observe(record(), revision: 3, at: t0)
        #expect(verdict(table, at: .seconds(29)) == .valid)
        // The same revision delivered again (a watch that restarted) does not reset the clock.
        table.observe(record(), revision: 3, at: t0 + .seconds(20))
        #expect(verdict(table, at: .seconds(30)) == .stale(revision: 3))
        // A renewal seen restarts it.
        table.observe(record(), revision: 9, at: t0 + .seconds(31))
        #expect(verdict(table, at: .seconds(60)) == .valid)
        #expect(verdict(table, at: .seconds(61)) == .stale(revision: 9))
    }

    @Test func theWaitIsNeverShorterThanTheDronesHardLeasePlusTheMargin() {
        var table = DroneLeaseTable()
        table.watchCaughtUp()
        table.observe(record(hardSeconds: 60), revision: 3, at: t0)
        #expect(verdict(table, at: .seconds(64)) == .valid)
        #expect(verdict(table, at: .seconds(65)) == .stale(revision: 3))
    }

    @Test func aRevokedLeaseSaysSo() {
        var table = DroneLeaseTable()
        table.watchCaughtUp()
        table.observe(record(revoked: true), revision: 4, at: t0)
        #expect(verdict(table, at: .zero) == .revoked)
        table.remove(drone)
        #expect(verdict(table, at: .zero) == .none)
    }
}
