import ContainerRuntime
@testable import OCIRuntime
import Testing

/// The pure parts of `network = "namespace"`: subnets, the address pool, names, and the
/// name resolution files of a backend. The namespaces themselves are made in
/// `OCINetworkNamespaceTests`, inside a network namespace of the test's own.
struct OCINetworkAddressingTests {
    /// The backend addresses of the next `count` pairs (nil once the pool is full).
    func allocate(_ count: Int, from pool: inout OCIAddressPool) -> [String?] {
        (0..<count).map { _ in pool.allocate().map { IPv4Subnet.format($0.backendAddress) } }
    }

    @Test func subnetsParseStrictly() throws {
        let subnet = try IPv4Subnet("10.213.0.0/16")
        #expect(subnet.base == 0x0AD5_0000 && subnet.prefixLength == 16 && subnet.size == 65_536)
        #expect(subnet.contains(IPv4Subnet.parse("10.213.255.255")!) && !subnet.contains(IPv4Subnet.parse("10.214.0.0")!))
        #expect((try IPv4Subnet("0.0.0.0/0")).size == 1 << 32)
        for bad in ["10.213.0.0", "10.213.0.0/33", "10.213.0/16", "10.213.0.0.0/16", "10.213.0.256/24", "+10.213.0.0/16", "10.213.0.1/16", "a.b.c.d/8", "/16"] {
            #expect(throws: RuntimeError.self, "\(bad)") { try IPv4Subnet(bad) }
        }
        #expect(IPv4Subnet.format(0xC0A8_0001) == "192.168.0.1")
        #expect(IPv4Subnet.parse("01.2.3.4") == 0x0102_0304 && IPv4Subnet.parse("1.2.3.-4") == nil && IPv4Subnet.parse("1234.2.3.4") == nil)
    }

    @Test func pairsGoRoundTheSubnetAndComeBackWhenReleased() throws {
        var pool = OCIAddressPool(subnet: try IPv4Subnet("192.168.7.0/29"))
        #expect(pool.capacity == 4)
        let allocated = pool.allocate()
        let first = try #require(allocated)
        #expect(IPv4Subnet.format(first.hostAddress) == "192.168.7.0" && IPv4Subnet.format(first.backendAddress) == "192.168.7.1")
        #expect(first.name == "planec0a80701" && first.name.count <= 15, "an interface name fits IFNAMSIZ")
        let second = allocate(1, from: &pool)
        #expect(second == ["192.168.7.3"])
        pool.release(backendAddress: first.backendAddress)
        // Round robin: the released pair is not the next one handed out, but comes back
        // once the others are taken; then the pool is full.
        let rest = allocate(4, from: &pool)
        #expect(rest == ["192.168.7.5", "192.168.7.7", "192.168.7.1", nil])
        #expect(pool.allocatedCount == 4)
    }

    @Test func claimsAfterARestartAreSkipped() throws {
        var pool = OCIAddressPool(subnet: try IPv4Subnet("10.0.0.0/30"))
        let claims = ["10.0.0.1", "10.0.0.2", "10.0.1.1"].map { pool.claim(backendAddress: IPv4Subnet.parse($0)!) }
        #expect(claims == [true, false, false], "a drone-side address and one outside the subnet are no backend's")
        #expect(pool.isAllocated(backendAddress: IPv4Subnet.parse("10.0.0.1")!))
        let next = allocate(2, from: &pool)
        #expect(next == ["10.0.0.3", nil])
    }

    @Test func namesMapBackToAddresses() {
        #expect(OCIAddressPool.backendAddress(ofName: "plane0ad50001") == 0x0AD5_0001)
        #expect(OCIAddressPool.backendAddress(ofName: "plane0AD50001") == nil, "only the names we make")
        #expect(OCIAddressPool.backendAddress(ofName: "plane0ad5000") == nil)
        #expect(OCIAddressPool.backendAddress(ofName: "docker0") == nil)
    }

    @Test func nameResolutionFilesOfABackend() {
        let hosts = OCINetworkNamespaces.hostsFile(address: "10.213.0.1", hostname: "plane-bk-1")
        #expect(hosts.contains("127.0.0.1\tlocalhost\n") && hosts.hasSuffix("10.213.0.1\tplane-bk-1\n"))
        let host = "# generated\nnameserver 127.0.0.53\nnameserver 192.0.2.53\nnameserver ::1\noptions edns0\nsearch example.com"
        #expect(OCINetworkNamespaces.resolvConf(host: host, nameservers: nil) == "# generated\nnameserver 192.0.2.53\noptions edns0\nsearch example.com\n",
                "loopback name servers are unreachable from a namespace")
        #expect(OCINetworkNamespaces.resolvConf(host: host, nameservers: ["198.51.100.1"]) == "nameserver 198.51.100.1\n")
        #expect(OCINetworkNamespaces.resolvConf(host: nil, nameservers: nil) == "")
    }
}
