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
        store.addZone(try DNSName("sub.plane.test"))
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
}
