import Logging
import NIOCore
import PlaneTestSupport
import Synchronization
import Testing
@testable import PlaneDNS

/// Response rate limiting: the buckets as a pure table, the client networks they are keyed
/// by, and the real server over UDP.
struct DNSResponseRateLimitTests {
    func limit(_ rate: Int, slip: Int = 2) -> DNSResponseRateLimit {
        var limit = DNSResponseRateLimit()
        limit.responsesPerSecond = rate
        limit.slip = slip
        return limit
    }

    @Test func aBurstOfOneSecondThenTheRate() {
        var table = DNSRateLimitTable(slots: 8, limit: limit(10))
        let start: Int64 = 5_000_000_000
        let burst = (0..<10).map { _ in table.decide(slot: 3, now: start) }
        #expect(burst.allSatisfy { $0 == .answer })
        // Over the rate: every second one is truncated (slip 2), the others dropped.
        #expect((0..<4).map { _ in table.decide(slot: 3, now: start) } == [.drop, .truncate, .drop, .truncate])
        // Another network's slot is untouched.
        #expect(table.decide(slot: 4, now: start) == .answer)
        // One interval (100 ms) later, one more answer, then limited again.
        #expect(table.decide(slot: 3, now: start + 100_000_000) == .answer)
        #expect(table.decide(slot: 3, now: start + 100_000_000) == .drop)
        // After a quiet second, a whole burst again.
        let later = start + 1_200_000_000
        #expect((0..<10).map { _ in table.decide(slot: 3, now: later) }.allSatisfy { $0 == .answer })
        #expect(table.decide(slot: 3, now: later) != .answer)
        // Slots are taken modulo the table (a hash may be any Int).
        #expect(table.decide(slot: -1, now: later) == .answer)
        #expect(table.decide(slot: Int.min, now: later) == .answer)
    }

    @Test func slipZeroDropsAllAndSlipOneTruncatesAll() {
        var dropping = DNSRateLimitTable(slots: 1, limit: limit(1, slip: 0))
        var truncating = DNSRateLimitTable(slots: 1, limit: limit(1, slip: 1))
        #expect(dropping.decide(slot: 0, now: 0) == .answer && truncating.decide(slot: 0, now: 0) == .answer)
        #expect((0..<5).map { _ in dropping.decide(slot: 0, now: 1) } == Array(repeating: .drop, count: 5))
        #expect((0..<5).map { _ in truncating.decide(slot: 0, now: 1) } == Array(repeating: .truncate, count: 5))
        #expect(dropping.decide(slot: 0, now: 1_000_000_000) == .answer)
    }

    @Test func extremeRatesAndClocksDoNotTrap() {
        var fast = DNSRateLimitTable(slots: 2, limit: limit(DNSResponseRateLimit.responsesPerSecondRange.upperBound))
        let late = Int64.max / 2
        #expect((0..<1000).allSatisfy { _ in fast.decide(slot: 1, now: late) == .answer })
        // Out-of-range settings (the loaders refuse them; the table clamps them).
        var clamped = DNSRateLimitTable(slots: 0, limit: limit(Int.max, slip: Int.max))
        #expect(clamped.slotCount == 1 && clamped.decide(slot: Int.max, now: 0) == .answer)
        var slow = DNSRateLimitTable(slots: 1, limit: limit(-7, slip: -1))
        #expect(slow.decide(slot: 0, now: 0) == .answer && slow.decide(slot: 0, now: 0) == .drop)
    }

    @Test func clientsAreKeyedByTheirNetwork() throws {
        let limiter = DNSResponseRateLimiter(limit: DNSResponseRateLimit())
        func hash(_ address: String) throws -> Int? { limiter.networkHash(of: try SocketAddress(ipAddress: address, port: 53)) }
        #expect(try hash("198.51.100.7") == hash("198.51.100.250"), "one /24")
        #expect(try hash("198.51.100.7") != hash("198.51.101.7"))
        #expect(try hash("2001:db8:0:100::1") == hash("2001:db8:0:1ff:ffff::2"), "one /56")
        #expect(try hash("2001:db8:0:100::1") != hash("2001:db8:0:200::1"))
        // IPv4 clients of a dual-stack socket keep their IPv4 networks.
        #expect(try hash("::ffff:198.51.100.7") == hash("198.51.100.99"))
        #expect(try hash("::ffff:198.51.100.7") != hash("::ffff:203.0.113.7"))
        var hostOnly = DNSResponseRateLimit()
        hostOnly.ipv4PrefixLength = 32
        hostOnly.ipv6PrefixLength = 128
        let exact = DNSResponseRateLimiter(limit: hostOnly)
        #expect(exact.networkHash(of: try SocketAddress(ipAddress: "198.51.100.7", port: 1)) != exact.networkHash(of: try SocketAddress(ipAddress: "198.51.100.8", port: 1)))
        #expect(exact.networkHash(of: try SocketAddress(ipAddress: "2001:db8::1", port: 1)) != exact.networkHash(of: try SocketAddress(ipAddress: "2001:db8::2", port: 1)))
        var everyone = DNSResponseRateLimit()
        everyone.ipv4PrefixLength = 0
        let one = DNSResponseRateLimiter(limit: everyone)
        #expect(one.networkHash(of: try SocketAddress(ipAddress: "1.2.3.4", port: 1)) == one.networkHash(of: try SocketAddress(ipAddress: "203.0.113.9", port: 1)))
        #expect(DNSResponseRateLimiter.mask32(prefix: 24) == 0xFFFF_FF00 && DNSResponseRateLimiter.mask32(prefix: 99) == .max)
        #expect(DNSResponseRateLimiter.mask64(prefix: 0) == 0 && DNSResponseRateLimiter.mask64(prefix: -3) == 0 && DNSResponseRateLimiter.mask64(prefix: 8) == 0xFF00_0000_0000_0000)
    }

    @Test func aTruncatedResponseHasTheQuestionOnly() throws {
        let zone = try DNSName("plane.test")
        let store = DNSRecordStore(zones: [zone])
        try store.setAddress("12.12.12.12", name: "louie", zone: zone)
        let responder = DNSResponder(store: store, authority: DNSAuthority(nameServer: nil, mailbox: nil))
        let query = try DNSMessageWriter.serialize(DNSMessage(header: DNSHeader(id: 7), questions: [DNSQuestion(name: try DNSName("louie.plane.test"), type: .a)]))
        let response = responder.respond(to: query, transport: .udp, truncate: true)
        let reply = try DNSMessageReader.parse(try #require(response.bytes))
        #expect(response.truncated && reply.header.isTruncated && reply.header.id == 7)
        #expect(reply.answers.isEmpty && reply.questions.count == 1)
        // Garbage gets its FORMERR header, truncated or not; a response is still never answered.
        #expect(responder.respond(to: [0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 9], transport: .udp, truncate: true).outcome == .formatError)
    }

    /// The real server: a client network over its rate gets a burst, then truncated answers
    /// and silence; another network and TCP are answered meanwhile. Bound to `::` too, where
    /// IPv4 clients come as IPv4-mapped IPv6 addresses and must keep their own networks.
    @Test(arguments: ["127.0.0.1", "::"])
    func theServerLimitsOneNetworkAndNotTheOthers(bindHost: String) async throws {
        let zone = try DNSName("plane.test")
        let store = DNSRecordStore(zones: [zone])
        try store.setAddress("12.12.12.12", name: "louie", zone: zone)
        var configuration = DNSServerConfiguration(bindHost: bindHost, port: 0)
        configuration.udpSockets = 2
        configuration.rateLimit = limit(20)
        let hits = Hits()
        let server = DNSServer(configuration: configuration, responder: DNSResponder(store: store, authority: DNSAuthority(nameServer: nil, mailbox: nil)),
                               logger: Logger(label: "test.dns")) { key, client in
            hits.list.withLock { $0.append("\(key) \(client?.ipAddress ?? "?")") }
        }
        let port = try await server.start().port
        do {
            try await expectLimited(port: port, hits: hits)
        } catch {
            await server.stop()
            throw error
        }
        await server.stop()
    }

    final class Hits: Sendable {
        let list = Mutex<[String]>([])
    }

    func expectLimited(port: Int, hits: Hits) async throws {
        // Answers come within milliseconds on loopback; a short wait for the last keeps the
        // network's bucket from refilling (20 a second) before its neighbour asks.
        let flood = try await DNSQueryBurst(port: port, name: "louie.plane.test", count: 300, quietTime: .milliseconds(300)).run()
        // 20 at once, and one more per 50 ms the burst took. (On a busy machine the kernel
        // may drop some of a burst before the server reads it: those count as unanswered.)
        #expect(flood.answers >= 20 && flood.answers <= 80, "\(flood)")
        #expect(flood.truncated >= 80 && flood.unanswered >= 80, "\(flood)")
        #expect(flood.truncated <= flood.unanswered + 2, "at most every second query over the rate is truncated: \(flood)")
        let other = try await DNSQueryBurst(port: port, name: "louie.plane.test", count: 20, source: "127.0.1.1").run()
        // (Were the two networks one, its bucket would hold far fewer than 20 by now.)
        #expect(other.answers == 20, "another /24 keeps its own rate: \(other)")
        let tcp = try await SystemProgram.dig.run(["@127.0.0.1", "-p", "\(port)", "+tcp", "+short", "A", "louie.plane.test"])
        #expect(tcp == "12.12.12.12\n", "TCP is not rate limited")
        let counted = hits.list.withLock { $0 }
        // Every query over the rate is reported: every second one was truncated, the rest dropped.
        #expect(counted.count >= 2 * flood.truncated - 1 && counted.count <= flood.truncated + flood.unanswered, "\(counted.count) reported, \(flood)")
        #expect(counted.allSatisfy { $0.hasPrefix("dns.rate_limit ") && $0.hasSuffix("127.0.0.1") }, "\(counted.prefix(3))")
        // A second later the network has its burst back.
        try await Task.sleep(for: .milliseconds(1100))
        #expect(try await DNSQueryBurst(port: port, name: "louie.plane.test", count: 20).run().answers == 20)
    }

    @Test func rateZeroTurnsLimitingOff() async throws {
        let zone = try DNSName("plane.test")
        let store = DNSRecordStore(zones: [zone])
        try store.setAddress("12.12.12.12", name: "louie", zone: zone)
        var configuration = DNSServerConfiguration(bindHost: "127.0.0.1", port: 0)
        configuration.rateLimit = limit(0)
        let server = DNSServer(configuration: configuration, responder: DNSResponder(store: store, authority: DNSAuthority(nameServer: nil, mailbox: nil)),
                               logger: Logger(label: "test.dns"))
        let port = try await server.start().port
        let burst = try await DNSQueryBurst(port: port, name: "louie.plane.test", count: 300).run()
        await server.stop()
        // None is truncated, and all are answered but what the kernel of a busy machine may
        // drop of the burst (with the default limit, 200 would be answered and 50 truncated).
        #expect(burst.truncated == 0 && burst.answers >= 250, "\(burst)")
    }
}
