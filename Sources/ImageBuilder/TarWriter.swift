/// Writes POSIX ustar archives, deterministically (mtime 0, owner root), as image layers need.
public struct TarWriter: Sendable {
    public private(set) var bytes: [UInt8] = []

    public init() {}

    public enum Kind: Sendable { case file([UInt8]), directory, symlink(String), hardlink(String) }

    public mutating func append(path: String, kind: Kind, mode: UInt32) throws(ImageBuilderError) {
        var path = path
        while path.hasPrefix("/") { path.removeFirst() }
        if case .directory = kind, !path.hasSuffix("/") { path += "/" }
        let (prefix, name) = try Self.split(path)
        var header = [UInt8](repeating: 0, count: 512)
        func put(_ text: String, at offset: Int, length: Int) {
            let b = Array(text.utf8.prefix(length))
            for (i, byte) in b.enumerated() { header[offset + i] = byte }
        }
        func octal(_ value: Int, at offset: Int, length: Int) {
            let digits = String(value, radix: 8)
            put(String(repeating: "0", count: max(0, length - 1 - digits.count)) + digits, at: offset, length: length - 1)
        }
        put(name, at: 0, length: 100)
        octal(Int(mode & 0o7777), at: 100, length: 8)
        octal(0, at: 108, length: 8)
        octal(0, at: 116, length: 8)
        var size = 0
        switch kind {
        case .file(let data):
            size = data.count
            header[156] = UInt8(ascii: "0")
        case .directory:
            header[156] = UInt8(ascii: "5")
        case .symlink(let target), .hardlink(let target):
            if case .hardlink = kind { header[156] = UInt8(ascii: "1") } else { header[156] = UInt8(ascii: "2") }
            guard target.utf8.count <= 100 else { throw ImageBuilderError(.invalidInput, "Link target '\(target)' is longer than 100 bytes.") }
            put(target, at: 157, length: 100)
        }
        octal(size, at: 124, length: 12)
        octal(0, at: 136, length: 12)
        put("ustar", at: 257, length: 6)
        put("00", at: 263, length: 2)
        put("root", at: 265, length: 32)
        put("root", at: 297, length: 32)
        put(prefix, at: 345, length: 155)
        for i in 148..<156 { header[i] = 0x20 }
        let checksum = header.reduce(0) { $0 + Int($1) }
        let digits = String(checksum, radix: 8)
        put(String(repeating: "0", count: 6 - digits.count) + digits, at: 148, length: 6)
        header[154] = 0
        header[155] = 0x20
        bytes.append(contentsOf: header)
        if case .file(let data) = kind {
            bytes.append(contentsOf: data)
            let padding = (512 - data.count % 512) % 512
            bytes.append(contentsOf: [UInt8](repeating: 0, count: padding))
        }
    }

    /// Ends the archive (two zero blocks) and returns it.
    public mutating func finish() -> [UInt8] {
        bytes.append(contentsOf: [UInt8](repeating: 0, count: 1024))
        return bytes
    }

    static func split(_ path: String) throws(ImageBuilderError) -> (String, String) {
        let utf8 = Array(path.utf8)
        if utf8.count <= 100 { return ("", path) }
        // Split at a '/' so that the name fits 100 bytes and the prefix 155.
        for index in stride(from: utf8.count - 1, through: 0, by: -1) where utf8[index] == UInt8(ascii: "/") {
            let prefix = utf8[..<index], name = utf8[(index + 1)...]
            if prefix.count <= 155, name.count <= 100, !name.isEmpty {
                return (String(decoding: prefix, as: UTF8.self), String(decoding: name, as: UTF8.self))
            }
        }
        throw ImageBuilderError(.invalidInput, "Path '\(path)' is too long for a tar header.")
    }
}
