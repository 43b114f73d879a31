import Logging
import NIOCore
import NIOPosix
import PlaneTestSupport
import Testing
@testable import PlaneDNS

/// The real server on loopback, asked with `dig` (dnsutils) over UDP and TCP.
struct DNSServerTests {
    let zone = try! DNSName("plane.test")

    func withServer(rateLimit: DNSResponseRateLimit = DNSResponseRateLimit(), _ body: (DNSServer, DNSRecordStore, Int) async throws -> Void) async throws {
        let store = DNSRecordStore(zones: [zone])
        let authority = DNSAuthority(nameServer: try DNSName("ns.plane.test"), mailbox: try DNSAuthority.mailbox(fromEmail: "admin@plane.test"))
        var configuration = DNSServerConfiguration(bindHost: "127.0.0.1", port: 0)
        configuration.udpSockets = 2
        configuration.rateLimit = rateLimit
        let server = DNSServer(configuration: configuration, responder: DNSResponder(store: store, authority: authority), logger: Logger(label: "test.dns"))
        let address = try await server.start()
        do {
            try await body(server, store, address.port)
        } catch {
            await server.stop()
            throw error
        }
        await server.stop()
    }

    func dig(_ port: Int, _ arguments: String...) async throws -> String {
        try await SystemProgram.dig.run(["@127.0.0.1", "-p", "\(port)", "+time=3", "+tries=2"] + arguments)
    }

    @Test func specDNSCasesOverUDPAndTCP() async throws {
        try await withServer { _, store, port in
            try store.addText("foobar", name: "_acme-challenge", zone: zone)
            try store.addText("foobaz", name: "_acme-challenge", zone: zone)
            try store.setAddress("12.12.12.12", name: "louie", zone: zone)
            try store.setAddress("14.14.14.14", name: "louie", zone: zone)
            for transport in ["+notcp", "+tcp"] {
                #expect(try await dig(port, transport, "+short", "TXT", "_acme-challenge.plane.test") == "\"foobar\"\n\"foobaz\"\n")
                #expect(try await dig(port, transport, "+short", "A", "louie.plane.test") == "14.14.14.14\n")
                #expect(try await dig(port, transport, "+short", "A", "LOUIE.PLANE.TEST") == "14.14.14.14\n")
                let soa = try await dig(port, transport, "+noall", "+answer", "SOA", "plane.test")
                #expect(soa.split(separator: "\n").count == 1 && soa.contains("ns.plane.test. admin.plane.test."))
                #expect(try await dig(port, transport, "+short", "NS", "plane.test") == "ns.plane.test.\n")
                // dns_bad_request: `foo.bar` has no records (we refuse: not our zone).
                #expect(try await dig(port, transport, "+short", "A", "foo.bar") == "")
            }
        }
    }

    @Test func longQueriesArriveWhole() async throws {
        // UDP reads are batched; every datagram must still arrive whole (a batch splits one
        // buffer between datagrams).
        try await withServer { _, store, port in
            let long = String(repeating: "a", count: 63) + "." + String(repeating: "b", count: 63)
            try store.setAddress("10.9.8.7", name: long, zone: zone)
            #expect(try await dig(port, "+short", "A", "\(long).plane.test") == "10.9.8.7\n")
            // EDNS padding makes the query 468 bytes long.
            #expect(try await dig(port, "+short", "+padding=468", "A", "\(long).plane.test") == "10.9.8.7\n")
        }
    }

    @Test func statusAndFlagsAsDigSeesThem() async throws {
        try await withServer { _, store, port in
            try store.setAddress("12.12.12.12", name: "louie", zone: zone)
            let answer = try await dig(port, "A", "louie.plane.test")
            #expect(answer.contains("status: NOERROR") && answer.contains("flags: qr aa rd;"))
            let nodata = try await dig(port, "TXT", "louie.plane.test")
            #expect(nodata.contains("status: NOERROR") && nodata.contains("ANSWER: 0") && nodata.contains("AUTHORITY: 1"))
            let nx = try await dig(port, "A", "nobody.plane.test")
            #expect(nx.contains("status: NXDOMAIN") && nx.contains("flags: qr aa rd;"))
            let refused = try await dig(port, "A", "example.com")
            #expect(refused.contains("status: REFUSED"))
            #expect(try await dig(port, "+tcp", "A", "example.com").contains("status: REFUSED"))
        }
    }

    @Test func bigAnswersAreTruncatedOverUDPAndCompleteOverTCP() async throws {
        try await withServer { server, store, port in
            for index in 0..<12 { try store.addText(String(repeating: "v", count: 200) + "\(index)", name: "big", zone: zone) }
            let truncated = try await dig(port, "+ignore", "+noedns", "TXT", "big.plane.test")
            #expect(truncated.contains(" tc") && truncated.contains("ANSWER: 0"))
            // Without +ignore, dig retries over TCP on TC and gets everything.
            let full = try await dig(port, "+short", "TXT", "big.plane.test")
            #expect(full.split(separator: "\n").count == 12)
            #expect(server.counters.truncated >= 2)
        }
    }

    func waitUntilQuiet(_ server: DNSServer) async throws {
        var last = -1
        while true {
            let total = server.counters.byOutcome.values.reduce(0, +)
            if total == last { return }
            last = total
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    @Test func garbageNeverStopsTheServer() async throws {
        // 4,000 datagrams from one address: response rate limiting off, so that every one is parsed.
        var unlimited = DNSResponseRateLimit()
        unlimited.responsesPerSecond = 0
        try await withServer(rateLimit: unlimited) { server, store, port in
            try store.setAddress("12.12.12.12", name: "louie", zone: zone)
            let valid = try DNSMessageWriter.serialize(DNSMessage(header: DNSHeader(id: 1), questions: [DNSQuestion(name: try DNSName("louie.plane.test"), type: .a)]))
            let client = try await DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).get()
            let target = try SocketAddress(ipAddress: "127.0.0.1", port: port)
            var generator = SystemRandomNumberGenerator()
            for round in 0..<8 {
                for index in 0..<500 {
                    let packet: [UInt8]
                    switch index % 4 {
                    case 0: packet = (0..<Int.random(in: 0...600, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
                    case 1: packet = Array(valid.prefix(Int.random(in: 0..<valid.count, using: &generator)))
                    case 2:
                        var mutated = valid
                        mutated[Int.random(in: 0..<mutated.count, using: &generator)] = UInt8.random(in: 0...255, using: &generator)
                        packet = mutated
                    default: packet = valid + (0..<Int.random(in: 1...20, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
                    }
                    client.write(AddressedEnvelope(remoteAddress: target, data: ByteBuffer(bytes: packet)), promise: nil)
                }
                client.flush()
                // Let the server work through the burst (what the kernel dropped from a full
                // socket buffer never arrives), then a real query keeps being answered, over UDP and TCP.
                try await waitUntilQuiet(server)
                // dig's own retry (a UDP try lost on a busy machine prints a ";;" line first) counts.
                let answer = try await dig(port, round % 2 == 0 ? "+notcp" : "+tcp", "+short", "A", "louie.plane.test")
                #expect(answer.split(separator: "\n").filter { !$0.hasPrefix(";;") } == ["12.12.12.12"], "round \(round): \(answer)")
            }
            try await client.close()
            // A TCP client that sends a broken frame and one that sends garbage lengths.
            let tcp = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connect(host: "127.0.0.1", port: port).get()
            try await tcp.writeAndFlush(ByteBuffer(bytes: [0, 40, 1, 2, 3])).get()
            try await tcp.close()
            let counts = server.counters.byOutcome
            #expect((counts[.formatError] ?? 0) > 100 && (counts[.dropped] ?? 0) > 100)
            #expect(try await dig(port, "+short", "A", "louie.plane.test") == "12.12.12.12\n")
        }
    }
}
