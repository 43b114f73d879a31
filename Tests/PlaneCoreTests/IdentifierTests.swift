import Testing
@testable import PlaneCore

struct IdentifierTests {
    @Test("valid backend ids", arguments: ["a", "0", "my-backend", "4dea4037-3d2d-4e12-95f9-a2864d9ba8dd", String(repeating: "x", count: 63)])
    func validBackendIDs(text: String) throws {
        #expect(try BackendID(text).rawValue == text)
    }

    @Test("invalid backend ids", arguments: ["", "-a", "a-", "A", "a.b", "a*b", "a>b", "a b", "a_b", "ü", String(repeating: "x", count: 64)])
    func invalidBackendIDs(text: String) throws {
        let error = try #require(throws: PlaneCoreError.self) { try BackendID(text) }
        #expect(error.code == .invalidBackendID)
        #expect(error.message.contains("a-z, 0-9 and '-'"))
    }

    @Test func droneIDsFollowTheSameRules() throws {
        let good = "b2cdfb71-b2a8-4d89-9dcd-bb7a4cbbddd4", bad = "Drone.1"
        #expect(throws: Never.self) { try DroneID(good) }
        let error = try #require(throws: PlaneCoreError.self) { try DroneID(bad) }
        #expect(error.code == .invalidDroneID)
    }

    @Test func randomIDsAreValidV4UUIDs() throws {
        let ids = (0..<100).map { _ in BackendID.random().rawValue }
        #expect(Set(ids).count == 100)
        for id in ids {
            #expect(try BackendID(id).rawValue == id)
            #expect(id.count == 36)
            #expect(Array(id)[14] == "4")
        }
        #expect(try DroneID(DroneID.random().rawValue).rawValue.count == 36)
    }

    @Test("valid cluster names", arguments: ["plane.test", "localhost", "a.b.c.d", "x-1.example.com"])
    func validClusters(text: String) throws {
        #expect(try ClusterName(text).rawValue == text)
    }

    @Test("invalid cluster names", arguments: ["", ".", "a..b", "plane.test.", "plane_test", "Plane.Test", "a.-b", "a b", "*.test", String(repeating: "a.", count: 127) + "a"])
    func invalidClusters(text: String) throws {
        let error = try #require(throws: PlaneCoreError.self) { try ClusterName(text) }
        #expect(error.code == .invalidClusterName)
    }

    @Test func clusterSubjectForm() {
        #expect(ClusterName("plane.test").subjectForm == "plane_test")
        #expect(ClusterName("a.b.c").subjectForm == "a_b_c")
        #expect(ClusterName("plane.test").hostname(of: "abc") == "abc.plane.test")
    }

    @Test func lockRules() throws {
        let empty = ""
        #expect(throws: PlaneCoreError.self) { try LockName(empty) }
        #expect(throws: PlaneCoreError.self) { try LockName(String(repeating: "é", count: 1025)) }
        #expect(throws: Never.self) { try LockName(String(repeating: "a", count: 2048)) }
        let lock: LockName = "doc/ümlaut 42.*>"
        let token = lock.encodedToken
        #expect(token.allSatisfy { $0.isLetter && $0.isASCII || $0.isNumber || $0 == "-" || $0 == "_" })
        #expect(try LockName(encodedToken: token) == lock)
        #expect(LockName("a").encodedToken != LockName("b").encodedToken)
        #expect(throws: PlaneCoreError.self) { try LockName(encodedToken: "!!") }
    }

    @Test func base64URLRoundTrips() {
        for length in 0..<40 {
            let bytes = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
            #expect(Base64URL.decode(Base64URL.encode(bytes)) == bytes)
        }
        #expect(Base64URL.encode(Array("hello".utf8)) == "aGVsbG8")
    }
}
