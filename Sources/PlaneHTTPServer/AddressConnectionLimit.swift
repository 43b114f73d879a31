import NIOCore
import Synchronization

/// Connections a server holds at once, bounded in total and per client, so that one client
/// cannot take every place (the proxy's `[proxy] max_connections` and
/// `max_connections_per_address`, DNS over TCP's `[dns] tcp_max_connections` and
/// `tcp_max_connections_per_address`). A client is its IPv4 address, or its IPv6 /64 (one
/// host is commonly given a whole /64 and can use any address in it). Touched once when a
/// connection opens and once when it closes, never per request.
public final class AddressConnectionLimit: Sendable {
    public enum Admission: Sendable, Equatable {
        case admitted
        /// Every place is taken.
        case full
        /// This client holds its share.
        case addressFull
    }

    public let limit: Int
    public let limitPerAddress: Int
    private let state = Mutex<(total: Int, byClient: [Client: Int])>((0, [:]))

    public init(limit: Int, limitPerAddress: Int) {
        self.limit = limit
        self.limitPerAddress = limitPerAddress
    }

    /// Whom a connection counts against: an IPv4 address (also one mapped into IPv6 by a
    /// dual-stack socket) or an IPv6 /64; everything else (a Unix socket, no address) is
    /// one client.
    public struct Client: Sendable, Hashable {
        let high: UInt64
        let low: UInt64

        public init(_ address: SocketAddress?) {
            switch address {
            case .v4(let v4)?:
                (high, low) = (0, 0xFFFF_0000_0000 | UInt64(UInt32(bigEndian: v4.address.sin_addr.s_addr)))
            case .v6(let v6)?:
                var high: UInt64 = 0, low: UInt64 = 0
                withUnsafeBytes(of: v6.address.sin6_addr) { bytes in
                    for index in 0..<min(bytes.count, 16) {
                        if index < 8 { high = high << 8 | UInt64(bytes[index]) } else { low = low << 8 | UInt64(bytes[index]) }
                    }
                }
                // ::ffff:a.b.c.d is an IPv4 client; any other address counts by its /64.
                (self.high, self.low) = high == 0 && low >> 32 == 0xFFFF ? (0, low) : (high, 0)
            default:
                (high, low) = (0, 0)
            }
        }
    }

    /// Takes a place for a connection from `client`; nothing is taken unless admitted.
    public func admit(_ client: Client) -> Admission {
        state.withLock { state in
            guard state.total < limit else { return .full }
            let held = state.byClient[client, default: 0]
            guard held < limitPerAddress else { return .addressFull }
            state.total += 1
            state.byClient[client] = held + 1
            return .admitted
        }
    }

    /// Gives back a place `admit` took for `client`.
    public func release(_ client: Client) {
        state.withLock { state in
            guard let held = state.byClient[client] else { return }
            state.total -= 1
            state.byClient[client] = held > 1 ? held - 1 : nil
        }
    }

    /// Connections holding a place now.
    public var count: Int { state.withLock { $0.total } }
}
