/// An IPv4 address, four bytes.
public struct IPv4Address: Sendable, Hashable, CustomStringConvertible {
    public var bytes: (UInt8, UInt8, UInt8, UInt8)

    public init(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) { bytes = (a, b, c, d) }

    /// Parses a dotted quad (`"203.0.113.7"`); nil for anything else.
    public init?(_ text: String) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var values: [UInt8] = []
        for part in parts {
            guard !part.isEmpty, part.count <= 3, part.allSatisfy(\.isASCII), let value = UInt8(part) else { return nil }
            if part.count > 1 && part.first == "0" { return nil }
            values.append(value)
        }
        self.init(values[0], values[1], values[2], values[3])
    }

    public var array: [UInt8] { [bytes.0, bytes.1, bytes.2, bytes.3] }
    public var description: String { "\(bytes.0).\(bytes.1).\(bytes.2).\(bytes.3)" }

    public static func == (l: Self, r: Self) -> Bool { l.array == r.array }
    public func hash(into hasher: inout Hasher) { hasher.combine(array) }
}

/// An IPv6 address, sixteen bytes.
public struct IPv6Address: Sendable, Hashable, CustomStringConvertible {
    public var bytes: [UInt8]

    init(uncheckedBytes bytes: [UInt8]) { self.bytes = bytes }

    /// Parses the textual forms of RFC 4291 §2.2 (with `::` and an embedded dotted quad).
    public init?(_ text: String) {
        guard text.contains(":"), text.allSatisfy({ $0.isHexDigit || $0 == ":" || $0 == "." }) else { return nil }
        var groups: [UInt16] = []
        var tail: [UInt16] = []
        var sawGap = false
        let halves = Self.split(text, atDoubleColon: ())
        guard halves.count <= 2 else { return nil }
        func parse(_ part: String, last: Bool) -> [UInt16]? {
            if part.isEmpty { return [] }
            var out: [UInt16] = []
            let pieces = part.split(separator: ":", omittingEmptySubsequences: false)
            for (index, piece) in pieces.enumerated() {
                if last && index == pieces.count - 1 && piece.contains(".") {
                    guard let v4 = IPv4Address(String(piece)) else { return nil }
                    let b = v4.array
                    out.append(UInt16(b[0]) << 8 | UInt16(b[1]))
                    out.append(UInt16(b[2]) << 8 | UInt16(b[3]))
                    continue
                }
                guard (1...4).contains(piece.count), let value = UInt16(piece, radix: 16) else { return nil }
                out.append(value)
            }
            return out
        }
        if halves.count == 2 {
            sawGap = true
            guard let head = parse(halves[0], last: false), let rest = parse(halves[1], last: true) else { return nil }
            groups = head
            tail = rest
            guard groups.count + tail.count <= 7 else { return nil }
        } else {
            guard let all = parse(halves[0], last: true), all.count == 8 else { return nil }
            groups = all
        }
        if sawGap { groups += Array(repeating: 0, count: 8 - groups.count - tail.count) + tail }
        self.bytes = groups.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] }
    }

    /// The parts of `text` around each `::`.
    static func split(_ text: String, atDoubleColon: Void) -> [String] {
        var parts: [String] = []
        var current = ""
        var previousWasColon = false
        for character in text {
            if character == ":" && previousWasColon {
                current.removeLast()
                parts.append(current)
                current = ""
                previousWasColon = false
                continue
            }
            current.append(character)
            previousWasColon = character == ":"
        }
        parts.append(current)
        return parts
    }

    public var description: String {
        stride(from: 0, to: 16, by: 2).map { String(UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]), radix: 16) }.joined(separator: ":")
    }
}
