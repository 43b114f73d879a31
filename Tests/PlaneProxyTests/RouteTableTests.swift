import NIOEmbedded
import PlaneCore
import Testing
@testable import PlaneProxy

struct RouteTableTests {
    @Test func routesActivityAndIdleTime() {
        let table = RouteTable()
        let id = BackendID.random()
        #expect(table.route(for: id.rawValue) == nil && table.idleTime(of: id) == nil)
        table.add(RouteTable.Route(backendID: id, address: "127.0.0.1:30001", bearerToken: "t"))
        #expect(table.route(for: id.rawValue.uppercased())?.address == "127.0.0.1:30001")
        let later = ContinuousClock.now + .seconds(30)
        #expect(table.idleTime(of: id, now: later)! >= .seconds(29))
        // An open connection keeps it busy however long ago the last request was.
        table.connection(id, opened: true)
        #expect(table.idleTime(of: id, now: later + .seconds(600)) == .zero)
        table.connection(id, opened: false)
        #expect(table.idleTime(of: id, now: later)! > .seconds(25))
        table.recordActivity(id)
        #expect(table.idleTime(of: id, now: .now)! < .seconds(1))
        // Activity is flushed once.
        #expect(table.takeDirtyActivity().keys.contains(id))
        #expect(table.takeDirtyActivity().isEmpty)
        table.remove(id)
        #expect(table.route(for: id.rawValue) == nil && table.count == 0)
    }

    @Test func restoredRoutesKeepTheirIdleClock() {
        let table = RouteTable()
        let id = BackendID.random()
        let tenMinutesAgo = Timestamp(nanosecondsSinceEpoch: Timestamp.now().nanosecondsSinceEpoch - 600_000_000_000)
        table.add(RouteTable.Route(backendID: id, address: "127.0.0.1:30002", bearerToken: nil), lastActive: tenMinutesAgo)
        #expect(table.idleTime(of: id)! >= .seconds(599))
    }

    /// A connection's cached lookup is used while the routes are unchanged and looked up
    /// again after any route is added or removed.
    @Test func cachedLookupsFollowRouteChanges() {
        let table = RouteTable()
        let id = BackendID.random()
        var cache = RouteTable.Cache()
        #expect(table.route(for: id.rawValue, cache: &cache) == nil)
        table.add(RouteTable.Route(backendID: id, address: "127.0.0.1:30003", bearerToken: nil))
        #expect(table.route(for: id.rawValue, cache: &cache)?.address == "127.0.0.1:30003")
        // Activity is no route change: the cached answer stays.
        table.recordActivity(id)
        #expect(table.route(for: id.rawValue, cache: &cache)?.address == "127.0.0.1:30003")
        table.add(RouteTable.Route(backendID: id, address: "127.0.0.1:30004", bearerToken: nil))
        #expect(table.route(for: id.rawValue, cache: &cache)?.address == "127.0.0.1:30004")
        // Another subdomain through the same cache.
        #expect(table.route(for: "other", cache: &cache) == nil)
        #expect(table.route(for: id.rawValue, cache: &cache)?.address == "127.0.0.1:30004")
        table.remove(id)
        #expect(table.route(for: id.rawValue, cache: &cache) == nil)
    }

    /// An open exchange makes the backend's idle time zero; the count survives a route
    /// being replaced (a restart's re-add) and never reads below zero.
    @Test func openExchangesMakeTheIdleTimeZero() throws {
        let table = RouteTable()
        let id: BackendID = "busy"
        table.add(RouteTable.Route(backendID: id, address: "127.0.0.1:1", bearerToken: nil), lastActive: Timestamp(secondsSinceEpoch: 0))
        var cache = RouteTable.Cache()
        #expect(table.route(for: "busy", cache: &cache) != nil)
        let exchanges = try #require(cache.exchanges)
        #expect(try #require(table.idleTime(of: id)) > .seconds(1_000_000))
        exchanges.open()
        exchanges.open()
        #expect(table.idleTime(of: id) == .zero)
        table.add(RouteTable.Route(backendID: id, address: "127.0.0.1:2", bearerToken: nil), lastActive: Timestamp(secondsSinceEpoch: 0))
        #expect(table.idleTime(of: id) == .zero, "the open exchanges outlive the route's replacement")
        exchanges.close()
        #expect(table.idleTime(of: id) == .zero)
        exchanges.close()
        #expect(try #require(table.idleTime(of: id)) > .seconds(1_000_000))
    }

    @Test func startingBackendsAndTheirWaiters() throws {
        let table = RouteTable(maxHeldRequests: 2)
        let loop = EmbeddedEventLoop()
        let id = BackendID.random()
        var cache = RouteTable.Cache()
        table.starting(id, bearerToken: "t")
        // A starting backend is found through the cache too, without an address.
        let entry = try #require(table.route(for: id.rawValue, cache: &cache))
        #expect(entry.isStarting && entry.address.isEmpty && entry.bearerToken == "t")
        #expect(table.route(for: id.rawValue) == nil)  // no Ready route yet
        table.setAccessTokens(["\(id).link"], of: id)
        #expect(table.route(for: id.rawValue, cache: &cache)?.accessTokens == ["\(id).link"])

        var immediate = RouteTable.StartOutcome.cancelled
        let first = try #require(table.waitUntilReady(id, on: loop, immediate: &immediate))
        let second = try #require(table.waitUntilReady(id, on: loop, immediate: &immediate))
        // Two wait (the limit): a third is refused at once.
        #expect(table.waitUntilReady(id, on: loop, immediate: &immediate) == nil && immediate == .overLimit)
        #expect(table.heldRequests == 2)
        table.stopWaiting(second)
        #expect(try second.outcome.wait() == .cancelled)
        #expect(table.heldRequests == 1)

        table.add(RouteTable.Route(backendID: id, address: "127.0.0.1:1", bearerToken: "t"))
        #expect(try first.outcome.wait() == .ready)
        // Stopping a wait that the table completed changes nothing.
        table.stopWaiting(first)
        #expect(table.heldRequests == 0 && !table.isStarting(id))
        let ready = try #require(table.route(for: id.rawValue, cache: &cache))
        #expect(!ready.isStarting && ready.address == "127.0.0.1:1")
        // A backend with a route is not starting again.
        table.starting(id, bearerToken: "t")
        #expect(!table.isStarting(id))

        // One that ends before Ready lets its waiters go with `ended`.
        let other = BackendID.random()
        table.starting(other, bearerToken: nil)
        let waiting = try #require(table.waitUntilReady(other, on: loop, immediate: &immediate))
        table.notStarting(other)
        #expect(try waiting.outcome.wait() == .ended)
        #expect(table.route(for: other.rawValue, cache: &cache) == nil)
    }

    @Test func tokensGivenBeforeTheEntryAreKeptForIt() throws {
        let table = RouteTable()
        let (starting, routed, ended) = (BackendID.random(), BackendID.random(), BackendID.random())
        var cache = RouteTable.Cache()
        // The agent stored a connect's token before the supervisor made the entry.
        table.setAccessTokens(["\(starting).a"], of: starting)
        table.starting(starting, bearerToken: "t", accessTokens: ["\(starting).b"])
        #expect(table.route(for: starting.rawValue, cache: &cache)?.accessTokens == ["\(starting).b", "\(starting).a"])
        table.setAccessTokens(["\(routed).a"], of: routed)
        table.add(RouteTable.Route(backendID: routed, address: "127.0.0.1:1", bearerToken: "t"))
        #expect(table.route(for: routed.rawValue)?.accessTokens == ["\(routed).a"])
        // Taken once; a backend that ended drops them.
        table.remove(routed)
        table.add(RouteTable.Route(backendID: routed, address: "127.0.0.1:1", bearerToken: "t"))
        #expect(table.route(for: routed.rawValue)?.accessTokens == [])
        table.setAccessTokens(["\(ended).a"], of: ended)
        table.notStarting(ended)
        table.starting(ended, bearerToken: "t")
        #expect(table.route(for: ended.rawValue, cache: &cache)?.accessTokens == [])
    }
}
