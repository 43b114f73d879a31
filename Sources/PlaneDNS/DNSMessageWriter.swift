/// Serializes DNS messages, compressing names against earlier ones (RFC 1035 §4.1.4). A
/// message whose counts or record data do not fit DNS's 16-bit fields, or that is longer
/// than 65535 bytes (the most TCP's length prefix can frame), is `messageTooLarge`.
public struct DNSMessageWriter {
    public private(set) var bytes: [UInt8] = []
    /// Suffixes written literally so far, with their offsets, for compression.
    private var written: [(labels: ArraySlice<[UInt8]>, offset: Int)] = []

    public init() { bytes.reserveCapacity(512) }

    /// The longest message: what TCP's two-byte length can frame.
    public static let maximumLength = 65535

    public static func serialize(_ message: DNSMessage) throws(DNSError) -> [UInt8] {
        var writer = DNSMessageWriter()
        try writer.write(message)
        return writer.bytes
    }

    static func tooLarge(_ what: String) -> DNSError {
        DNSError(.messageTooLarge, "The DNS message does not fit: \(what).")
    }

    static func count(_ value: Int, _ what: String) throws(DNSError) -> UInt16 {
        guard let count = UInt16(exactly: value) else { throw tooLarge("\(value) \(what)") }
        return count
    }

    public mutating func write(_ message: DNSMessage) throws(DNSError) {
        writeUInt16(message.header.id)
        writeUInt16(message.header.flags)
        writeUInt16(try Self.count(message.questions.count, "questions"))
        writeUInt16(try Self.count(message.answers.count, "answers"))
        writeUInt16(try Self.count(message.authorities.count, "authority records"))
        writeUInt16(try Self.count(message.additionals.count + (message.edns == nil ? 0 : 1), "additional records"))
        for question in message.questions {
            writeName(question.name)
            writeUInt16(question.type.rawValue)
            writeUInt16(question.recordClass.rawValue)
        }
        for record in message.answers { try writeRecord(record) }
        for record in message.authorities { try writeRecord(record) }
        for record in message.additionals { try writeRecord(record) }
        if let edns = message.edns {
            bytes.append(0)
            writeUInt16(DNSRecordType.opt.rawValue)
            writeUInt16(edns.udpPayloadSize)
            writeUInt32(UInt32(edns.extendedResponseCode) << 24 | UInt32(edns.version) << 16 | (edns.dnssecOK ? 0x8000 : 0))
            writeUInt16(try Self.count(edns.options.count, "bytes of EDNS options"))
            bytes.append(contentsOf: edns.options)
        }
        guard bytes.count <= Self.maximumLength else { throw Self.tooLarge("\(bytes.count) bytes") }
    }

    mutating func writeRecord(_ record: DNSResourceRecord) throws(DNSError) {
        writeName(record.name)
        writeUInt16(record.type.rawValue)
        writeUInt16(record.recordClass.rawValue)
        writeUInt32(record.ttl)
        let lengthOffset = bytes.count
        writeUInt16(0)
        switch record.data {
        case .a(let address): bytes.append(contentsOf: address.array)
        case .aaaa(let address): bytes.append(contentsOf: address.bytes)
        case .txt(let strings):
            for string in strings {
                bytes.append(UInt8(min(string.count, 255)))
                bytes.append(contentsOf: string.prefix(255))
            }
        case .ns(let name): writeName(name)
        case .soa(let soa):
            writeName(soa.primaryNameServer)
            writeName(soa.responsibleMailbox)
            for value in [soa.serial, soa.refresh, soa.retry, soa.expire, soa.minimum] { writeUInt32(value) }
        case .other(_, let data): bytes.append(contentsOf: data)
        }
        let length = try Self.count(bytes.count - lengthOffset - 2, "bytes of record data")
        bytes[lengthOffset] = UInt8(length >> 8)
        bytes[lengthOffset + 1] = UInt8(length & 0xFF)
    }

    mutating func writeName(_ name: DNSName) {
        let labels = name.labels
        for start in labels.indices {
            let suffix = labels[start...]
            if let offset = written.first(where: { Self.equalIgnoringCase($0.labels, suffix) })?.offset {
                writeUInt16(0xC000 | UInt16(offset))
                return
            }
            if bytes.count < 0x3FFF { written.append((suffix, bytes.count)) }
            bytes.append(UInt8(labels[start].count))
            bytes.append(contentsOf: labels[start])
        }
        bytes.append(0)
    }

    static func equalIgnoringCase(_ a: ArraySlice<[UInt8]>, _ b: ArraySlice<[UInt8]>) -> Bool {
        guard a.count == b.count else { return false }
        for (x, y) in zip(a, b) {
            guard x.count == y.count else { return false }
            for (p, q) in zip(x, y) where DNSName.lowercase(p) != DNSName.lowercase(q) { return false }
        }
        return true
    }

    mutating func writeUInt16(_ value: UInt16) {
        bytes.append(UInt8(value >> 8))
        bytes.append(UInt8(value & 0xFF))
    }

    mutating func writeUInt32(_ value: UInt32) {
        writeUInt16(UInt16(value >> 16))
        writeUInt16(UInt16(value & 0xFFFF))
    }
}
