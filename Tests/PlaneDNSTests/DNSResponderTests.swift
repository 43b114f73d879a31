import Testing
@testable import PlaneDNS

struct DNSResponderTests {
    let zone = try! DNSName("plane.test")

    func makeResponder() throws -> DNSResponder {
        let store = DNSRecordStore(zones: [zone])
        try store.setAddress("12.12.12.12", name: "louie", zone: zone)
        try store.setAddress("2001:db8::5", name: "six", zone: zone)
        try store.addText("foobar", name: "_acme-challenge", zone: zone)
        var authority = DNSAuthority(nameServer: try DNSName("ns1.plane.test"), mailbox: try DNSAuthority.mailbox(fromEmail: "admin@plane.test"))
        authority.serial = 42
        return DNSResponder(store: store, authority: authority)
    }

    func ask(_ responder: DNSResponder, _ name: String, _ type: DNSRecordType, edns: EDNS? = nil,
             transport: DNSResponder.Transport = .udp) throws -> (DNSMessage, DNSResponder.Outcome) {
        var header = DNSHeader(id: 99)
        header.recursionDesired = true
        let query = DNSMessage(header: header, questions: [DNSQuestion(name: try DNSName(name), type: type)], edns: edns)
        let response = responder.respond(to: try DNSMessageWriter.serialize(query), transport: transport)
        return (try DNSMessageReader.parse(try #require(response.bytes)), response.outcome)
    }

    @Test func answersAreAuthoritativeAndCaseInsensitive() throws {
        let responder = try makeResponder()
        let (reply, outcome) = try ask(responder, "LOUIE.Plane.Test", .a)
        #expect(outcome == .answered && reply.header.isAuthoritative && reply.header.isResponse && reply.header.id == 99)
        #expect(reply.header.recursionDesired && !reply.header.recursionAvailable)
        #expect(reply.answers == [DNSResourceRecord(name: try DNSName("LOUIE.Plane.Test"), ttl: 60, data: .a(IPv4Address(12, 12, 12, 12)))])
        #expect(reply.questions.first?.name.description == "LOUIE.Plane.Test.", "the question is echoed with its case")
        #expect(try ask(responder, "six.plane.test", .aaaa).0.answers.first?.data == .aaaa(IPv6Address("2001:db8::5")!))
        #expect(try ask(responder, "_acme-challenge.plane.test", .txt).0.answers.first?.data == .txt([Array("foobar".utf8)]))
    }

    @Test func apexHasSOAAndNS() throws {
        let responder = try makeResponder()
        let (soaReply, _) = try ask(responder, "plane.test", .soa)
        guard case .soa(let soa) = try #require(soaReply.answers.first).data else { Issue.record("no SOA"); return }
        #expect(soaReply.answers.count == 1)
        #expect(soa.primaryNameServer.description == "ns1.plane.test." && soa.responsibleMailbox.description == "admin.plane.test." && soa.serial == 42)
        #expect(try ask(responder, "plane.test", .ns).0.answers.map(\.data) == [.ns(try DNSName("ns1.plane.test"))])
        #expect(try ask(responder, "plane.test", .any).0.answers.count == 2)
    }

    @Test func negativeAnswers() throws {
        let responder = try makeResponder()
        // An existing name without that type: NODATA with the SOA for negative caching.
        let (nodata, o1) = try ask(responder, "louie.plane.test", .txt)
        #expect(o1 == .noData && nodata.responseCode == .noError && nodata.answers.isEmpty && nodata.authorities.first?.type == .soa)
        #expect(try ask(responder, "louie.plane.test", .aaaa).1 == .noData)
        #expect(try ask(responder, "plane.test", .a).1 == .noData)
        // A name with no records: NXDOMAIN, authoritative.
        let (nx, o2) = try ask(responder, "nobody.plane.test", .a)
        #expect(o2 == .nameError && nx.responseCode == .nameError && nx.header.isAuthoritative && nx.authorities.count == 1)
        // Outside every zone: REFUSED, never recursion.
        let (refused, o3) = try ask(responder, "example.com", .a)
        #expect(o3 == .refused && refused.responseCode == .refused && !refused.header.isAuthoritative && refused.answers.isEmpty)
        #expect(try ask(responder, "foo.bar", .a).1 == .refused)
        #expect(try ask(responder, "plane.test", .axfr).1 == .refused)
    }

    @Test func ednsAndTruncation() throws {
        let store = DNSRecordStore(zones: [zone], limits: .init(maxTextsPerName: 20))
        for index in 0..<20 { try store.addText(String(repeating: Character("\(index % 10)"), count: 200) + "\(index)", name: "big", zone: zone) }
        let responder = DNSResponder(store: store, authority: DNSAuthority())
        // Without EDNS, UDP answers stop at 512 bytes: TC set, no records.
        let (small, _) = try ask(responder, "big.plane.test", .txt)
        #expect(small.header.isTruncated && small.answers.isEmpty && small.questions.count == 1)
        // With EDNS 4096 the server still caps at its 1232 bytes.
        let (capped, _) = try ask(responder, "big.plane.test", .txt, edns: EDNS(udpPayloadSize: 4096))
        #expect(capped.header.isTruncated && capped.edns?.udpPayloadSize == 1232)
        // Over TCP it all fits.
        let (full, _) = try ask(responder, "big.plane.test", .txt, transport: .tcp)
        #expect(!full.header.isTruncated && full.answers.count == 20)
        // A small answer with EDNS carries an OPT record; an unknown EDNS version is BADVERS.
        let (withOPT, _) = try ask(responder, "big.plane.test", .a, edns: EDNS(udpPayloadSize: 1232))
        #expect(withOPT.edns != nil && !withOPT.header.isTruncated)
        var v1 = EDNS(udpPayloadSize: 1232)
        v1.version = 1
        let (badVersion, outcome) = try ask(responder, "big.plane.test", .a, edns: v1)
        #expect(outcome == .badVersion && badVersion.responseCode == .badVersion)
    }

    /// The most a store's limits allow at one name (255 TXT values of 16 KiB) is far more
    /// than a DNS message holds: over UDP and TCP alike the answer is the question with TC,
    /// never a length that does not fit its 16-bit field (which trapped before).
    @Test(arguments: [DNSResponder.Transport.udp, .tcp])
    func answersBeyondWhatDNSCanFrameAreTruncated(transport: DNSResponder.Transport) throws {
        let store = DNSRecordStore(zones: [zone], limits: .init(maxTextsPerName: 255, maxTextBytes: 16_384))
        for index in 0..<255 { try store.addText(String(repeating: "v", count: 16_384 - 3) + String(format: "%03d", index), name: "huge", zone: zone) }
        let responder = DNSResponder(store: store, authority: DNSAuthority())
        let (answer, outcome) = try ask(responder, "huge.plane.test", .txt, transport: transport)
        #expect(outcome == .answered && answer.header.isTruncated && answer.answers.isEmpty && answer.questions.count == 1)
        // One value of 16 KiB fits a TCP answer, split into 255-byte strings.
        try store.addText(String(repeating: "w", count: 16_384), name: "one", zone: zone)
        let (single, _) = try ask(responder, "one.plane.test", .txt, transport: .tcp)
        #expect(!single.header.isTruncated && single.answers.count == 1)
        guard case .txt(let strings) = single.answers.first?.data else { Issue.record("no TXT"); return }
        #expect(strings.count == 65 && strings.reduce(0) { $0 + $1.count } == 16_384)
    }

    /// A query whose label holds a dot byte cannot name one of our records (its lookup key
    /// would read as more labels): refused, not answered with another name's record.
    @Test func labelsWithDotsAreRefused() throws {
        let store = DNSRecordStore(zones: [zone])
        try store.setAddress("12.12.12.12", name: "b", zone: zone)
        let responder = DNSResponder(store: store, authority: DNSAuthority())
        let name = DNSName(uncheckedLabels: [Array("x.b".utf8), Array("plane".utf8), Array("test".utf8)])
        let query = DNSMessage(header: DNSHeader(id: 3), questions: [DNSQuestion(name: name, type: .a)])
        let response = responder.respond(to: try DNSMessageWriter.serialize(query), transport: .udp)
        #expect(response.outcome == .refused)
        #expect(try ask(responder, "b.plane.test", .a).1 == .answered)
    }

    @Test func malformedAndOddQueries() throws {
        let responder = try makeResponder()
        // Too short for a header: dropped.
        #expect(responder.respond(to: [1, 2, 3], transport: .udp).bytes == nil)
        // A response (QR set) is never answered.
        var header = DNSHeader(id: 5)
        header.isResponse = true
        #expect(responder.respond(to: try DNSMessageWriter.serialize(DNSMessage(header: header)), transport: .udp).outcome == .dropped)
        // A header followed by garbage: FORMERR with the id.
        let garbage: [UInt8] = [0xAB, 0xCD, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF]
        let formerr = responder.respond(to: garbage, transport: .udp)
        let parsed = try DNSMessageReader.parse(try #require(formerr.bytes))
        #expect(formerr.outcome == .formatError && parsed.header.id == 0xABCD && parsed.responseCode == .formatError)
        // No question, or two: FORMERR. Another opcode (NOTIFY): NOTIMP.
        #expect(responder.respond(to: try DNSMessageWriter.serialize(DNSMessage(header: DNSHeader(id: 1))), transport: .udp).outcome == .formatError)
        let question = DNSQuestion(name: zone, type: .a)
        #expect(responder.respond(to: try DNSMessageWriter.serialize(DNSMessage(header: DNSHeader(id: 1), questions: [question, question])), transport: .udp).outcome == .formatError)
        var notify = DNSHeader(id: 1)
        notify.opcode = 4
        #expect(responder.respond(to: try DNSMessageWriter.serialize(DNSMessage(header: notify, questions: [question])), transport: .udp).outcome == .notImplemented)
        // Class CH: REFUSED.
        let chaos = DNSQuestion(name: zone, type: .txt, recordClass: DNSClass(rawValue: 3))
        #expect(responder.respond(to: try DNSMessageWriter.serialize(DNSMessage(header: DNSHeader(id: 1), questions: [chaos])), transport: .udp).outcome == .refused)
    }
}
