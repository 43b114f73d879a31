/// Turns a query packet into a response packet: the authoritative-only answer logic,
/// without I/O. Never recurses; never answers responses (that would let two servers
/// bounce packets forever); answers garbage with FORMERR when a header can be read and
/// drops it otherwise.
public struct DNSResponder: Sendable {
    public enum Transport: Sendable { case udp, tcp }

    /// How one query was answered (for metrics).
    public enum Outcome: String, Sendable, CaseIterable {
        case answered, noData = "nodata", nameError = "nxdomain", refused, formatError = "formerr",
             notImplemented = "notimp", badVersion = "badvers", dropped
    }

    public struct Response: Sendable {
        public var bytes: [UInt8]?
        public var outcome: Outcome
        public var truncated: Bool
    }

    public let store: DNSRecordStore
    public let authority: DNSAuthority

    public init(store: DNSRecordStore, authority: DNSAuthority) {
        self.store = store
        self.authority = authority
    }

    /// With `truncate` (a UDP client over its rate, `DNSResponseRateLimit`), the answer is
    /// decided as always but sent as its question only, with TC set.
    public func respond(to packet: [UInt8], transport: Transport, truncate: Bool = false) -> Response {
        guard let (header, _) = DNSMessageReader.header(of: packet), !header.isResponse else {
            return Response(bytes: nil, outcome: .dropped, truncated: false)
        }
        let query: DNSMessage
        do {
            query = try DNSMessageReader.parse(packet)
        } catch {
            return finish(errorReply(to: header, code: .formatError), outcome: .formatError, transport: transport, limit: truncate ? 0 : 512)
        }
        var limit = 512
        if let edns = query.edns {
            limit = Int(min(max(edns.udpPayloadSize, 512), authority.maxUDPPayload))
        }
        if truncate { limit = 0 }
        guard query.header.opcode == 0 else {
            return finish(errorReply(to: query, code: .notImplemented), outcome: .notImplemented, transport: transport, limit: limit)
        }
        guard query.questions.count == 1, let question = query.questions.first else {
            return finish(errorReply(to: query, code: .formatError), outcome: .formatError, transport: transport, limit: limit)
        }
        if let edns = query.edns, edns.version != 0 {
            return finish(errorReply(to: query, code: .badVersion), outcome: .badVersion, transport: transport, limit: limit)
        }
        guard question.recordClass == .internet || question.recordClass == .any,
              question.type != .axfr, question.type != .ixfr else {
            return finish(errorReply(to: query, code: .refused), outcome: .refused, transport: transport, limit: limit)
        }
        // A label holding a dot cannot be one of our names (its key would read as several labels).
        guard let key = question.name.unambiguousKey else {
            return finish(errorReply(to: query, code: .refused), outcome: .refused, transport: transport, limit: limit)
        }
        let lookup = store.lookup(key)
        guard let zoneKey = lookup.zone else {
            return finish(errorReply(to: query, code: .refused), outcome: .refused, transport: transport, limit: limit)
        }
        // The zone's name as the question spelled it (the zone is a suffix of the name).
        let zone = question.name.suffix(labels: zoneKey.isEmpty ? 0 : zoneKey.utf8.count { $0 == UInt8(ascii: ".") } + 1)
        var reply = replyShell(to: query)
        reply.header.isAuthoritative = true
        let isApex = key == zoneKey
        let records = lookup.records
        let owner = question.name
        let type = question.type
        if isApex && (type == .soa || type == .any) {
            reply.answers.append(soaRecord(zone: zone, ttl: authority.zoneTTL))
        }
        if isApex && (type == .ns || type == .any) {
            reply.answers.append(DNSResourceRecord(name: owner, ttl: authority.zoneTTL, data: .ns(authority.nameServer ?? zone)))
        }
        if let address = records.address, type == address.type || type == .any {
            reply.answers.append(DNSResourceRecord(name: owner, ttl: authority.recordTTL, data: address))
        }
        if type == .txt || type == .any {
            for text in records.texts {
                reply.answers.append(DNSResourceRecord(name: owner, ttl: authority.recordTTL, data: .text(text)))
            }
        }
        let outcome: Outcome
        if !reply.answers.isEmpty {
            outcome = .answered
        } else {
            // RFC 2308: negative answers carry the zone's SOA, TTL = SOA MINIMUM.
            reply.authorities.append(soaRecord(zone: zone, ttl: authority.negativeTTL))
            if isApex || lookup.exists {
                outcome = .noData
            } else {
                reply.header.responseCode = UInt8(DNSResponseCode.nameError.rawValue)
                outcome = .nameError
            }
        }
        return finish(reply, outcome: outcome, transport: transport, limit: limit)
    }

    func soaRecord(zone: DNSName, ttl: UInt32) -> DNSResourceRecord {
        let mailbox = authority.mailbox ?? (try? zone.prepending("hostmaster")) ?? zone
        let soa = DNSStartOfAuthority(primaryNameServer: authority.nameServer ?? zone, responsibleMailbox: mailbox,
                                      serial: authority.serial, refresh: 7200, retry: 3600, expire: 1_209_600,
                                      minimum: authority.negativeTTL)
        return DNSResourceRecord(name: zone, ttl: ttl, data: .soa(soa))
    }

    func replyShell(to query: DNSMessage) -> DNSMessage {
        var header = DNSHeader(id: query.header.id)
        header.isResponse = true
        header.opcode = query.header.opcode
        header.recursionDesired = query.header.recursionDesired
        header.checkingDisabled = query.header.checkingDisabled
        var reply = DNSMessage(header: header, questions: query.questions)
        if query.edns != nil {
            var edns = EDNS(udpPayloadSize: authority.maxUDPPayload)
            edns.dnssecOK = query.edns?.dnssecOK ?? false
            reply.edns = edns
        }
        return reply
    }

    func errorReply(to query: DNSMessage, code: DNSResponseCode) -> DNSMessage {
        var reply = replyShell(to: query)
        if code == .formatError { reply.questions = [] }
        reply.header.responseCode = UInt8(code.rawValue & 0x0F)
        if code.rawValue > 0x0F {
            var edns = reply.edns ?? EDNS(udpPayloadSize: authority.maxUDPPayload)
            edns.extendedResponseCode = UInt8(code.rawValue >> 4)
            reply.edns = edns
        }
        return reply
    }

    /// FORMERR for a packet whose body did not parse: only the header is echoed.
    func errorReply(to header: DNSHeader, code: DNSResponseCode) -> DNSMessage {
        var reply = DNSHeader(id: header.id)
        reply.isResponse = true
        reply.opcode = header.opcode
        reply.recursionDesired = header.recursionDesired
        reply.responseCode = UInt8(code.rawValue)
        return DNSMessage(header: reply)
    }

    func finish(_ reply: DNSMessage, outcome: Outcome, transport: Transport, limit: Int) -> Response {
        let limit = transport == .udp ? limit : DNSMessageWriter.maximumLength
        if let bytes = try? DNSMessageWriter.serialize(reply), bytes.count <= limit {
            return Response(bytes: bytes, outcome: outcome, truncated: false)
        }
        // Too big for this client's UDP buffer (or, over TCP, for any DNS message): the
        // question only, with TC, so a UDP client asks again over TCP. The store's limits
        // keep answers far below 64 KiB; this is the last line, never a trap.
        var short = reply
        short.answers = []
        short.authorities = []
        short.additionals = []
        short.header.isTruncated = true
        guard let bytes = try? DNSMessageWriter.serialize(short) else {
            return Response(bytes: nil, outcome: .dropped, truncated: false)
        }
        return Response(bytes: bytes, outcome: outcome, truncated: true)
    }
}
