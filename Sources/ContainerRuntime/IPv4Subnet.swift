
/// An IPv4 network in CIDR notation (`10.213.0.0/16`), for the addresses of backend
/// network namespaces.
public struct IPv4Subnet: Sendable, Hashable, CustomStringConvertible {
    /// The network address (host bits zero).
    public let base: UInt32
    public let prefixLength: Int

    /// Parses `a.b.c.d/n`; host bits must be zero, so a typo is not silently widened.
    public init(_ text: String) throws(RuntimeError) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let address = Self.parse(String(parts[0])), let length = Int(parts[1]), (0...32).contains(length) else {
            throw RuntimeError(.invalidSpec, "'\(text)' is not an IPv4 subnet in CIDR notation (like 10.213.0.0/16).")
        }
        let mask: UInt32 = length == 0 ? 0 : ~UInt32(0) << UInt32(32 - length)
        guard address & ~mask == 0 else {
            throw RuntimeError(.invalidSpec, "'\(text)' has host bits set; the network is \(Self.format(address & mask))/\(length).")
        }
        base = address
        prefixLength = length
    }

    public init(base: UInt32, prefixLength: Int) {
        self.base = base
        self.prefixLength = prefixLength
    }

    /// How many addresses the subnet holds.
    public var size: UInt64 { UInt64(1) << UInt64(32 - prefixLength) }

    /// The address `offset` places after the network address.
    public func address(at offset: UInt64) -> UInt32 { base &+ UInt32(truncatingIfNeeded: offset) }

    public func contains(_ address: UInt32) -> Bool { address >= base && UInt64(address - base) < size }

    public var description: String { "\(Self.format(base))/\(prefixLength)" }

    /// Dotted-quad text of an address.
    public static func format(_ address: UInt32) -> String {
        "\(address >> 24).\((address >> 16) & 0xff).\((address >> 8) & 0xff).\(address & 0xff)"
    }

    /// An address from dotted-quad text (exactly four decimal parts of 0–255).
    public static func parse(_ text: String) -> UInt32? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var value: UInt32 = 0
        for part in parts {
            guard !part.isEmpty, part.count <= 3, part.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let byte = UInt32(part), byte <= 255 else { return nil }
            value = value << 8 | byte
        }
        return value
    }
}
