/// NATS message headers (`HPUB`/`HMSG`): an optional status line (`NATS/1.0 503`) and
/// ordered fields. Names are compared case-insensitively on lookup; order and case are kept.
public struct NATSHeaders: Sendable, Hashable, ExpressibleByDictionaryLiteral {
    public var status: Int?
    public var statusDescription: String?
    public private(set) var fields: [(name: String, value: String)]

    public init() { fields = [] }

    public init(dictionaryLiteral elements: (String, String)...) {
        fields = elements.map { (name: $0.0, value: $0.1) }
    }

    public var isEmpty: Bool { fields.isEmpty && status == nil }

    /// The first value of `name`.
    public subscript(name: String) -> String? {
        get {
            fields.first(where: { $0.name == name })?.value
                ?? fields.first(where: { $0.name.lowercased() == name.lowercased() })?.value
        }
        set {
            fields.removeAll { $0.name.lowercased() == name.lowercased() }
            if let newValue { fields.append((name: name, value: newValue)) }
        }
    }

    public mutating func append(_ name: String, _ value: String) {
        fields.append((name: name, value: value))
    }

    public static func == (lhs: NATSHeaders, rhs: NATSHeaders) -> Bool {
        lhs.status == rhs.status && lhs.statusDescription == rhs.statusDescription
            && lhs.fields.count == rhs.fields.count
            && zip(lhs.fields, rhs.fields).allSatisfy { $0.name == $1.name && $0.value == $1.value }
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(status)
        for f in fields { hasher.combine(f.name); hasher.combine(f.value) }
    }

    /// Checks that names and values can be written (no CR/LF, names without ':' or spaces).
    func validate() throws(NATSError) {
        for f in fields {
            if f.name.isEmpty || f.name.utf8.contains(where: { $0 <= 0x20 || $0 == UInt8(ascii: ":") || $0 == 0x7F }) {
                throw NATSError(.invalidArgument, "Header name '\(f.name)' is invalid: use printable ASCII without spaces or ':'.")
            }
            if f.value.utf8.contains(where: { $0 == 0x0D || $0 == 0x0A }) {
                throw NATSError(.invalidArgument, "The value of header '\(f.name)' contains a line break.")
            }
        }
    }

    /// Serialized form, `NATS/1.0\r\n` + fields + `\r\n`.
    var encoded: [UInt8] {
        var out = Array("NATS/1.0".utf8)
        if let status {
            out.append(contentsOf: Array(" \(status)".utf8))
            if let statusDescription { out.append(contentsOf: Array(" \(statusDescription)".utf8)) }
        }
        out.append(contentsOf: [0x0D, 0x0A])
        for f in fields {
            out.append(contentsOf: Array(f.name.utf8))
            out.append(contentsOf: [UInt8(ascii: ":"), UInt8(ascii: " ")])
            out.append(contentsOf: Array(f.value.utf8))
            out.append(contentsOf: [0x0D, 0x0A])
        }
        out.append(contentsOf: [0x0D, 0x0A])
        return out
    }

    /// Parses the header block of an `HMSG`.
    static func parse(_ bytes: some Collection<UInt8>) throws(NATSError) -> NATSHeaders {
        let text = String(decoding: bytes, as: UTF8.self)
        var lines = text.components(separatedByCRLF: ())
        guard let first = lines.first, first.hasPrefix("NATS/1.0") else {
            throw NATSError(.protocolError, "Header block does not start with NATS/1.0.")
        }
        lines.removeFirst()
        var headers = NATSHeaders()
        let statusPart = first.dropFirst("NATS/1.0".count).drop(while: { $0 == " " })
        if !statusPart.isEmpty {
            let codeText = statusPart.prefix(while: { $0 != " " })
            guard let code = Int(codeText) else { throw NATSError(.protocolError, "Invalid header status line '\(first)'.") }
            headers.status = code
            let description = statusPart.dropFirst(codeText.count).drop(while: { $0 == " " })
            if !description.isEmpty { headers.statusDescription = String(description) }
        }
        for line in lines where !line.isEmpty {
            guard let colon = line.firstIndex(of: ":") else {
                throw NATSError(.protocolError, "Invalid header line '\(line)'.")
            }
            let name = String(line[..<colon])
            let value = String(line[line.index(after: colon)...].drop(while: { $0 == " " || $0 == "\t" }))
            headers.append(name, value)
        }
        return headers
    }
}

extension String {
    func components(separatedByCRLF: Void) -> [String] {
        var result: [String] = []
        var current: [UInt8] = []
        var iterator = utf8.makeIterator()
        var pendingCR = false
        while let byte = iterator.next() {
            if pendingCR {
                pendingCR = false
                if byte == 0x0A {
                    result.append(String(decoding: current, as: UTF8.self))
                    current.removeAll(keepingCapacity: true)
                    continue
                }
                current.append(0x0D)
            }
            if byte == 0x0D { pendingCR = true; continue }
            current.append(byte)
        }
        if pendingCR { current.append(0x0D) }
        result.append(String(decoding: current, as: UTF8.self))
        return result
    }
}
