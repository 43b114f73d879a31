/// Serializes DNS messages, compressing names against earlier ones (RFC 1035 §4.1.4).
public struct DNSMessageWriter {
    public private(set) var bytes: [UInt8] = []
    /// Suffixes written literally so far, with their offsets, for compression.
    private var written: [(labels: ArraySlice<[UInt8]>, offset: Int)] = []

    public init() { bytes.reserveCapacity(512) }

    public static func serialize(_ message: DNSMessage) -> [UInt8] {
        var writer = DNSMessageWriter()
        writer.write(message)
        return writer.bytes
    }

    public mutating func write(_ message: DNSMessage) {
        writeUInt16(message.header.id)
        writeUInt16(message.header.flags)
        writeUInt16(UInt16(message.questions.count))
        writeUInt16(UInt16(message.answers.count))
        writeUInt16(UInt16(message.authorities.count))
        writeUInt16(UInt16(message.additionals.count + (message.edns == nil ? 0 : 1)))
        for question in message.questions {
            writeName(question.name)
            writeUInt16(question.type.rawValue)
            writeUInt16(question.recordClass.rawValue)
        }
        for record in message.answers { writeRecord(record) }
        for record in message.authorities { writeRecord(record) }
        for record in message.additionals { writeRecord(record) }
        if let edns = message.edns {
            bytes.append(0)
            writeUInt16(DNSRecordType.opt.rawValue)
            writeUInt16(edns.udpPayloadSize)
            writeUInt32(UInt32(edns.extendedResponseCode) << 24 | UInt32(edns.version) << 16 | (edns.dnssecOK ? 0x8000 : 0))
            writeUInt16(UInt16(edns.options.count))
            bytes.append(contentsOf: edns.options)
        }
    }

    mutating func writeRecord(_ record: DNSResourceRecord) {
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
        let length = bytes.count - lengthOffset - 2
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
