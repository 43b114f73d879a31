/// Tar archives written byte by byte, as a hostile image author would: any entry type
/// (FIFOs, devices), any header field (sizes in base 256, negative ids), any PAX record
/// (lengths that lie, sizes of 2^63). For tests of what reads image layers.
public struct CraftedTar: Sendable {
    public private(set) var bytes: [UInt8] = []

    public init() {}

    public enum EntryType: UInt8, Sendable {
        case file = 0x30, hardlink = 0x31, symlink = 0x32, characterDevice = 0x33, blockDevice = 0x34, directory = 0x35, fifo = 0x36
        case pax = 0x78, globalPAX = 0x67, gnuLongName = 0x4C
    }

    /// One header block and its data (padded to 512 bytes). `sizeField` replaces the octal
    /// size (e.g. a base-256 value); `data` is written as given, whatever the size says.
    public mutating func entry(_ name: String, _ type: EntryType, data: [UInt8] = [], size: Int64? = nil, sizeField: [UInt8]? = nil,
                               uid: Int64 = 0, gid: Int64 = 0, mode: UInt32 = 0o644, link: String = "", deviceMajor: UInt32 = 0, deviceMinor: UInt32 = 0) {
        var header = [UInt8](repeating: 0, count: 512)
        func put(_ text: String, at offset: Int, length: Int) {
            for (index, byte) in text.utf8.prefix(length).enumerated() { header[offset + index] = byte }
        }
        func octal(_ value: Int64, at offset: Int, length: Int) {
            put(String(repeating: "0", count: max(0, length - 1 - String(value, radix: 8).count)) + String(value, radix: 8), at: offset, length: length - 1)
        }
        put(name, at: 0, length: 100)
        octal(Int64(mode), at: 100, length: 8)
        if uid >= 0 { octal(uid, at: 108, length: 8) } else { put(String(uid), at: 108, length: 7) }
        if gid >= 0 { octal(gid, at: 116, length: 8) } else { put(String(gid), at: 116, length: 7) }
        if let sizeField {
            for (index, byte) in sizeField.prefix(12).enumerated() { header[124 + index] = byte }
        } else {
            octal(size ?? Int64(data.count), at: 124, length: 12)
        }
        octal(1_700_000_000, at: 136, length: 12)
        header[156] = type.rawValue
        put(link, at: 157, length: 100)
        put("ustar\0", at: 257, length: 6)
        put("00", at: 263, length: 2)
        octal(Int64(deviceMajor), at: 329, length: 8)
        octal(Int64(deviceMinor), at: 337, length: 8)
        for index in 148..<156 { header[index] = UInt8(ascii: " ") }
        let checksum = header.reduce(0) { $0 + Int64($1) }
        octal(checksum, at: 148, length: 7)
        header[155] = UInt8(ascii: " ")
        bytes += header
        bytes += data
        bytes += [UInt8](repeating: 0, count: (512 - data.count % 512) % 512)
    }

    /// A PAX extended header for the next entry. Each record is `"<length> key=value\n"`
    /// with its true length unless `lengths` gives another.
    public mutating func pax(_ records: [(String, String)], lengths: [Int?] = [], global: Bool = false) {
        var data: [UInt8] = []
        for (index, (key, value)) in records.enumerated() {
            let body = " \(key)=\(value)\n"
            var length = body.utf8.count + 1
            while String(length).utf8.count + body.utf8.count != length { length += 1 }
            let written = index < lengths.count ? lengths[index] ?? length : length
            data += Array("\(written)\(body)".utf8)
        }
        entry("PaxHeaders/x", global ? .globalPAX : .pax, data: data)
    }

    /// Two zero blocks: the end of the archive.
    public func finish() -> [UInt8] { bytes + [UInt8](repeating: 0, count: 1024) }

    /// A size field in GNU base-256 form (the high bit of the first byte set).
    public static func base256(_ value: UInt64) -> [UInt8] {
        var field = [UInt8](repeating: 0, count: 12)
        field[0] = 0x80
        var remaining = value
        for index in stride(from: 11, through: 4, by: -1) {
            field[index] = UInt8(remaining & 0xFF)
            remaining >>= 8
        }
        return field
    }
}
