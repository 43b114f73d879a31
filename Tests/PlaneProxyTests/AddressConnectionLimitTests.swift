import NIOCore
import PlaneHTTPServer
import Testing

/// Places in total and per client; a client is an IPv4 address (also mapped into IPv6) or
/// an IPv6 /64.
struct AddressConnectionLimitTests {
    func client(_ ip: String) throws -> AddressConnectionLimit.Client {
        AddressConnectionLimit.Client(try SocketAddress(ipAddress: ip, port: 443))
    }

    @Test func placesAreBoundedPerClientAndInTotal() throws {
        let limit = AddressConnectionLimit(limit: 5, limitPerAddress: 2)
        let a = try client("192.0.2.1"), b = try client("192.0.2.2")
        #expect(limit.admit(a) == .admitted && limit.admit(a) == .admitted)
        #expect(limit.admit(a) == .addressFull)
        #expect(limit.count == 2)
        #expect(limit.admit(b) == .admitted && limit.admit(b) == .admitted)
        #expect(limit.admit(try client("2001:db8::1")) == .admitted)
        #expect(limit.admit(try client("2001:db8:1::1")) == .full)
        limit.release(a)
        #expect(limit.count == 4)
        #expect(limit.admit(a) == .admitted)
        // A release for a client without places takes nothing.
        limit.release(try client("198.51.100.7"))
        #expect(limit.count == 5)
    }

    @Test func aClientIsAnIPv4AddressOrAnIPv6Network() throws {
        #expect(try client("192.0.2.1") == client("::ffff:192.0.2.1"))
        #expect(try client("192.0.2.1") != client("192.0.2.2"))
        #expect(try client("2001:db8:0:1::1") == client("2001:db8:0:1:ffff:ffff:ffff:ffff"))
        #expect(try client("2001:db8:0:1::1") != client("2001:db8:0:2::1"))
        #expect(try client("::1") != client("127.0.0.1"))
        #expect(AddressConnectionLimit.Client(nil) == AddressConnectionLimit.Client(nil))
    }
}
