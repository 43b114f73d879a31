import Foundation
import Testing
@testable import PlaneCore

/// Every wire message of spec §3: the fixture decodes, re-encodes to exactly the same bytes
/// (serde's compact form, member order included) and to the same JSON value.
struct GoldenWireTests {
    static func fixture(_ name: String, in folder: String = "golden") throws -> [UInt8] {
        let url = try #require(Bundle.module.url(forResource: name, withExtension: "json", subdirectory: "Fixtures/\(folder)"))
        var bytes = Array(try Data(contentsOf: url))
        while bytes.last == UInt8(ascii: "\n") { bytes.removeLast() }
        return bytes
    }

    static let cases: [(String, any (Codable & Sendable).Type)] = [
        ("ScheduleRequest.cli", ScheduleRequest.self),
        ("ScheduleRequest.extensions", ScheduleRequest.self),
        ("ScheduleResponse.scheduled", ScheduleResponse.self),
        ("ScheduleResponse.token", ScheduleResponse.self),
        ("ScheduleResponse.noDrone", ScheduleResponse.self),
        ("ScheduleResponse.error", ScheduleResponse.self),
        ("SpawnRequest", SpawnRequest.self),
        ("SpawnRequest.lock", SpawnRequest.self),
        ("ScheduleResponse.fencing", ScheduleResponse.self),
        ("DroneLeaseRequest", DroneLeaseRequest.self),
        ("DroneLeaseGrant", DroneLeaseGrant.self),
        ("DroneStatusMessage", DroneStatusMessage.self),
        ("DroneConnectRequest", DroneConnectRequest.self),
        ("DrainDrone", DrainDrone.self),
        ("TerminationRequest", TerminationRequest.self),
        ("UpdateBackendStateMessage", UpdateBackendStateMessage.self),
        ("BackendStateMessage", BackendStateMessage.self),
        ("SetDnsRecord.A", SetDnsRecord.self),
        ("SetDnsRecord.TXT", SetDnsRecord.self),
        ("SetAcmeDnsRecord", SetAcmeDnsRecord.self),
        ("DroneLogMessage", DroneLogMessage.self),
        ("BackendStatsMessage", BackendStatsMessage.self),
        ("LogMessage", LogMessage.self),
        ("LogMessage.controller", LogMessage.self),
    ]

    @Test("golden fixture round-trips byte for byte", arguments: cases.map(\.0))
    func roundTrip(name: String) throws {
        let type = try #require(Self.cases.first { $0.0 == name }?.1)
        let bytes = try Self.fixture(name)
        let encoded = try Self.roundTrip(bytes, as: type)
        #expect(String(decoding: encoded, as: UTF8.self) == String(decoding: bytes, as: UTF8.self))
        #expect(try JSONParser.parse(encoded).isEquivalent(to: JSONParser.parse(bytes)))
    }

    static func roundTrip<T: Codable>(_ bytes: [UInt8], as type: T.Type) throws -> [UInt8] {
        let value = try WireDecoder().decode(T.self, from: bytes)
        return try WireEncoder().encode(value)
    }

    @Test func everyFixtureHasACase() throws {
        let folder = try #require(Bundle.module.url(forResource: "Fixtures/golden", withExtension: nil))
        let names = try FileManager.default.contentsOfDirectory(atPath: folder.path).map { $0.replacingOccurrences(of: ".json", with: "") }
        #expect(Set(names) == Set(Self.cases.map(\.0)))
    }

    @Test func seedMinimalScheduleRequestGetsDefaults() throws {
        let request = try WireDecoder().decode(ScheduleRequest.self, from: Self.fixture("ScheduleRequest.minimal", in: "decode-only"))
        #expect(request.cluster == "plane.test")
        #expect(request.backendID == nil)
        #expect(request.maxIdleSeconds == 30)
        #expect(request.metadata.isEmpty)
        #expect(request.executable.image == "img:tag")
        #expect(request.executable.env.isEmpty)
        #expect(request.executable.credentials == nil)
        #expect(request.executable.resourceLimits == ResourceLimits())
        #expect(request.executable.pullPolicy == .ifNotPresent)
        #expect(request.executable.port == nil)
        #expect(request.executable.effectivePort == 8080)
        #expect(request.executable.volumeMounts.isEmpty)
        #expect(request.requireBearerToken == false)
        #expect(request.lock == nil)
        // Re-encoded, the defaults are spelled out as a v0.3.10 peer writes them.
        let encoded = String(decoding: try WireEncoder().encode(request), as: UTF8.self)
        #expect(encoded == #"{"cluster":"plane.test","backend_id":null,"max_idle_secs":30,"metadata":{},"executable":{"image":"img:tag","env":{},"credentials":null,"resource_limits":{"cpu_period":null,"cpu_period_percent":null,"cpu_time_limit":null,"memory_limit_bytes":null},"pull_policy":"IfNotPresent","port":null},"require_bearer_token":false}"#)
    }

    @Test func v0310ScheduledWithoutSpawnedMeansSpawned() throws {
        let response = try WireDecoder().decode(ScheduleResponse.self, from: Self.fixture("ScheduleResponse.v0310", in: "decode-only"))
        guard case .scheduled(let scheduled) = response else { Issue.record("expected Scheduled"); return }
        #expect(scheduled.spawned)
        #expect(scheduled.bearerToken == "q3ZpW0aXc9N2LrT7uVb4Yk1Hs8Jd6F")
        #expect(String(decoding: try WireEncoder().encode(response), as: UTF8.self).hasSuffix(#""bearer_token":"q3ZpW0aXc9N2LrT7uVb4Yk1Hs8Jd6F","spawned":true}}"#))
    }

    @Test func heartbeatDefaultsAndUnknownKeysIgnored() throws {
        let status = try WireDecoder().decode(DroneStatusMessage.self, from: Self.fixture("DroneStatusMessage.minimal", in: "decode-only"))
        #expect(status.ready)
        #expect(status.state == .ready)
        #expect(status.runningBackends == nil)
        let encoded = String(decoding: try WireEncoder().encode(status), as: UTF8.self)
        #expect(!encoded.contains("running_backends"))
        #expect(!encoded.contains("extra"))
    }

    @Test func extensionFieldsAreOmittedWhenAbsent() throws {
        let request = ScheduleRequest(cluster: "plane.test", maxIdleSeconds: 10, executable: DockerExecutableConfig(image: "a"))
        let encoded = String(decoding: try WireEncoder().encode(request), as: UTF8.self)
        #expect(!encoded.contains("lock"))
        #expect(!encoded.contains("volume_mounts"))
        let scheduled = ScheduleResponse.scheduled(ScheduledBackend(drone: "d1", backendID: "b1"))
        #expect(String(decoding: try WireEncoder().encode(scheduled), as: UTF8.self) == #"{"Scheduled":{"drone":"d1","backend_id":"b1","spawned":true}}"#)
    }

    @Test func relayedTimeIsPreservedToTheNanosecond() throws {
        let update = try WireDecoder().decode(UpdateBackendStateMessage.self, from: Self.fixture("UpdateBackendStateMessage"))
        #expect(update.time.nanoseconds == 518_207_339)
        let relayed = String(decoding: try WireEncoder().encode(update.relayed), as: UTF8.self)
        #expect(relayed.contains(#""time":"2023-02-18T17:03:14.518207339Z""#))
        #expect(!relayed.contains("drone"))
    }
}
