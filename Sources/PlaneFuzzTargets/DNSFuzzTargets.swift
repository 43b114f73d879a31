import NIOCore
@testable import PlaneDNS

/// The DNS server's packet handling: the reader on any bytes, and the responder (bytes in,
/// bytes out) over a store with records, whose every answer must parse and fit.
enum DNSFuzzTargets {
    static let message = FuzzTarget("dns-message", "DNSMessageReader on any packet; what parses is written again and must read back the same.") { raw in
        let bytes = Array(raw)
        _ = DNSMessageReader.header(of: bytes)
        guard let message = try? DNSMessageReader.parse(bytes) else { return }
        guard let written = try? DNSMessageWriter.serialize(message) else { return }
        let again = try? DNSMessageReader.parse(written)
        FuzzTarget.require(again != nil, "a message the writer wrote does not parse")
    }

    /// A store like a controller's: addresses, TXT values (one long), an empty non-terminal.
    static let store: DNSRecordStore = {
        let zone = try! DNSName("plane.test")
        let store = DNSRecordStore(zones: [zone, try! DNSName("other.example")], ttl: .seconds(1 << 40),
                                   limits: .init(maxRecords: 1000, maxTextsPerName: 255, maxTextBytes: 16_384))
        try! store.setAddress("12.12.12.12", name: "abc", zone: zone)
        try! store.setAddress("2001:db8::1", name: "six", zone: zone)
        try! store.setAddress("12.12.12.13", name: "a.b.deep", zone: zone)
        try! store.addText("challenge-value", name: "_acme-challenge", zone: zone)
        for index in 0..<8 { try! store.addText(String(repeating: "t", count: 16_000) + "\(index)", name: "big", zone: zone) }
        return store
    }()
    static let authoritative = DNSResponder(store: store, authority: DNSAuthority())

    static let responder = FuzzTarget("dns-responder", "DNSResponder on any packet over UDP and TCP, and truncated as for a client over its rate: every answer parses, is a response, and fits its transport; a rate-limited one has no records.") { raw in
        var input = FuzzInput(raw)
        let first = input.byte()
        let transport: DNSResponder.Transport = first & 1 == 0 ? .udp : .tcp
        let truncate = transport == .udp && first & 2 != 0
        let packet = input.rest()
        let response = authoritative.respond(to: packet, transport: transport, truncate: truncate)
        guard let bytes = response.bytes else { return }
        FuzzTarget.require(bytes.count <= (transport == .udp ? 4096 : DNSMessageWriter.maximumLength), "an answer of \(bytes.count) bytes over \(transport)")
        let parsed = try? DNSMessageReader.parse(bytes)
        FuzzTarget.require(parsed?.header.isResponse == true, "an answer that does not parse as a response")
        if truncate {
            FuzzTarget.require(response.truncated && parsed?.answers.isEmpty == true && parsed?.authorities.isEmpty == true, "a rate-limited answer with records")
        }
    }

    static let stream = FuzzTarget("dns-stream", "DNS over TCP: DNSStreamConnection on any byte stream cut into any reads, each framed query answered: queries are only what arrived, what waits unread stays bounded, every answer parses and fits a frame.") { raw in
        var input = FuzzInput(raw)
        let sizes = [input.byte(), input.byte(), input.byte()]
        let stream = input.rest()
        var connection = DNSStreamConnection(timeout: .seconds(10), now: .uptimeNanoseconds(0))
        var received = 0
        var framed = 0
        var step: Int64 = 0
        for piece in FuzzInput.pieces(stream, sizes: sizes, maxPiece: 4096) {
            // The handler reads only while the connection wants more.
            FuzzTarget.require(connection.wantsInput, "a read while \(connection.buffer.readableBytes) bytes wait unanswered")
            var bytes = ByteBuffer(bytes: piece)
            connection.received(&bytes)
            received += piece.count
            step += 1
            while let query = connection.nextQuery(now: .uptimeNanoseconds(UInt64(step))) {
                framed += 2 + query.readableBytes
                let response = authoritative.respond(to: Array(query.readableBytesView), transport: .tcp)
                guard let answer = response.bytes else { continue }
                FuzzTarget.require(answer.count <= Int(UInt16.max), "an answer of \(answer.count) bytes does not fit a TCP frame")
                FuzzTarget.require((try? DNSMessageReader.parse(answer))?.header.isResponse == true, "an answer that does not parse as a response")
            }
            FuzzTarget.require(framed + connection.buffer.readableBytes == received, "framed \(framed) and waiting \(connection.buffer.readableBytes) of \(received) bytes")
            FuzzTarget.require(connection.buffer.readableBytes < DNSStreamConnection.maxBufferedBytes, "a whole query waits unanswered")
        }
    }
}
