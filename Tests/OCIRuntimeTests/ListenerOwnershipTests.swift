import ContainerRuntime
import Foundation
@testable import OCIRuntime
import PlaneCore
import PlaneTestSupport
@testable import ProcessSupervision
import Testing

/// With host networking the drone makes a backend's route only when the listener on its
/// port is the backend's own: real backends (runc), a listener of this test process (a
/// "neighbour" outside the backend's cgroup), and a port nobody listens on.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct ListenerOwnershipTests {
    @Test func procNetTCPLinesAreReadStrictly() {
        let listen = "   1: 00000000:5DC0 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0"
        #expect(ListenerOwnership.listeningInode(line: listen[...], port: 0x5DC0) == 12345)
        #expect(ListenerOwnership.listeningInode(line: listen[...], port: 0x5DC1) == nil)
        let established = listen.replacingOccurrences(of: " 0A ", with: " 01 ")
        #expect(ListenerOwnership.listeningInode(line: established[...], port: 0x5DC0) == nil)
        for bad in ["", "garbage", "  1: 0100007F:ZZZZ 00000000:0000 0A a b c d e f", "  1: 0100007F:5DC0 0:0 0A 0 0 0 0 0 notanumber"] {
            #expect(ListenerOwnership.listeningInode(line: bad[...], port: 0x5DC0) == nil)
        }
    }

    @Test func theBackendsOwnListenerIsTold() async throws {
        let (runtime, drone, image) = try await OCITestSetup.runtime(.runcLayout)
        let spec = BackendSpec(backendID: .random(), droneID: drone, image: image, port: UInt16(try TestEnvironment.freePort()),
                               network: .host(address: "127.0.0.1"))
        _ = try await runtime.start(spec)
        defer { Task { try? await runtime.stop(spec.backendID, grace: .seconds(1)); try? await runtime.remove(spec.backendID) } }
        _ = try await HTTPProbe(port: Int(spec.port)).waitUntilAnswering("/")
        let main = try #require(try await runtime.mainProcessID(of: spec.backendID))
        #expect(ListenerOwnership.check(port: spec.port, mainProcess: main) == .owned)
        // A listener of another cgroup (this test process) on another port.
        let neighbour = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(neighbour) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(neighbour, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        #expect(bound == 0 && listen(neighbour, 1) == 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(neighbour, $0, &length) } }
        let neighbourPort = UInt16(bigEndian: address.sin_port)
        #expect(ListenerOwnership.check(port: neighbourPort, mainProcess: main) == .foreign)
        #expect(ListenerOwnership.check(port: neighbourPort, mainProcess: getpid()) == .owned)
        #expect(ListenerOwnership.check(port: UInt16(try TestEnvironment.freePort()), mainProcess: main) == .noListener)
        #expect(ListenerOwnership.check(port: spec.port, mainProcess: Int32.max) == .unknown, "no such process")
    }
}
