/// Parses DNS messages from wire bytes. Every read is bounds-checked; compression pointers
/// must point backwards (so they cannot loop) and a name may not exceed 255 bytes.
public struct DNSMessageReader {
    private let bytes: [UInt8]
    private var index = 0

    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    /// Reads only the 12-byte header (enough to answer FORMERR with the right id).
    public static func header(of bytes: [UInt8]) -> (header: DNSHeader, questionCount: Int)? {
        guard bytes.count >= 12 else { return nil }
        let id = UInt16(bytes[0]) << 8 | UInt16(bytes[1])
        let flags = UInt16(bytes[2]) << 8 | UInt16(bytes[3])
        return (DNSHeader(id: id, flags: flags), Int(bytes[4]) << 8 | Int(bytes[5]))
    }

    public static func parse(_ bytes: [UInt8]) throws(DNSError) -> DNSMessage {
        var reader = DNSMessageReader(bytes)
        return try reader.readMessage()
    }

    mutating func readMessage() throws(DNSError) -> DNSMessage {
        let id = try readUInt16()
        let flags = try readUInt16()
        let counts = [try readUInt16(), try readUInt16(), try readUInt16(), try readUInt16()]
        var message = DNSMessage(header: DNSHeader(id: id, flags: flags))
        for _ in 0..<counts[0] {
            let name = try readName()
            let type = DNSRecordType(rawValue: try readUInt16())
            let recordClass = DNSClass(rawValue: try readUInt16())
            message.questions.append(DNSQuestion(name: name, type: type, recordClass: recordClass))
        }
        for _ in 0..<counts[1] { message.answers.append(try readRecord()) }
        for _ in 0..<counts[2] { message.authorities.append(try readRecord()) }
        for _ in 0..<counts[3] {
            let start = index
            let name = try readName()
            let type = DNSRecordType(rawValue: try readUInt16())
            if type == .opt {
                guard name.labels.isEmpty else { throw malformed("OPT record with a non-root owner name") }
                guard message.edns == nil else { throw malformed("more than one OPT record") }
                let payloadSize = try readUInt16()
                let ttl = try readUInt32()
                let length = Int(try readUInt16())
                var edns = EDNS(udpPayloadSize: payloadSize)
                edns.extendedResponseCode = UInt8(ttl >> 24)
                edns.version = UInt8((ttl >> 16) & 0xFF)
                edns.dnssecOK = ttl & 0x8000 != 0
                edns.options = try readBytes(length)
                message.edns = edns
            } else {
                index = start
                message.additionals.append(try readRecord())
            }
        }
        guard index == bytes.count else { throw malformed("\(bytes.count - index) bytes after the last record") }
        return message
    }

    mutating func readRecord() throws(DNSError) -> DNSResourceRecord {
        let name = try readName()
        let type = DNSRecordType(rawValue: try readUInt16())
        let recordClass = DNSClass(rawValue: try readUInt16())
        let ttl = try readUInt32()
        let length = Int(try readUInt16())
        guard index + length <= bytes.count else { throw malformed("record data runs past the end of the message") }
        let end = index + length
        let data: DNSRecordData
        switch type {
        case .a:
            guard length == 4 else { throw malformed("A record with \(length) bytes of data") }
            data = .a(IPv4Address(bytes[index], bytes[index + 1], bytes[index + 2], bytes[index + 3]))
            index = end
        case .aaaa:
            guard length == 16 else { throw malformed("AAAA record with \(length) bytes of data") }
            data = .aaaa(IPv6Address(uncheckedBytes: Array(bytes[index..<end])))
            index = end
        case .txt:
            var strings: [[UInt8]] = []
            while index < end {
                let count = Int(bytes[index])
                guard index + 1 + count <= end else { throw malformed("TXT character-string runs past its record") }
                strings.append(Array(bytes[(index + 1)..<(index + 1 + count)]))
                index += 1 + count
            }
            data = .txt(strings)
        case .ns:
            data = .ns(try readName())
        case .soa:
            let mname = try readName()
            let rname = try readName()
            data = .soa(DNSStartOfAuthority(primaryNameServer: mname, responsibleMailbox: rname, serial: try readUInt32(),
                                            refresh: try readUInt32(), retry: try readUInt32(), expire: try readUInt32(), minimum: try readUInt32()))
        default:
            data = .other(type, Array(bytes[index..<end]))
            index = end
        }
        guard index == end else { throw malformed("\(type) record data has the wrong length") }
        return DNSResourceRecord(name: name, type: type, recordClass: recordClass, ttl: ttl, data: data)
    }

    mutating func readName() throws(DNSError) -> DNSName {
        var labels: [[UInt8]] = []
        var wireLength = 1
        var position = index
        var jumped = false
        // Pointers must go strictly backwards, so following them terminates.
        var lowestPointerTarget = index
        while true {
            guard position < bytes.count else { throw malformed("a name runs past the end of the message") }
            let length = bytes[position]
            switch length & 0xC0 {
            case 0x00:
                if length == 0 {
                    if !jumped { index = position + 1 }
                    return DNSName(uncheckedLabels: labels)
                }
                let count = Int(length)
                guard position + 1 + count <= bytes.count else { throw malformed("a label runs past the end of the message") }
                wireLength += 1 + count
                guard wireLength <= 255 else { throw malformed("a name longer than 255 bytes") }
                labels.append(Array(bytes[(position + 1)...(position + count)]))
                position += 1 + count
            case 0xC0:
                guard position + 1 < bytes.count else { throw malformed("a compression pointer runs past the end of the message") }
                let target = Int(length & 0x3F) << 8 | Int(bytes[position + 1])
                guard target < lowestPointerTarget else { throw malformed("a compression pointer that does not point backwards") }
                if !jumped { index = position + 2 }
                jumped = true
                lowestPointerTarget = target
                position = target
            default:
                throw malformed("an unsupported label type")
            }
        }
    }

    mutating func readUInt16() throws(DNSError) -> UInt16 {
        guard index + 2 <= bytes.count else { throw malformed("the message ends early") }
        defer { index += 2 }
        return UInt16(bytes[index]) << 8 | UInt16(bytes[index + 1])
    }

    mutating func readUInt32() throws(DNSError) -> UInt32 {
        let high = try readUInt16()
        let low = try readUInt16()
        return UInt32(high) << 16 | UInt32(low)
    }

    mutating func readBytes(_ count: Int) throws(DNSError) -> [UInt8] {
        guard index + count <= bytes.count else { throw malformed("the message ends early") }
        defer { index += count }
        return Array(bytes[index..<(index + count)])
    }

    func malformed(_ what: String) -> DNSError {
        DNSError(.malformedMessage, "Malformed DNS message: \(what)")
    }
}
