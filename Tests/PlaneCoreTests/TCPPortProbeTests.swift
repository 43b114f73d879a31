#if canImport(Glibc)
import Glibc
#endif
import PlaneCore
import Testing

struct TCPPortProbeTests {
    @Test func aListeningPortIsTakenAndAcceptsAndAFreeOneIsNeither() throws {
        let port = try #require(TCPPortProbe.freePort())
        #expect(TCPPortProbe.canBind(port: port, address: "127.0.0.1"))
        #expect(!TCPPortProbe.accepts(port: port))
        // Listen on it.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        #expect(bound && listen(fd, 4) == 0)
        #expect(!TCPPortProbe.canBind(port: port, address: "127.0.0.1"))
        #expect(!TCPPortProbe.canBind(port: port, address: "0.0.0.0"))
        #expect(TCPPortProbe.accepts(port: port))
    }
}
