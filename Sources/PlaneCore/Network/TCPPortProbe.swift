#if canImport(Glibc)
import Glibc
#endif

/// Small checks of IPv4 TCP ports on this machine: can a port be bound, which port is
/// free, does something accept connections. One place for what the drone (port
/// reservation), `plane dev` (free ports, readiness) and the tests need.
public enum TCPPortProbe {
    /// Whether a TCP socket can bind `port` on `address` (dotted quad; `0.0.0.0`: any).
    public static func canBind(port: Int, address: String = "0.0.0.0") -> Bool {
        withSocket { fd in
            var socketAddress = makeAddress(address, port: port)
            return withUnsafePointer(to: &socketAddress) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
            }
        }
    }

    /// A port on `address` that the kernel reports free (bound to port 0, then released).
    public static func freePort(address: String = "127.0.0.1") -> Int? {
        var port: Int?
        _ = withSocket { fd in
            var socketAddress = makeAddress(address, port: 0)
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let bound = withUnsafeMutablePointer(to: &socketAddress) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
            }
            if bound { port = Int(UInt16(bigEndian: socketAddress.sin_port)) }
            return bound
        }
        return port
    }

    /// Whether something accepts TCP connections on `address`:`port` (a blocking connect).
    public static func accepts(port: Int, address: String = "127.0.0.1") -> Bool {
        withSocket { fd in
            var socketAddress = makeAddress(address, port: port)
            return withUnsafePointer(to: &socketAddress) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
            }
        }
    }

    static func withSocket(_ body: (Int32) -> Bool) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return body(fd)
    }

    static func makeAddress(_ text: String, port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(clamping: port).bigEndian)
        address.sin_addr.s_addr = inet_addr(text)
        return address
    }
}
