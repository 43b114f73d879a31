import ContainerRuntime

/// One member of a tar archive, with the PAX and GNU extensions image layers use applied
/// (long names and link names, sizes, owners, times, extended attributes).
struct TarEntry: Sendable, Hashable {
    enum Kind: Sendable, Hashable {
        case file, directory, symlink, hardlink, characterDevice, blockDevice, fifo
    }

    var path: String
    var kind: Kind
    var mode: UInt32
    /// 0...4294967294 (a uid_t other than -1), checked when the header is read.
    var uid: UInt32
    var gid: UInt32
    var size: Int64
    var modificationTime: Int64
    var linkTarget: String
    var deviceMajor: UInt32
    var deviceMinor: UInt32
    /// `SCHILY.xattr.*` records: name → value.
    var extendedAttributes: [String: [UInt8]]
}

/// Reads a tar stream (ustar, PAX, GNU long names) entry by entry. After `next()` returns an
/// entry, its data is read with `readData` (or skipped by the next `next()`).
///
/// Every number in a header is range-checked where it is read (sizes, ids, record lengths),
/// so no arithmetic on them can overflow, and the archive as a whole stays within `limits`
/// (entries, bytes per file, bytes in all): a decompression bomb ends at the first limit.
struct TarReader<Source: ByteSource> {
    private var source: Source
    private var remainingData: Int64 = 0
    private var padding: Int64 = 0
    private let what: String
    private let limits: OCIImageLimits
    /// Entries and file bytes so far.
    private(set) var entryCount = 0
    private(set) var unpackedBytes: Int64 = 0

    /// The image's budget across its layers, charged with each file's size (nil: none).
    var budget: ImageUnpackBudget?

    init(_ source: Source, what: String, limits: OCIImageLimits = OCIImageLimits()) {
        self.source = source
        self.what = what
        self.limits = limits
    }

    private func malformed(_ why: String) -> RuntimeError {
        RuntimeError(.imageUnavailable, "\(what) is not a valid tar archive: \(why).")
    }

    /// Fills `buffer` completely; false at a clean end before the first byte.
    private mutating func readExactly(_ buffer: UnsafeMutableRawBufferPointer) throws(RuntimeError) -> Bool {
        var filled = 0
        while filled < buffer.count {
            let count = try source.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[filled...]))
            if count == 0 {
                if filled == 0 { return false }
                throw malformed("it ends in the middle of a block")
            }
            filled += count
        }
        return true
    }

    private mutating func skip(_ count: Int64) throws(RuntimeError) {
        var left = count
        var scratch = [UInt8](repeating: 0, count: 32 * 1024)
        while left > 0 {
            let step = Int(min(left, Int64(scratch.count)))
            let complete = try scratch.withBytes { raw throws(RuntimeError) in
                try readExactly(UnsafeMutableRawBufferPointer(rebasing: raw[..<step]))
            }
            guard complete else { throw malformed("it ends inside an entry's data") }
            left -= Int64(step)
        }
    }

    private mutating func readBytes(_ count: Int64) throws(RuntimeError) -> [UInt8] {
        guard count <= Int64(OCIImageLimits.maxExtendedHeaderBytes) else { throw malformed("an extended header of \(count) bytes is larger than 1 MiB") }
        var bytes = [UInt8](repeating: 0, count: Int(count))
        let complete = try bytes.withBytes { raw throws(RuntimeError) in try readExactly(raw) }
        guard complete || count == 0 else { throw malformed("it ends inside an extended header") }
        try skip(Self.padding(for: count))
        return bytes
    }

    static func padding(for size: Int64) -> Int64 { (512 - size % 512) % 512 }

    /// Reads the current entry's data; 0 at its end.
    mutating func readData(into buffer: UnsafeMutableRawBufferPointer) throws(RuntimeError) -> Int {
        guard remainingData > 0 else { return 0 }
        let step = Int(min(Int64(buffer.count), remainingData))
        let count = try source.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[..<step]))
        if count == 0 { throw malformed("it ends inside an entry's data") }
        remainingData -= Int64(count)
        return count
    }

    /// The next entry, or nil at the end of the archive.
    mutating func next() throws(RuntimeError) -> TarEntry? {
        try skip(remainingData + padding)
        remainingData = 0
        padding = 0
        var longName: String?
        var longLink: String?
        var pax: [String: [UInt8]] = [:]
        var extendedBytes: Int64 = 0
        var header = [UInt8](repeating: 0, count: 512)
        while true {
            let complete = try header.withBytes { raw throws(RuntimeError) in try readExactly(raw) }
            // The end: two zero blocks, or (leniently) the end of the stream.
            guard complete, header.contains(where: { $0 != 0 }) else { return nil }
            try verifyChecksum(header)
            let type = header[156]
            let size = try number(header, 124, 12, "size")
            switch type {
            case UInt8(ascii: "L"), UInt8(ascii: "K"), UInt8(ascii: "x"), UInt8(ascii: "g"):
                // Extended headers before one entry: at most 1 MiB together.
                guard size <= Int64(OCIImageLimits.maxExtendedHeaderBytes) - extendedBytes else {
                    throw malformed("the extended headers before one entry are larger than 1 MiB")
                }
                extendedBytes += size
            default:
                break
            }
            switch type {
            case UInt8(ascii: "L"):
                longName = Self.string(try readBytes(size))
                continue
            case UInt8(ascii: "K"):
                longLink = Self.string(try readBytes(size))
                continue
            case UInt8(ascii: "x"):
                pax.merge(try parsePAX(try readBytes(size))) { $1 }
                continue
            case UInt8(ascii: "g"):
                // Global headers hold defaults no layer tool relies on; skipped.
                _ = try readBytes(size)
                continue
            default:
                break
            }
            let kind: TarEntry.Kind
            switch type {
            case UInt8(ascii: "0"), 0, UInt8(ascii: "7"): kind = .file
            case UInt8(ascii: "1"): kind = .hardlink
            case UInt8(ascii: "2"): kind = .symlink
            case UInt8(ascii: "3"): kind = .characterDevice
            case UInt8(ascii: "4"): kind = .blockDevice
            case UInt8(ascii: "5"): kind = .directory
            case UInt8(ascii: "6"): kind = .fifo
            default: throw malformed("entry type '\(Character(UnicodeScalar(type)))' is not supported")
            }
            entryCount += 1
            guard entryCount <= limits.maxLayerEntries else {
                throw OCIImageLimits.exceeded("max_layer_entries", "\(what) has more than \(limits.maxLayerEntries) entries")
            }
            var path = Self.string(header[0..<100])
            let magic = header[257..<263]
            if magic.elementsEqual(Array("ustar\0".utf8)) || magic.elementsEqual(Array("ustar ".utf8)) {
                let prefix = Self.string(header[345..<500])
                if !prefix.isEmpty, magic.elementsEqual(Array("ustar\0".utf8)) { path = prefix + "/" + path }
            }
            if let longName { path = longName }
            if let value = pax["path"] { path = Self.string(value) }
            var link = Self.string(header[157..<257])
            if let longLink { link = longLink }
            if let value = pax["linkpath"] { link = Self.string(value) }
            guard path.utf8.count <= OCIImageLimits.maxPathBytes, link.utf8.count <= OCIImageLimits.maxPathBytes else {
                throw malformed("an entry's path or link target is longer than \(OCIImageLimits.maxPathBytes) bytes")
            }
            var entrySize = size
            if let value = pax["size"] {
                guard let parsed = Int64(Self.string(value)), parsed >= 0 else { throw malformed("a PAX size is not a number of bytes") }
                entrySize = parsed
            }
            // Every size is bounded here, so the arithmetic on it below cannot overflow.
            guard entrySize <= limits.maxFileBytes else {
                throw OCIImageLimits.exceeded("max_file_bytes", "\(what) has an entry '\(path.prefix(200))' of \(entrySize) bytes, more than \(limits.maxFileBytes)")
            }
            let uid = try Self.identifier(pax["uid"], header: try number(header, 108, 8, "uid"), "uid", malformed)
            let gid = try Self.identifier(pax["gid"], header: try number(header, 116, 8, "gid"), "gid", malformed)
            var mtime = try number(header, 136, 12, "mtime")
            if let value = pax["mtime"], let seconds = Int64(Self.string(value).split(separator: ".").first ?? "") { mtime = seconds }
            var attributes: [String: [UInt8]] = [:]
            for (key, value) in pax where key.hasPrefix("SCHILY.xattr.") {
                attributes[String(key.dropFirst("SCHILY.xattr.".count))] = value
            }
            let hasData = kind == .file
            if hasData {
                unpackedBytes += entrySize
                guard unpackedBytes <= limits.maxLayerUnpackedBytes else {
                    throw OCIImageLimits.exceeded("max_layer_unpacked_bytes", "\(what) unpacks to more than \(limits.maxLayerUnpackedBytes) bytes")
                }
                try budget?.charge(entrySize)
            }
            remainingData = hasData ? entrySize : 0
            padding = hasData ? Self.padding(for: entrySize) : 0
            // Some writers give links and directories a size; their data is skipped.
            if !hasData, entrySize > 0 { try skip(entrySize + Self.padding(for: entrySize)) }
            return TarEntry(
                path: path, kind: kind, mode: UInt32(truncatingIfNeeded: try number(header, 100, 8, "mode")) & 0o7777, uid: uid, gid: gid,
                size: hasData ? entrySize : 0, modificationTime: mtime, linkTarget: link,
                deviceMajor: UInt32(truncatingIfNeeded: try number(header, 329, 8, "devmajor")),
                deviceMinor: UInt32(truncatingIfNeeded: try number(header, 337, 8, "devminor")), extendedAttributes: attributes)
        }
    }

    /// A uid or gid: the PAX record's decimal value if there is one, else the header's; it
    /// must be a valid id (0...4294967294: uid_t without the reserved -1).
    static func identifier(_ pax: [UInt8]?, header: Int64, _ field: String, _ malformed: (String) -> RuntimeError) throws(RuntimeError) -> UInt32 {
        var value = header
        if let pax {
            guard let parsed = Int64(string(pax)) else { throw malformed("the PAX \(field) is not a number") }
            value = parsed
        }
        guard value >= 0, value < Int64(UInt32.max), let id = UInt32(exactly: value) else {
            throw malformed("the \(field) \(value) is not a valid id (0 to 4294967294)")
        }
        return id
    }

    private func verifyChecksum(_ header: [UInt8]) throws(RuntimeError) {
        let stored = try number(header, 148, 8, "checksum")
        var unsigned: Int64 = 0
        var signed: Int64 = 0
        for (index, byte) in header.enumerated() {
            let value = (148..<156).contains(index) ? UInt8(ascii: " ") : byte
            unsigned += Int64(value)
            signed += Int64(Int8(bitPattern: value))
        }
        guard stored == unsigned || stored == signed else { throw malformed("a header's checksum does not match") }
    }

    /// An octal field (NUL/space terminated) or a base-256 one (high bit set, GNU).
    private func number(_ header: [UInt8], _ offset: Int, _ length: Int, _ field: String) throws(RuntimeError) -> Int64 {
        let bytes = header[offset..<(offset + length)]
        if let first = bytes.first, first & 0x80 != 0 {
            guard first & 0x40 == 0 else { throw malformed("a negative \(field)") }
            var value: Int64 = Int64(first & 0x3F)
            for byte in bytes.dropFirst() {
                guard value < Int64.max >> 8 else { throw malformed("the \(field) field overflows") }
                value = value << 8 | Int64(byte)
            }
            return value
        }
        var value: Int64 = 0
        var seenDigit = false
        for byte in bytes {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "7"):
                guard value < Int64.max >> 3 else { throw malformed("the \(field) field overflows") }
                value = value << 3 | Int64(byte - UInt8(ascii: "0"))
                seenDigit = true
            case UInt8(ascii: " ") where !seenDigit:
                continue
            case 0, UInt8(ascii: " "):
                return value
            default:
                throw malformed("the \(field) field is not an octal number")
            }
        }
        return value
    }

    /// PAX records: "<length> <key>=<value>\n" each.
    private func parsePAX(_ bytes: [UInt8]) throws(RuntimeError) -> [String: [UInt8]] {
        var records: [String: [UInt8]] = [:]
        var index = 0
        while index < bytes.count {
            // `length <= bytes.count - index`: a huge length must not overflow the sum.
            guard let space = bytes[index...].firstIndex(of: UInt8(ascii: " ")),
                  let length = Int(Self.string(bytes[index..<space])), length > space - index, length <= bytes.count - index,
                  bytes[index + length - 1] == UInt8(ascii: "\n"),
                  let equals = bytes[(space + 1)..<(index + length)].firstIndex(of: UInt8(ascii: "="))
            else { throw malformed("a PAX extended header record is malformed") }
            let key = Self.string(bytes[(space + 1)..<equals])
            records[key] = Array(bytes[(equals + 1)..<(index + length - 1)])
            index += length
        }
        return records
    }

    /// The bytes up to the first NUL, as UTF-8 (invalid sequences repaired).
    static func string<Bytes: Collection<UInt8>>(_ bytes: Bytes) -> String {
        let end = bytes.firstIndex(of: 0) ?? bytes.endIndex
        return String(decoding: bytes[bytes.startIndex..<end], as: UTF8.self)
    }
}
