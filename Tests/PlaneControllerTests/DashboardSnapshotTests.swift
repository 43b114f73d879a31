import PlaneController
import PlaneCore
import Testing

/// The dashboard's JSON: what is listed, in which order, within which bounds.
struct DashboardSnapshotTests {
    static let now = Timestamp(secondsSinceEpoch: 1_800_000_000)

    static func backend(_ state: BackendState?, ago seconds: Int64, cluster: ClusterName = "plane.test", created: Int64? = nil, lock: LockName? = nil) -> BackendRecord {
        BackendRecord(backendID: .random(), cluster: cluster, drone: "drone-1", state: state, time: Timestamp(secondsSinceEpoch: now.secondsSinceEpoch - seconds),
                      lock: lock, bearerToken: "secret-token", created: created.map { Timestamp(secondsSinceEpoch: now.secondsSinceEpoch - $0) })
    }

    @Test func listsLiveBackendsFirstAndRecentlyEndedOnesOfItsClusterOnly() throws {
        let ready = Self.backend(.ready, ago: 5, created: 50, lock: "doc-1")
        let newer = Self.backend(.loading, ago: 1, created: 1)
        let ended = Self.backend(.terminated, ago: 60, created: 100)
        let old = Self.backend(.swept, ago: 7200, created: 9000)
        let elsewhere = Self.backend(.ready, ago: 5, cluster: "other.test")
        let scheduled = Self.backend(nil, ago: 0)
        let snapshot = DashboardSnapshot(cluster: "plane.test", drones: nil, droneTimeout: .seconds(30), backends: [ended, old, ready, elsewhere, newer, scheduled],
                                         idle: [ready.backendID: .init(seconds: 12.5, received: Self.now), newer.backendID: .init(seconds: 3, received: Self.now)])
        let json = try #require(snapshot.json(now: Self.now, instant: .now).objectValue)
        let rows = try #require(json["backends"]?.arrayValue).compactMap(\.objectValue)
        #expect(rows.map { $0["id"]?.stringValue } == [scheduled, newer, ready, ended].map { $0.backendID.rawValue })
        #expect(rows[0]["state"]?.stringValue == "Scheduled")
        #expect(rows[2]["lock"]?.stringValue == "doc-1")
        #expect(rows[2]["created_ms"]?.int64Value == (Self.now.secondsSinceEpoch - 50) * 1000)
        #expect(rows[2]["idle_secs"]?.doubleValue == 12.5)
        // Idle times only for Ready backends; never a bearer token.
        #expect(rows[1]["idle_secs"] == nil)
        #expect(rows[3]["live"]?.boolValue == false)
        #expect(!String(decoding: JSONWriter.write(.object(json)), as: UTF8.self).contains("secret-token"))
        #expect(json["drones"]?.isNull == true, "a controller without a scheduler says so")
        #expect(json["live_backends_by_state"]?.objectValue?["Ready"]?.int64Value == 1)
        #expect(json["server_time_ms"]?.int64Value == Self.now.secondsSinceEpoch * 1000)
    }

    @Test func isBoundedAndSaysHowManyWereLeftOut() throws {
        let backends = (0..<50).map { Self.backend(.ready, ago: Int64($0), created: Int64($0)) }
        let snapshot = DashboardSnapshot(cluster: "plane.test", drones: [], droneTimeout: .seconds(30), backends: backends, maxBackends: 10)
        let json = try #require(snapshot.json(now: Self.now, instant: .now).objectValue)
        let rows = try #require(json["backends"]?.arrayValue)
        #expect(rows.count == 10)
        #expect(json["backends_omitted"]?.int64Value == 40)
        #expect(rows.first?.objectValue?["id"]?.stringValue == backends[0].backendID.rawValue, "newest first")
        #expect(json["live_backends_by_state"]?.objectValue?["Ready"]?.int64Value == 50)
    }

    @Test func timesFromPeersAtTheEdgesOfTheirRangeDoNotTrap() throws {
        var far = Self.backend(.ready, ago: 0)
        far.time = Timestamp(secondsSinceEpoch: 253_402_300_799)
        far.created = Timestamp(secondsSinceEpoch: -62_135_596_800)
        let snapshot = DashboardSnapshot(cluster: "plane.test", drones: nil, droneTimeout: .seconds(30), backends: [far])
        let rows = try #require(snapshot.json(now: Self.now, instant: .now).objectValue?["backends"]?.arrayValue)
        #expect(rows.count == 1)
    }
}
