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
        pool.addDiscovered(["nats://c:4222", "a:4222", "garbage:://"], template: a)
        #expect(pool.servers.map(\.host) == ["a", "b", "c"])
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
