import Synchronization

/// The DNS server's open TCP connections, bounded in total and per client address
/// (`[dns] tcp_max_connections`, `tcp_max_connections_per_address`): one client cannot take
/// every place. Touched once when a connection opens and once when it closes.
final class DNSTCPConnectionTable: Sendable {
    enum Admission: Equatable {
        case admitted
        /// Every place is taken.
        case full
        /// This address holds its share.
        case addressFull
    }

    let limit: Int
    let limitPerAddress: Int
    private let state = Mutex<(total: Int, byAddress: [String: Int])>((0, [:]))

    init(limit: Int, limitPerAddress: Int) {
        self.limit = limit
        self.limitPerAddress = limitPerAddress
    }

    /// Takes a place for a connection from `address`; nothing is taken unless admitted.
    func admit(_ address: String) -> Admission {
        state.withLock { state in
            guard state.total < limit else { return .full }
            let held = state.byAddress[address, default: 0]
            guard held < limitPerAddress else { return .addressFull }
            state.total += 1
            state.byAddress[address] = held + 1
            return .admitted
        }
    }

    /// Gives back a place `admit` took for `address`.
    func release(_ address: String) {
        state.withLock { state in
            guard let held = state.byAddress[address] else { return }
            state.total -= 1
            state.byAddress[address] = held > 1 ? held - 1 : nil
        }
    }

    /// Connections holding a place now.
    var count: Int { state.withLock { $0.total } }
}
