import ContainerRuntime

/// The addresses of backend network namespaces: the subnet is cut into pairs of two
/// (a /31 link each), the even address for the drone's end of the backend's veth link, the
/// odd one for the backend. Pure bookkeeping; `OCINetworkNamespaces` makes the links.
struct OCIAddressPool: Sendable {
    struct Pair: Sendable, Hashable {
        /// The drone's end of the link.
        let hostAddress: UInt32
        /// The backend's address.
        let backendAddress: UInt32

        /// The name of both the namespace (`/run/netns/{name}`) and the drone's end of the
        /// link: `plane` and the backend's address in hex, 13 characters (interface names
        /// may have 15), unique on a host as long as its drones' subnets do not overlap.
        var name: String { OCIAddressPool.name(of: backendAddress) }
    }

    let subnet: IPv4Subnet
    private var used: Set<UInt64> = []
    private var next: UInt64 = 0

    init(subnet: IPv4Subnet) { self.subnet = subnet }

    /// How many backends the subnet has room for.
    var capacity: UInt64 { subnet.size / 2 }

    var allocatedCount: Int { used.count }

    /// A free pair, going round the subnet so a released address is not handed out again
    /// at once (connections to the old backend may linger); nil when all are taken.
    mutating func allocate() -> Pair? {
        guard UInt64(used.count) < capacity else { return nil }
        for _ in 0..<capacity {
            let index = next
            next = (next + 1) % capacity
            if used.insert(index).inserted { return pair(index) }
        }
        return nil
    }

    /// Marks the pair of `backendAddress` as taken (a backend found after a restart);
    /// false when the address is not a backend address of this subnet.
    @discardableResult
    mutating func claim(backendAddress: UInt32) -> Bool {
        guard let index = index(of: backendAddress) else { return false }
        used.insert(index)
        return true
    }

    mutating func release(backendAddress: UInt32) {
        if let index = index(of: backendAddress) { used.remove(index) }
    }

    func isAllocated(backendAddress: UInt32) -> Bool {
        index(of: backendAddress).map(used.contains) ?? false
    }

    /// The pair whose backend address is `backendAddress`, if that is one in this subnet.
    func index(of backendAddress: UInt32) -> UInt64? {
        guard subnet.contains(backendAddress), backendAddress & 1 == 1 else { return nil }
        return UInt64(backendAddress - subnet.base) / 2
    }

    func pair(_ index: UInt64) -> Pair {
        let host = subnet.address(at: index * 2)
        return Pair(hostAddress: host, backendAddress: host + 1)
    }

    static let namePrefix = "plane"

    static func name(of backendAddress: UInt32) -> String {
        let hex = String(backendAddress, radix: 16)
        return namePrefix + String(repeating: "0", count: 8 - hex.count) + hex
    }

    /// The backend address a namespace or interface name stands for, if it is one of ours.
    static func backendAddress(ofName name: String) -> UInt32? {
        guard name.hasPrefix(namePrefix), name.count == namePrefix.count + 8 else { return nil }
        let hex = name.dropFirst(namePrefix.count)
        guard hex.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }) else { return nil }
        return UInt32(hex, radix: 16)
    }
}
