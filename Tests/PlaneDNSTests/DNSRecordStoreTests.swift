import Synchronization
import Testing
@testable import PlaneDNS

/// A clock the test moves by hand.
final class ManualClock: Sendable {
    private let instant = Mutex(ContinuousClock.now)
    var now: ContinuousClock.Instant { instant.withLock { $0 } }
    func advance(_ duration: Duration) { instant.withLock { $0 += duration } }
    var function: DNSRecordStore.Clock { { self.now } }
}

struct DNSRecordStoreTests {
    let zone = try! DNSName("plane.test")

    @Test func addressesExpireExactlyTTLAfterTheirLastRefresh() throws {
        let clock = ManualClock()
        let store = DNSRecordStore(ttl: .seconds(60), clock: clock.function)
        try store.setAddress("12.12.12.12", name: "louie", zone: zone)
        clock.advance(.seconds(59))
        #expect(store.records(at: "louie.plane.test").address == .a(IPv4Address(12, 12, 12, 12)))
        // A refresh (here with a new value, which replaces the old one) extends the life.
        try store.setAddress("14.14.14.14", name: "Louie", zone: zone)
        clock.advance(.seconds(59))
        #expect(store.records(at: "louie.plane.test").address == .a(IPv4Address(14, 14, 14, 14)))
        clock.advance(.seconds(1))
        #expect(store.records(at: "louie.plane.test").isEmpty)
        #expect(store.purgeExpired() == 1 && store.count == 0)
    }

    @Test func textValuesKeepOrderAndExpireOneByOne() throws {
        let clock = ManualClock()
        let store = DNSRecordStore(ttl: .seconds(60), clock: clock.function)
        try store.addText("foobar", name: "_acme-challenge", zone: zone)
        clock.advance(.seconds(10))
        try store.addText("foobaz", name: "_acme-challenge", zone: zone)
        try store.addText("foobar", name: "_acme-challenge", zone: zone, age: .seconds(30))
        #expect(store.records(at: "_acme-challenge.plane.test").texts == ["foobar", "foobaz"])
        clock.advance(.seconds(50))
        #expect(store.records(at: "_acme-challenge.plane.test").texts == ["foobaz"])
        clock.advance(.seconds(10))
        #expect(store.records(at: "_acme-challenge.plane.test").texts.isEmpty)
        #expect(store.purgeExpired() == 2)
    }

    @Test func zonesComeFromConfigurationAndRecords() throws {
        let store = DNSRecordStore(zones: [try DNSName("Static.Example")])
        try store.setAddress("2001:db8::7", name: "b1", zone: zone)
        #expect(store.records(at: "b1.plane.test").address == .aaaa(IPv6Address("2001:db8::7")!))
        #expect(store.zone(containing: "b1.plane.test") == "plane.test")
        #expect(store.zone(containing: "x.static.example") == "static.example")
        #expect(store.zone(containing: "static.example") == "static.example")
        #expect(store.zone(containing: "xplane.test") == nil)
        #expect(store.zone(containing: "example.org") == nil)
        try store.addZone(try DNSName("sub.plane.test"))
        #expect(store.zone(containing: "a.sub.plane.test") == "sub.plane.test")
        #expect(throws: DNSError.self) { try store.setAddress("not-an-ip", name: "b2", zone: zone) }
        #expect(throws: DNSError.self) { try store.setAddress("1.2.3.4", name: "bad name", zone: zone) }
    }

    @Test func emptyNonTerminalsExist() throws {
        let store = DNSRecordStore()
        try store.addText("v", name: "_acme-challenge.deep", zone: zone)
        #expect(store.nameExists("deep.plane.test"))
        #expect(!store.nameExists("other.plane.test"))
    }

    /// Whatever publishers send, the store holds at most what its limits say; a record it
    /// holds can always be refreshed, and room comes back when records expire.
    @Test func limitsBoundWhatPublishersCanStore() throws {
        let clock = ManualClock()
        let store = DNSRecordStore(zones: [zone], limits: .init(maxRecords: 5, maxTextsPerName: 2, maxTextBytes: 50, maxZones: 2), clock: clock.function)
        func limit(_ body: () throws -> Void) -> String? {
            do { try body(); return nil } catch let error as DNSError { return error.code == .limitExceeded ? error.limit : "other: \(error)" } catch { return "other: \(error)" }
        }
        #expect(limit { try store.addText(String(repeating: "t", count: 51), name: "_acme-challenge", zone: zone) } == "dns.max_txt_bytes")
        try store.addText("one", name: "_acme-challenge", zone: zone)
        try store.addText("two", name: "_acme-challenge", zone: zone)
        #expect(limit { try store.addText("three", name: "_acme-challenge", zone: zone) } == "dns.max_txt_per_name")
        try store.addText("one", name: "_acme-challenge", zone: zone)  // a refresh, not a new value
        try store.setAddress("10.0.0.1", name: "a", zone: zone)
        try store.setAddress("10.0.0.2", name: "b", zone: zone)
        try store.setAddress("10.0.0.3", name: "c", zone: zone)
        #expect(store.count == 5)
        #expect(limit { try store.setAddress("10.0.0.4", name: "d", zone: zone) } == "dns.max_records")
        try store.setAddress("10.0.0.9", name: "a", zone: zone)  // replacing an address is not a new record
        #expect(store.records(at: "a.plane.test").address == .a(IPv4Address(10, 0, 0, 9)))
        // One more zone fits (the configured one is the first), then no more.
        let other = try DNSName("other.test")
        #expect(limit { try store.setAddress("10.0.0.5", name: "x", zone: try DNSName("third.test")) } == "dns.max_records")
        clock.advance(.seconds(61))
        store.purgeExpired()
        #expect(store.count == 0)
        try store.setAddress("10.0.0.5", name: "x", zone: other)
        #expect(limit { try store.setAddress("10.0.0.6", name: "y", zone: try DNSName("third.test")) } == "dns.max_zones")
        #expect(store.zones == ["plane.test", "other.test"])
    }
}
