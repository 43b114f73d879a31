import NIOCore
import PlaneCore
import Synchronization

/// The routes the proxy serves, in memory: looked up on every request without touching
/// SQLite, fed by the agent (a route appears when its backend is `Ready` and goes when it
/// leaves), and told about activity by the proxy. The agent's idle sweep reads the activity;
/// `DroneStore` keeps a copy (flushed by the agent) for restarts.
public final class RouteTable: Sendable {
    public struct Route: Sendable, Hashable {
        public var backendID: BackendID
        /// `host:port` of the backend.
        public var address: String
        /// Requests must carry this token when set.
        public var bearerToken: String?
        /// Per-connect access tokens, accepted beside `bearerToken` (issue 15).
        public var accessTokens: [String]
        /// The backend is `Loading` or `Starting`: no address yet. The proxy holds a
        /// request for it (after its token check) until it is `Ready` or gone.
        public var isStarting: Bool

        public init(backendID: BackendID, address: String, bearerToken: String?, accessTokens: [String] = []) {
            self.backendID = backendID
            self.address = address
            self.bearerToken = bearerToken
            self.accessTokens = accessTokens
            self.isStarting = false
        }

        /// The entry of a backend that is starting.
        static func starting(_ backendID: BackendID, bearerToken: String?, accessTokens: [String]) -> Route {
            var route = Route(backendID: backendID, address: "", bearerToken: bearerToken, accessTokens: accessTokens)
            route.isStarting = true
            return route
        }
    }

    /// How the wait for a starting backend ended.
    public enum StartOutcome: Sendable, Hashable {
        /// It is `Ready`: its route is in the table.
        case ready
        /// It ended (or left the table) before it was `Ready`.
        case ended
        /// The waiter gave up (its timeout, or its client went).
        case cancelled
        /// Too many requests wait already (`max_held_requests`).
        case overLimit
    }

    /// A request waiting for a starting backend: `outcome` is completed exactly once, by
    /// the table (the backend is Ready or gone) or by `stopWaiting` (whoever takes it out
    /// of the table first).
    public struct StartWait: Sendable {
        let backend: String
        let id: UInt64
        public let outcome: EventLoopFuture<StartOutcome>
    }

    /// A starting backend's token facts and the requests waiting for it.
    struct Starting {
        var route: Route
        var waiters: [UInt64: EventLoopPromise<StartOutcome>] = [:]
    }

    struct StartingBackends {
        var byBackend: [String: Starting] = [:]
        var waiting = 0
        var nextID: UInt64 = 0
        /// Per-connect tokens given for a backend before it had an entry (its agent stored
        /// them before the supervisor made one): taken by `starting` or `add`.
        var earlyTokens: [String: [String]] = [:]
    }

    /// Most backends with early tokens kept (the agent gives tokens only for backends it
    /// supervises, so this is never reached in practice).
    static let maxEarlyTokenBackends = 10_000

    /// The exchanges (a request and its response) open at a backend right now, counted by
    /// the proxy without the table's lock: an atomic per route, found through each client
    /// connection's `Cache`. A backend with an open exchange is not idle.
    final class OpenExchanges: Sendable {
        let count = Atomic<Int>(0)

        /// An exchange began (its request was routed here).
        func open() { count.wrappingAdd(1, ordering: .relaxed) }
        /// An exchange ended (its response was written to the client, or either side went).
        func close() { count.wrappingSubtract(1, ordering: .relaxed) }
        var isEmpty: Bool { count.load(ordering: .relaxed) <= 0 }
    }

    struct Entry {
        var route: Route
        var lastActive: ContinuousClock.Instant
        var lastActiveWallClock: Timestamp
        /// Open upgraded connections (WebSockets): a backend with one is not idle.
        var openConnections: Int
        /// Open exchanges: a backend with one is not idle either.
        let exchanges: OpenExchanges
        var dirty: Bool

        mutating func markActive(at now: ContinuousClock.Instant, wallClock: Timestamp) {
            lastActive = now
            lastActiveWallClock = wallClock
            dirty = true
        }
    }

    private let entries = Mutex<[String: Entry]>([:])
    /// Backends that are `Loading` or `Starting`, with the requests held for them.
    private let starting = Mutex(StartingBackends())
    /// Most requests held for starting backends at once (all backends together).
    public let maxHeldRequests: Int
    /// Counts changes of the routes (not of their activity): a `Cache` holding a lookup
    /// from the same generation needs no lock.
    private let generation = Atomic<UInt64>(0)

    /// One connection's last lookup. Keep-alive connections ask for the same route again
    /// and again; while the table's routes are unchanged the answer is the cached one,
    /// without taking the table's lock (which every event loop thread would share).
    struct Cache {
        fileprivate var key = ""
        fileprivate var generation = UInt64.max
        fileprivate var route: Route?
        /// The open-exchange counter of `route`.
        fileprivate(set) var exchanges: OpenExchanges?
    }

    public init(maxHeldRequests: Int = 4096) {
        self.maxHeldRequests = maxHeldRequests
    }

    /// The route for `subdomain` (the backend id in the host name), if its backend is Ready.
    public func route(for subdomain: String) -> Route? {
        let key = subdomain.utf8.contains(where: { $0 >= 0x41 && $0 <= 0x5A }) ? subdomain.lowercased() : subdomain
        return entries.withLock { $0[key]?.route }
    }

    /// The route of a Ready backend, else the entry of a starting one (`isStarting`).
    private func lookup(_ key: String) -> (Route, OpenExchanges?)? {
        if let entry = entries.withLock({ $0[key].map { ($0.route, $0.exchanges) } }) { return (entry.0, entry.1) }
        return starting.withLock { $0.byBackend[key].map { ($0.route, nil) } }
    }

    /// `route(for:)` through a connection's cache. The generation is read before the
    /// lookup, so a change racing with it makes the next call look up again.
    func route(for subdomain: String, cache: inout Cache) -> Route? {
        let current = generation.load(ordering: .acquiring)
        if cache.generation == current, cache.key == subdomain { return cache.route }
        let key = subdomain.utf8.contains(where: { $0 >= 0x41 && $0 <= 0x5A }) ? subdomain.lowercased() : subdomain
        let entry = lookup(key)
        cache = Cache(key: subdomain, generation: current, route: entry?.0, exchanges: entry?.1)
        return entry?.0
    }

    // MARK: Starting backends

    /// The backend is `Loading` or `Starting` (again, after a drone restart): requests for
    /// it are held until it is Ready. Without effect for a backend that has a route.
    public func starting(_ backend: BackendID, bearerToken: String?, accessTokens: [String] = []) {
        let key = backend.rawValue
        guard entries.withLock({ $0[key] == nil }) else { return }
        starting.withLock {
            let early = $0.earlyTokens.removeValue(forKey: key) ?? []
            if $0.byBackend[key] == nil {
                $0.byBackend[key] = Starting(route: .starting(backend, bearerToken: bearerToken, accessTokens: Self.union(accessTokens, early)))
            }
        }
        generation.wrappingAdd(1, ordering: .releasing)
    }

    /// The backend ended (or will not be Ready): the requests held for it are let go of.
    public func notStarting(_ backend: BackendID) {
        starting.withLock { _ = $0.earlyTokens.removeValue(forKey: backend.rawValue) }
        finishStarting(backend.rawValue, outcome: .ended)
    }

    /// Whether the backend is starting (for tests and the agent).
    public func isStarting(_ backend: BackendID) -> Bool {
        starting.withLock { $0.byBackend[backend.rawValue] != nil }
    }

    /// Requests held right now.
    public var heldRequests: Int { starting.withLock { $0.waiting } }

    /// Holds a request for a starting backend: the wait's outcome completes on `eventLoop`.
    /// Nil when the outcome is known at once (`immediate`): Ready meanwhile, gone, or too
    /// many waiting.
    public func waitUntilReady(_ backend: BackendID, on eventLoop: any EventLoop, immediate: inout StartOutcome) -> StartWait? {
        let key = backend.rawValue
        enum Registration { case registered(UInt64, EventLoopPromise<StartOutcome>), notStarting, overLimit }
        let registration = starting.withLock { state -> Registration in
            guard state.byBackend[key] != nil else { return .notStarting }
            guard state.waiting < maxHeldRequests else { return .overLimit }
            state.nextID &+= 1
            state.waiting += 1
            let promise = eventLoop.makePromise(of: StartOutcome.self)
            state.byBackend[key]?.waiters[state.nextID] = promise
            return .registered(state.nextID, promise)
        }
        switch registration {
        case .registered(let id, let promise):
            return StartWait(backend: key, id: id, outcome: promise.futureResult)
        case .overLimit:
            immediate = .overLimit
        case .notStarting:
            immediate = entries.withLock { $0[key] != nil } ? .ready : .ended
        }
        return nil
    }

    /// The waiter gives up: its outcome becomes `.cancelled` unless the table completed it.
    public func stopWaiting(_ wait: StartWait) {
        let promise = starting.withLock { state -> EventLoopPromise<StartOutcome>? in
            guard let promise = state.byBackend[wait.backend]?.waiters.removeValue(forKey: wait.id) else { return nil }
            state.waiting -= 1
            return promise
        }
        promise?.succeed(.cancelled)
    }

    private func finishStarting(_ key: String, outcome: StartOutcome) {
        let waiters = starting.withLock { state -> [EventLoopPromise<StartOutcome>] in
            guard let entry = state.byBackend.removeValue(forKey: key) else { return [] }
            state.waiting -= entry.waiters.count
            return Array(entry.waiters.values)
        }
        generation.wrappingAdd(1, ordering: .releasing)
        for promise in waiters { promise.succeed(outcome) }
    }

    /// Adds or replaces a route; the backend counts as active now (or at `lastActive`, for
    /// a route restored after a restart).
    public func add(_ route: Route, lastActive: Timestamp = .now()) {
        var route = route
        if let early = starting.withLock({ $0.earlyTokens.removeValue(forKey: route.backendID.rawValue) }) {
            route.accessTokens = Self.union(route.accessTokens, early)
        }
        let now = ContinuousClock.now
        let age = max(.zero, Timestamp.now().duration(since: lastActive))
        entries.withLock {
            $0[route.backendID.rawValue] = Entry(route: route, lastActive: now - age, lastActiveWallClock: lastActive, openConnections: 0,
                                                 exchanges: $0[route.backendID.rawValue]?.exchanges ?? OpenExchanges(), dirty: false)
            generation.wrappingAdd(1, ordering: .releasing)
        }
        // Requests held while it started go now.
        finishStarting(route.backendID.rawValue, outcome: .ready)
    }

    /// Replaces the per-connect access tokens of a backend's route (its activity stays).
    public func setAccessTokens(_ tokens: [String], of backend: BackendID) {
        let key = backend.rawValue
        let routed = entries.withLock {
            guard $0[key] != nil else { return false }
            $0[key]?.route.accessTokens = tokens
            return true
        }
        starting.withLock { state in
            if state.byBackend[key] != nil {
                state.byBackend[key]?.route.accessTokens = tokens
            } else if !routed, state.earlyTokens[key] != nil || state.earlyTokens.count < Self.maxEarlyTokenBackends {
                // No entry yet: kept for the one its supervisor is about to make.
                state.earlyTokens[key] = tokens
            }
        }
        generation.wrappingAdd(1, ordering: .releasing)
    }

    static func union(_ a: [String], _ b: [String]) -> [String] {
        b.isEmpty ? a : a + b.filter { !a.contains($0) }
    }

    /// The backend left `Ready` (or ended while starting): no route, and no request is held for it.
    public func remove(_ backend: BackendID) {
        entries.withLock {
            _ = $0.removeValue(forKey: backend.rawValue)
            generation.wrappingAdd(1, ordering: .releasing)
        }
        starting.withLock { _ = $0.earlyTokens.removeValue(forKey: backend.rawValue) }
        finishStarting(backend.rawValue, outcome: .ended)
    }

    /// A request reached the backend.
    public func recordActivity(_ backend: BackendID) {
        let now = ContinuousClock.now
        let wall = Timestamp.now()
        entries.withLock {
            // In place (one lookup, no copy of the entry).
            $0[backend.rawValue]?.markActive(at: now, wallClock: wall)
        }
    }

    /// A connection to the backend opened (`true`) or closed (`false`); both count as
    /// activity.
    public func connection(_ backend: BackendID, opened: Bool) {
        recordActivity(backend)
        entries.withLock {
            guard var entry = $0[backend.rawValue] else { return }
            entry.openConnections = max(0, entry.openConnections + (opened ? 1 : -1))
            $0[backend.rawValue] = entry
        }
    }

    /// How long the backend has been idle: zero while an exchange or an upgraded connection
    /// is open, else the time since the last request began or the last exchange or
    /// connection ended; nil without a route.
    public func idleTime(of backend: BackendID, now: ContinuousClock.Instant = .now) -> Duration? {
        entries.withLock {
            guard let entry = $0[backend.rawValue] else { return nil }
            return entry.openConnections > 0 || !entry.exchanges.isEmpty ? .zero : now - entry.lastActive
        }
    }

    /// Activity not yet persisted, cleared by the call.
    public func takeDirtyActivity() -> [BackendID: Timestamp] {
        entries.withLock { entries in
            var dirty: [BackendID: Timestamp] = [:]
            for (key, var entry) in entries where entry.dirty {
                dirty[entry.route.backendID] = entry.lastActiveWallClock
                entry.dirty = false
                entries[key] = entry
            }
            return dirty
        }
    }

    public var count: Int { entries.withLock { $0.count } }
}
