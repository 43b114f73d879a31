import Foundation
import PlaneCore
import PlaneTestSupport
import Testing
@testable import PlaneDrone

struct DroneIdentityTests {
    @Test func generatedOnceAndKept() throws {
        let directory = try TestEnvironment.temporaryDirectory("drone-identity") + "/state"
        let first = try DroneIdentity.load(stateDirectory: directory)
        #expect(try DroneIdentity.load(stateDirectory: directory) == first)
        #expect(try String(contentsOfFile: directory + "/drone_id", encoding: .utf8) == first.rawValue + "\n")
        // A damaged file is an error naming it, never a silent new identity.
        try "Not An Id".write(toFile: directory + "/drone_id", atomically: true, encoding: .utf8)
        #expect(throws: DroneError.self) { try DroneIdentity.load(stateDirectory: directory) }
    }
}
