import NIOCore
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// `DNSResponseRateLimit` for the UDP sockets of one server, which answer on several threads:
/// a fixed table of 65,536 slots (about 800 KB) in stripes with a lock each, so two threads
/// rarely wait for each other. A client network's slot is a hash of its prefix with this
/// process's random seed (Swift's `Hasher`), so an attacker cannot choose which networks
/// share a slot with theirs.
final class DNSResponseRateLimiter: Sendable {
    static let stripeCount = 16
    static let slotsPerStripe = 4096

    let limit: DNSResponseRateLimit
    private let stripes: [Stripe]

    final class Stripe: Sendable {
        let table: Mutex<DNSRateLimitTable>
        init(_ table: DNSRateLimitTable) { self.table = Mutex(table) }
    }

    init(limit: DNSResponseRateLimit) {
        self.limit = limit
        stripes = (0..<Self.stripeCount).map { _ in Stripe(DNSRateLimitTable(slots: Self.slotsPerStripe, limit: limit)) }
    }

    /// The decision for one query from `client` at `now` (monotonic nanoseconds). A source
    /// that is not an IP address (never for UDP) is answered.
    func decide(for client: SocketAddress, now: Int64) -> DNSRateLimitTable.Decision {
        guard let hash = networkHash(of: client) else { return .answer }
        let bits = UInt(bitPattern: hash)
        let stripe = stripes[Int(bits % UInt(Self.stripeCount))]
        let slot = Int(bits / UInt(Self.stripeCount) % UInt(Self.slotsPerStripe))
        return stripe.table.withLock { $0.decide(slot: slot, now: now) }
    }

    /// The hash of the client's network: its address cut to the configured prefix.
    func networkHash(of client: SocketAddress) -> Int? {
        var hasher = Hasher()
        switch client {
        case .v4(let address):
            combine(ipv4: UInt32(bigEndian: address.address.sin_addr.s_addr), into: &hasher)
        case .v6(let address):
            var high: UInt64 = 0
            var low: UInt64 = 0
            withUnsafeBytes(of: address.address.sin6_addr) { bytes in
                for index in 0..<min(bytes.count, 16) {
                    if index < 8 {
                        high = high << 8 | UInt64(bytes[index])
                    } else {
                        low = low << 8 | UInt64(bytes[index])
                    }
                }
            }
            // An IPv4 client of a dual-stack socket (`bind_ip = "::"`) comes as ::ffff:a.b.c.d;
            // its network is its IPv4 one (under the IPv6 prefix every IPv4 client would share one).
            if high == 0, low >> 32 == 0xFFFF {
                combine(ipv4: UInt32(truncatingIfNeeded: low), into: &hasher)
                break
            }
            let prefix = min(max(limit.ipv6PrefixLength, 0), 128)
            hasher.combine(UInt8(6))
            hasher.combine(high & Self.mask64(prefix: min(prefix, 64)))
            hasher.combine(low & Self.mask64(prefix: max(prefix - 64, 0)))
        case .unixDomainSocket:
            return nil
        }
        return hasher.finalize()
    }

    private func combine(ipv4 host: UInt32, into hasher: inout Hasher) {
        hasher.combine(UInt8(4))
        hasher.combine(host & Self.mask32(prefix: limit.ipv4PrefixLength))
    }

    /// The top `prefix` bits set (0...32; out of range is clamped).
    static func mask32(prefix: Int) -> UInt32 {
        let bits = min(max(prefix, 0), 32)
        return bits == 0 ? 0 : UInt32.max << UInt32(32 - bits)
    }

    /// The top `prefix` bits set (0...64; out of range is clamped).
    static func mask64(prefix: Int) -> UInt64 {
        let bits = min(max(prefix, 0), 64)
        return bits == 0 ? 0 : UInt64.max << UInt64(64 - bits)
    }
}
