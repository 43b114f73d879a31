import Testing
@testable import PlaneDNS

struct DNSCodecTests {
    func query(_ name: String, _ type: DNSRecordType, id: UInt16 = 0x1234, edns: EDNS? = nil) throws -> [UInt8] {
        var header = DNSHeader(id: id)
        header.recursionDesired = true
        return try DNSMessageWriter.serialize(DNSMessage(header: header, questions: [DNSQuestion(name: try DNSName(name), type: type)], edns: edns))
    }

    @Test func queryBytesMatchTheRFCLayout() throws {
        let bytes = try query("Ab.plane.test", .a)
        #expect(bytes == [0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0,
                          2, 0x41, 0x62, 5] + Array("plane".utf8) + [4] + Array("test".utf8) + [0, 0, 1, 0, 1])
        let parsed = try DNSMessageReader.parse(bytes)
        #expect(parsed.header.id == 0x1234 && parsed.header.recursionDesired && !parsed.header.isResponse)
        #expect(parsed.questions.first?.name.description == "Ab.plane.test." && parsed.questions.first?.name.key == "ab.plane.test")
    }

    @Test func recordsRoundTripWithCompression() throws {
        var header = DNSHeader(id: 7)
        header.isResponse = true
        header.isAuthoritative = true
        let name = try DNSName("x.plane.test")
        let zone = try DNSName("plane.test")
        let soa = DNSStartOfAuthority(primaryNameServer: try DNSName("ns.plane.test"), responsibleMailbox: try DNSName("admin.plane.test"),
                                      serial: 9, refresh: 1, retry: 2, expire: 3, minimum: 4)
        var edns = EDNS(udpPayloadSize: 1232)
        edns.dnssecOK = true
        let message = DNSMessage(
            header: header, questions: [DNSQuestion(name: name, type: .any)],
            answers: [
                DNSResourceRecord(name: name, ttl: 60, data: .a(IPv4Address(12, 12, 12, 12))),
                DNSResourceRecord(name: name, ttl: 60, data: .aaaa(IPv6Address("2001:db8::1")!)),
                DNSResourceRecord(name: name, ttl: 60, data: .text(String(repeating: "z", count: 300))),
            ],
            authorities: [DNSResourceRecord(name: zone, ttl: 5, data: .soa(soa)), DNSResourceRecord(name: zone, ttl: 5, data: .ns(try DNSName("ns.plane.test")))],
            edns: edns)
        let bytes = try DNSMessageWriter.serialize(message)
        let parsed = try DNSMessageReader.parse(bytes)
        #expect(parsed == message)
        // The answer owners are pointers to the question name (offset 12).
        let pointer: [UInt8] = [0xC0, 0x0C]
        #expect(bytes.count < 12 + 14 + 3 * 12 + 4 + 16 + 302 + 100)
        #expect(bytes[(12 + 14 + 4)..<(12 + 14 + 6)].elementsEqual(pointer))
        // A TXT value over 255 bytes is split into character-strings.
        if case .txt(let strings) = parsed.answers[2].data { #expect(strings.map(\.count) == [255, 45]) } else { Issue.record("not TXT") }
    }

    @Test func malformedMessagesAreRejected() throws {
        let good = try query("a.plane.test", .a)
        // Every truncation of a valid query fails to parse, and never crashes.
        for length in 0..<good.count {
            #expect(throws: DNSError.self) { try DNSMessageReader.parse(Array(good.prefix(length))) }
        }
        // Trailing garbage.
        #expect(throws: DNSError.self) { try DNSMessageReader.parse(good + [0]) }
        // A compression pointer to itself (a loop) and one pointing forwards.
        var loop: [UInt8] = [0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 12, 0, 1, 0, 1]
        #expect(throws: DNSError.self) { try DNSMessageReader.parse(loop) }
        loop[13] = 16
        #expect(throws: DNSError.self) { try DNSMessageReader.parse(loop) }
        // The reserved label types 0x40 and 0x80.
        #expect(throws: DNSError.self) { try DNSMessageReader.parse([0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x41, 0, 0, 1, 0, 1]) }
        // A name longer than 255 bytes.
        let long = [UInt8](repeating: 0, count: 12) + Array(repeating: [63] + [UInt8](repeating: 0x61, count: 63), count: 5).flatMap { $0 } + [0, 0, 1, 0, 1]
        var header = long
        header[5] = 1
        #expect(throws: DNSError.self) { try DNSMessageReader.parse(header) }
    }

    @Test func namesAreValidated() throws {
        #expect(try DNSName("plane.test.").key == "plane.test")
        #expect(try DNSName(".").labels.isEmpty)
        #expect(throws: DNSError.self) { try DNSName("a..b") }
        #expect(throws: DNSError.self) { try DNSName(String(repeating: "a", count: 64) + ".test") }
        #expect(throws: DNSError.self) { try DNSName("has space.test") }
        #expect(throws: DNSError.self) { try DNSName(Array(repeating: String(repeating: "a", count: 60), count: 5).joined(separator: ".")) }
    }

    @Test func addresses() {
        #expect(IPv4Address("203.0.113.7")?.description == "203.0.113.7")
        for bad in ["1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "a.b.c.d", "", "1.2.3.4 "] { #expect(IPv4Address(bad) == nil, "\(bad)") }
        #expect(IPv6Address("2001:db8::1")?.bytes == [0x20, 0x01, 0x0d, 0xb8] + [UInt8](repeating: 0, count: 11) + [1])
        #expect(IPv6Address("::")?.bytes == [UInt8](repeating: 0, count: 16))
        #expect(IPv6Address("::ffff:1.2.3.4")?.bytes.suffix(6) == [0xff, 0xff, 1, 2, 3, 4])
        #expect(IPv6Address("1:2:3:4:5:6:7:8")?.description == "1:2:3:4:5:6:7:8")
        for bad in ["1::2::3", "12345::", "1:2:3:4:5:6:7", "1.2.3.4", "g::1", "1:2:3:4:5:6:7:8:9"] { #expect(IPv6Address(bad) == nil, "\(bad)") }
    }

    @Test func soaMailboxFromEmail() throws {
        #expect(try DNSAuthority.mailbox(fromEmail: "foo@bar.com").description == "foo.bar.com.")
        let dotted = try DNSAuthority.mailbox(fromEmail: "foo.bar@baz.com")
        #expect(dotted.labels.count == 3 && DNSAuthority.presentation(ofMailbox: dotted) == "foo\\.bar.baz.com.")
        #expect(try DNSAuthority.mailbox(fromEmail: "admin.plane.test.").description == "admin.plane.test.")
        #expect(throws: DNSError.self) { try DNSAuthority.mailbox(fromEmail: "nobody") }
        #expect(throws: DNSError.self) { try DNSAuthority.mailbox(fromEmail: "@x.com") }
        #expect(throws: DNSError.self) { try DNSAuthority.mailbox(fromEmail: "a@b@c") }
    }
}
