/// A domain name as a list of labels (raw bytes, case preserved). Comparisons that matter
/// for lookup go through `key`, the lower-cased dotted form without the trailing dot.
public struct DNSName: Sendable, Hashable, CustomStringConvertible {
    public private(set) var labels: [[UInt8]]

    public static let root = DNSName(uncheckedLabels: [])

    init(uncheckedLabels labels: [[UInt8]]) { self.labels = labels }

    /// Parses a dotted name (`"Abc.plane.test"`, a trailing dot is optional, `"."` is the
    /// root). Labels are 1...63 bytes, the whole name at most 255 bytes on the wire.
    public init(_ text: String) throws(DNSError) {
        var trimmed = Substring(text)
        if trimmed.hasSuffix(".") { trimmed = trimmed.dropLast() }
        if trimmed.isEmpty {
            self.labels = []
            return
        }
        var labels: [[UInt8]] = []
        for part in trimmed.split(separator: ".", omittingEmptySubsequences: false) {
            let bytes = Array(part.utf8)
            guard !bytes.isEmpty, bytes.count <= 63 else {
                throw DNSError(.invalidName, "'\(text)' is not a domain name: every label must have 1 to 63 characters")
            }
            guard bytes.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
                throw DNSError(.invalidName, "'\(text)' is not a domain name: only printable ASCII without spaces is allowed")
            }
            labels.append(bytes)
        }
        self.labels = labels
        guard wireLength <= 255 else {
            throw DNSError(.invalidName, "'\(text)' is longer than the 255 bytes a domain name may have")
        }
    }

    /// Length of the uncompressed wire form.
    public var wireLength: Int { labels.reduce(1) { $0 + 1 + $1.count } }

    /// Lower-cased dotted form without a trailing dot (`""` for the root): the lookup key.
    public var key: String { lookupKey(refusingDots: false) ?? "" }

    /// `key`, or nil when a label holds a dot byte (possible on the wire): such a name's
    /// key would read as more labels, i.e. as another name.
    public var unambiguousKey: String? { lookupKey(refusingDots: true) }

    private func lookupKey(refusingDots: Bool) -> String? {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(wireLength)
        for label in labels {
            if !bytes.isEmpty { bytes.append(UInt8(ascii: ".")) }
            for byte in label {
                if refusingDots, byte == UInt8(ascii: ".") { return nil }
                bytes.append(Self.lowercase(byte))
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The last `count` labels (a parent domain of this name).
    public func suffix(labels count: Int) -> DNSName {
        DNSName(uncheckedLabels: Array(labels.suffix(count)))
    }

    public var description: String {
        labels.isEmpty ? "." : labels.map { String(decoding: $0, as: UTF8.self) }.joined(separator: ".") + "."
    }

    /// The name with `label` in front of it.
    public func prepending(_ label: String) throws(DNSError) -> DNSName {
        try DNSName(label + "." + description)
    }

    static func lowercase(_ byte: UInt8) -> UInt8 {
        (byte >= 0x41 && byte <= 0x5A) ? byte | 0x20 : byte
    }
}
