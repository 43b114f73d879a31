/// A DNS message (RFC 1035 §4) with the EDNS(0) OPT record (RFC 6891) surfaced.
public struct DNSMessage: Sendable, Hashable {
    public var header: DNSHeader
    public var questions: [DNSQuestion]
    public var answers: [DNSResourceRecord]
    public var authorities: [DNSResourceRecord]
    /// Additional records other than OPT.
    public var additionals: [DNSResourceRecord]
    /// The OPT pseudo-record, when the message carries one.
    public var edns: EDNS?

    public init(header: DNSHeader, questions: [DNSQuestion] = [], answers: [DNSResourceRecord] = [],
                authorities: [DNSResourceRecord] = [], additionals: [DNSResourceRecord] = [], edns: EDNS? = nil) {
        self.header = header
        self.questions = questions
        self.answers = answers
        self.authorities = authorities
        self.additionals = additionals
        self.edns = edns
    }

    /// The full response code: the header's 4 bits plus the OPT record's upper 8 bits.
    public var responseCode: DNSResponseCode {
        DNSResponseCode(rawValue: UInt16(edns?.extendedResponseCode ?? 0) << 4 | UInt16(header.responseCode))
    }
}

public struct DNSHeader: Sendable, Hashable {
    public var id: UInt16
    public var isResponse = false
    public var opcode: UInt8 = 0
    public var isAuthoritative = false
    public var isTruncated = false
    public var recursionDesired = false
    public var recursionAvailable = false
    public var authenticData = false
    public var checkingDisabled = false
    /// The low 4 bits of the response code.
    public var responseCode: UInt8 = 0

    public init(id: UInt16) { self.id = id }

    var flags: UInt16 {
        var value: UInt16 = 0
        if isResponse { value |= 0x8000 }
        value |= UInt16(opcode & 0x0F) << 11
        if isAuthoritative { value |= 0x0400 }
        if isTruncated { value |= 0x0200 }
        if recursionDesired { value |= 0x0100 }
        if recursionAvailable { value |= 0x0080 }
        if authenticData { value |= 0x0020 }
        if checkingDisabled { value |= 0x0010 }
        value |= UInt16(responseCode & 0x0F)
        return value
    }

    init(id: UInt16, flags: UInt16) {
        self.id = id
        isResponse = flags & 0x8000 != 0
        opcode = UInt8((flags >> 11) & 0x0F)
        isAuthoritative = flags & 0x0400 != 0
        isTruncated = flags & 0x0200 != 0
        recursionDesired = flags & 0x0100 != 0
        recursionAvailable = flags & 0x0080 != 0
        authenticData = flags & 0x0020 != 0
        checkingDisabled = flags & 0x0010 != 0
        responseCode = UInt8(flags & 0x0F)
    }
}

public struct DNSQuestion: Sendable, Hashable {
    public var name: DNSName
    public var type: DNSRecordType
    public var recordClass: DNSClass

    public init(name: DNSName, type: DNSRecordType, recordClass: DNSClass = .internet) {
        self.name = name
        self.type = type
        self.recordClass = recordClass
    }
}

public struct DNSResourceRecord: Sendable, Hashable {
    public var name: DNSName
    public var type: DNSRecordType
    public var recordClass: DNSClass
    public var ttl: UInt32
    public var data: DNSRecordData

    public init(name: DNSName, ttl: UInt32, data: DNSRecordData, recordClass: DNSClass = .internet) {
        self.name = name
        self.type = data.type
        self.recordClass = recordClass
        self.ttl = ttl
        self.data = data
    }

    init(name: DNSName, type: DNSRecordType, recordClass: DNSClass, ttl: UInt32, data: DNSRecordData) {
        self.name = name
        self.type = type
        self.recordClass = recordClass
        self.ttl = ttl
        self.data = data
    }
}

public struct DNSStartOfAuthority: Sendable, Hashable {
    public var primaryNameServer: DNSName
    public var responsibleMailbox: DNSName
    public var serial: UInt32
    public var refresh: UInt32
    public var retry: UInt32
    public var expire: UInt32
    public var minimum: UInt32

    public init(primaryNameServer: DNSName, responsibleMailbox: DNSName, serial: UInt32,
                refresh: UInt32, retry: UInt32, expire: UInt32, minimum: UInt32) {
        self.primaryNameServer = primaryNameServer
        self.responsibleMailbox = responsibleMailbox
        self.serial = serial
        self.refresh = refresh
        self.retry = retry
        self.expire = expire
        self.minimum = minimum
    }
}

public enum DNSRecordData: Sendable, Hashable {
    case a(IPv4Address)
    case aaaa(IPv6Address)
    /// One or more character-strings of at most 255 bytes each.
    case txt([[UInt8]])
    case soa(DNSStartOfAuthority)
    case ns(DNSName)
    /// Any other type, RDATA kept as received.
    case other(DNSRecordType, [UInt8])

    public var type: DNSRecordType {
        switch self {
        case .a: .a
        case .aaaa: .aaaa
        case .txt: .txt
        case .soa: .soa
        case .ns: .ns
        case .other(let type, _): type
        }
    }

    /// A TXT record for `text`, split into 255-byte character-strings.
    public static func text(_ text: String) -> DNSRecordData {
        let bytes = Array(text.utf8)
        if bytes.isEmpty { return .txt([[]]) }
        return .txt(stride(from: 0, to: bytes.count, by: 255).map { Array(bytes[$0..<min($0 + 255, bytes.count)]) })
    }
}

/// The EDNS(0) OPT pseudo-record.
public struct EDNS: Sendable, Hashable {
    public var udpPayloadSize: UInt16
    public var extendedResponseCode: UInt8 = 0
    public var version: UInt8 = 0
    public var dnssecOK = false
    /// Options (code, data) as received; we send none.
    public var options: [UInt8] = []

    public init(udpPayloadSize: UInt16) { self.udpPayloadSize = udpPayloadSize }
}
