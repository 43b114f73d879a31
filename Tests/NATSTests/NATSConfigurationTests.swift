import Testing
@testable import NATS

struct NATSConfigurationTests {
    @Test func serverURLs() throws {
        let plain = try NATSServerURL("nats://127.0.0.1:4333")
        #expect(plain.host == "127.0.0.1" && plain.port == 4333 && !plain.requiresTLS)
        #expect(try NATSServerURL("nats://example.org").port == 4222)
        #expect(try NATSServerURL("localhost").host == "localhost")
        let token = try NATSServerURL("nats://s3cret@host:1")
        #expect(token.user == "s3cret" && token.password == nil)
        let userpass = try NATSServerURL("tls://u%40x:p%3Aw@[::1]:7")
        #expect(userpass.user == "u@x" && userpass.password == "p:w" && userpass.host == "::1" && userpass.port == 7 && userpass.requiresTLS)
        #expect(userpass.description == "tls://[::1]:7")
        for bad in ["http://x", "nats://", "nats://h:0", "nats://h:99999", "nats://h:x", "nats://h/path"] {
            #expect(throws: NATSError.self) { try NATSServerURL(bad) }
        }
    }

    @Test func connectPayloadCarriesAuth() {
        let server = NATSServerURL(host: "h")
        var config = NATSClientConfiguration(servers: [server], auth: .userPassword(user: "u\"1", password: "p"))
        config.name = "drone"
        let text = String(decoding: NATSClient.makeConnectPayload(configuration: config, server: server, info: NATSServerInfo()), as: UTF8.self)
        #expect(text.contains(#""user":"u\"1""#))
        #expect(text.contains(#""pass":"p""#))
        #expect(text.contains(#""headers":true"#) && text.contains(#""no_responders":true"#) && text.contains(#""verbose":false"#))
        let tokenServer = NATSServerURL(host: "h", user: "tok")
        let tokenText = String(decoding: NATSClient.makeConnectPayload(configuration: config, server: tokenServer, info: NATSServerInfo()), as: UTF8.self)
        #expect(tokenText.contains(#""auth_token":"tok""#) && !tokenText.contains("\"user\""))
    }

    struct FixedRandom: RandomNumberGenerator {
        mutating func next() -> UInt64 { UInt64.max / 2 }
    }

    @Test func serverPoolRotatesAndBacksOff() throws {
        let a = NATSServerURL(host: "a"), b = NATSServerURL(host: "b")
        var pool = ServerPool(servers: [a, b], baseWait: .milliseconds(100), maxWait: .milliseconds(350), jitter: 0)
        var rng = FixedRandom()
        let first = pool.next(using: &rng), second = pool.next(using: &rng), third = pool.next(using: &rng)
        #expect(first.0 == a && first.1 == .zero)
        #expect(second.0 == b && second.1 == .zero)
        #expect(third.0 == a && third.1 == .milliseconds(100))
        _ = pool.next(using: &rng)
        #expect(pool.next(using: &rng).1 == .milliseconds(200))
        _ = pool.next(using: &rng)
        #expect(pool.next(using: &rng).1 == .milliseconds(350), "capped at maxWait")
        pool.connected(to: b)
        pool.disconnected()
        #expect(pool.next(using: &rng) == (a, .zero), "after losing b, try the next server first, without delay")
        _ = pool.updateDiscovered(["nats://c:4222", "a:4222", "garbage:://"], current: a)
        #expect(pool.servers.map(\.host) == ["a", "b", "c"])
    }

    @Test func advertisedServersReplaceTheOnesAdvertisedBefore() throws {
        let a = NATSServerURL(host: "a", requiresTLS: true, user: "u", password: "p"), b = NATSServerURL(host: "b")
        var pool = ServerPool(servers: [a, b], baseWait: .milliseconds(100), maxWait: .milliseconds(350), jitter: 0)
        pool.connected(to: a)
        var change = pool.updateDiscovered(["c:4222", "nats://d:4222", "a:4222", "c:4222", "garbage:://"], current: a)
        #expect(pool.servers.map(\.host) == ["a", "b", "c", "d"])
        #expect(change == .init(added: 2, removed: 0, ignored: 0))
        let c = try #require(pool.servers.first { $0.host == "c" })
        #expect(c.requiresTLS && c.user == "u" && c.password == "p", "an advertised server is reached as the current one is")
        change = pool.updateDiscovered(["d:4222", "e:4222"], current: a)
        #expect(pool.servers.map(\.host) == ["a", "b", "d", "e"], "c is no longer advertised: dropped; the configured b stays")
        #expect(change == .init(added: 1, removed: 1, ignored: 0))
        // Connected to an advertised server that stops advertising itself: it stays.
        let e = pool.servers[3]
        pool.connected(to: e)
        change = pool.updateDiscovered(["d:4222"], current: e)
        #expect(pool.servers.map(\.host) == ["a", "b", "d", "e"])
        #expect(change == .init())
        #expect(pool.updateDiscovered([], current: e) == .init(), "an INFO without connect_urls changes nothing")
        pool.disconnected()
        #expect(pool.next().0 == a, "after losing e, the search goes on after it")
    }

    @Test func advertisedServersAreBounded() {
        let a = NATSServerURL(host: "a")
        var pool = ServerPool(servers: [a], baseWait: .milliseconds(100), maxWait: .milliseconds(350), jitter: 0)
        pool.connected(to: a)
        let flood = (0..<1000).map { "10.0.\($0 / 250).\($0 % 250):4222" }
        let change = pool.updateDiscovered(flood, current: a)
        #expect(pool.servers.count == 1 + ServerPool.maxDiscovered)
        #expect(change.added == ServerPool.maxDiscovered && change.ignored == 1000 - ServerPool.maxDiscovered && change.becameLimited)
        let again = pool.updateDiscovered(flood, current: a)
        #expect(again.added == 0 && again.ignored > 0 && !again.becameLimited, "warned once, not at every INFO")
        #expect(pool.servers.count == 1 + ServerPool.maxDiscovered)
    }

    @Test func logRateLimitCountsWhatItHolds() {
        var limit = LogRateLimit(interval: .seconds(1))
        let start = ContinuousClock.now
        #expect(limit.admit(at: start) == 0, "the first is logged at once")
        #expect(limit.admit(at: start + .milliseconds(10)) == nil)
        #expect(limit.admit(at: start + .milliseconds(999)) == nil)
        #expect(limit.admit(at: start + .seconds(1)) == 2, "the next line says how many were held")
        #expect(limit.admit(at: start + .seconds(5)) == 0)
    }

    @Test func jitterStaysInBounds() {
        let pool = ServerPool(servers: [NATSServerURL(host: "a")], baseWait: .seconds(1), maxWait: .seconds(10), jitter: 0.2)
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<100 {
            let d = pool.backoff(round: 1, using: &rng)
            #expect(d >= .milliseconds(800) && d <= .milliseconds(1200))
        }
    }
}
