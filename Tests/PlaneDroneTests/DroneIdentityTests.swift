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
        var info = stat()
        #expect(stat(directory, &info) == 0 && info.st_mode & 0o7777 == 0o700, "the state directory is the drone's alone")
        // One an earlier version made readable is narrowed.
        chmod(directory, 0o755)
        try PrivateFiles.directory(directory)
        #expect(stat(directory, &info) == 0 && info.st_mode & 0o7777 == 0o700)
        // A damaged file is an error naming it, never a silent new identity.
        try "Not An Id".write(toFile: directory + "/drone_id", atomically: true, encoding: .utf8)
        #expect(throws: DroneError.self) { try DroneIdentity.load(stateDirectory: directory) }
    }
}
