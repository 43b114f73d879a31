/// A strict TOML 1.0 parser producing a `ConfigTable` (ADR 0002: the C++ parser behind
/// TOMLKit aborts on some malformed files, e.g. a table header `[` followed by a newline).
///
/// Every malformed input is a `SyntaxError` naming its line and column; nesting of arrays
/// and inline tables is bounded (`maximumDepth`), keys may not be defined twice, tables
/// not twice, inline tables and arrays of inline tables not extended. Date-times are kept as
/// text (`ConfigValue.dateTime`), after their form is checked.
public struct TOMLParser {
    public struct SyntaxError: Error, Sendable, Hashable, CustomStringConvertible {
        public var message: String
        public var line: Int
        public var column: Int
        public var description: String { "\(message) at line \(line), column \(column)" }
    }

    /// Arrays and inline tables nested deeper than this are refused (the parser recurses
    /// once per level).
    public static let maximumDepth = 64

    public static func parse(_ text: String) throws(SyntaxError) -> ConfigTable {
        var parser = TOMLParser(bytes: Array(text.utf8))
        try parser.parseDocument()
        return parser.root.configTable
    }

    // MARK: The tree being built

    /// A table while the document is read: its keys in order, and how it came to be, which
    /// decides what may still be added to it.
    final class Table {
        enum Origin { case implicit, header, dotted, inline, arrayElement }
        var origin: Origin
        var order: [String] = []
        var entries: [String: Entry] = [:]
        init(_ origin: Origin) { self.origin = origin }

        var configTable: ConfigTable {
            ConfigTable(order.map { key in
                switch entries[key]! {
                case .value(let value): (key, value)
                case .table(let table): (key, .table(table.configTable))
                case .tableArray(let tables): (key, .array(tables.map { .table($0.configTable) }))
                }
            })
        }

        func add(_ key: String, _ entry: Entry) {
            order.append(key)
            entries[key] = entry
        }
    }

    enum Entry {
        case value(ConfigValue)
        case table(Table)
        /// `[[name]]`.
        case tableArray([Table])
    }

    private let bytes: [UInt8]
    private var index = 0
    private let root = Table(.header)
    private var current: Table

    private init(bytes: [UInt8]) {
        self.bytes = bytes
        current = root
    }

    // MARK: Errors

    private func error(_ message: String, at position: Int? = nil) -> SyntaxError {
        let end = min(position ?? index, bytes.count)
        var line = 1
        var lineStart = 0
        for offset in 0..<end where bytes[offset] == 0x0A {
            line += 1
            lineStart = offset + 1
        }
        return SyntaxError(message: message, line: line, column: end - lineStart + 1)
    }

    private var peek: UInt8? { index < bytes.count ? bytes[index] : nil }
    private func peek(_ offset: Int) -> UInt8? { index + offset < bytes.count ? bytes[index + offset] : nil }

    private func starts(with text: StaticString) -> Bool {
        let count = text.utf8CodeUnitCount
        guard index + count <= bytes.count else { return false }
        let expected = UnsafeBufferPointer(start: text.utf8Start, count: count)
        for offset in 0..<count where bytes[index + offset] != expected[offset] { return false }
        return true
    }

    // MARK: Document

    private mutating func parseDocument() throws(SyntaxError) {
        while index < bytes.count {
            skipWhitespace()
            guard let byte = peek else { break }
            switch byte {
            case UInt8(ascii: "#"), 0x0A, 0x0D:
                try endOfLine()
            case UInt8(ascii: "["):
                if peek(1) == UInt8(ascii: "[") { try parseTableArrayHeader() } else { try parseTableHeader() }
                try endOfLine()
            default:
                try parseKeyValue(into: current)
                try endOfLine()
            }
        }
    }

    private mutating func skipWhitespace() {
        while let byte = peek, byte == 0x20 || byte == 0x09 { index += 1 }
    }

    /// Whitespace, an optional comment, then a newline or the end of the input.
    private mutating func endOfLine() throws(SyntaxError) {
        skipWhitespace()
        if peek == UInt8(ascii: "#") {
            index += 1
            while let byte = peek, byte != 0x0A, byte != 0x0D {
                guard byte == 0x09 || (byte >= 0x20 && byte != 0x7F) else { throw error("a control character in a comment") }
                index += 1
            }
        }
        guard let byte = peek else { return }
        if byte == 0x0A {
            index += 1
        } else if byte == 0x0D, peek(1) == 0x0A {
            index += 2
        } else {
            throw error(byte == 0x0D ? "a carriage return without a line feed" : "expected the end of the line")
        }
    }

    /// Whitespace, newlines and comments (inside arrays).
    private mutating func skipBlank() throws(SyntaxError) {
        while true {
            skipWhitespace()
            guard let byte = peek else { return }
            if byte == UInt8(ascii: "#") || byte == 0x0A || byte == 0x0D { try endOfLine() } else { return }
        }
    }

    // MARK: Keys

    private mutating func parseKey() throws(SyntaxError) -> [String] {
        var parts: [String] = []
        while true {
            skipWhitespace()
            guard let byte = peek else { throw error("expected a key") }
            switch byte {
            case UInt8(ascii: "\""):
                guard !starts(with: "\"\"\"") else { throw error("a key cannot be a multi-line string") }
                parts.append(try parseBasicString())
            case UInt8(ascii: "'"):
                guard !starts(with: "'''") else { throw error("a key cannot be a multi-line string") }
                parts.append(try parseLiteralString())
            default:
                let start = index
                while let byte = peek, Self.isBareKeyByte(byte) { index += 1 }
                guard index > start else { throw error("expected a key (letters, digits, '-', '_' or a quoted string)") }
                parts.append(String(decoding: bytes[start..<index], as: UTF8.self))
            }
            skipWhitespace()
            guard peek == UInt8(ascii: ".") else { return parts }
            index += 1
        }
    }

    static func isBareKeyByte(_ byte: UInt8) -> Bool {
        (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A) || byte == 0x2D || byte == 0x5F
    }

    private func dotted(_ parts: [String]) -> String { parts.joined(separator: ".") }

    // MARK: Tables

    /// Walks `[a.b.c]`'s path to the table that will hold `c`, making missing tables.
    private func parent(of path: [String], start: Int) throws(SyntaxError) -> Table {
        var table = root
        for (offset, part) in path.dropLast().enumerated() {
            switch table.entries[part] {
            case nil:
                let child = Table(.implicit)
                table.add(part, .table(child))
                table = child
            case .table(let child):
                guard child.origin != .inline else { throw error("'\(dotted(Array(path[...offset])))' is an inline table; it cannot be extended", at: start) }
                table = child
            case .tableArray(let tables):
                table = tables[tables.count - 1]
            case .value:
                throw error("'\(dotted(Array(path[...offset])))' is a value, not a table", at: start)
            }
        }
        return table
    }

    private mutating func parseTableHeader() throws(SyntaxError) {
        let start = index
        index += 1
        let path = try parseKey()
        skipWhitespace()
        guard peek == UInt8(ascii: "]") else { throw error("expected ']' to end the table header") }
        index += 1
        let parent = try parent(of: path, start: start)
        let name = path[path.count - 1]
        switch parent.entries[name] {
        case nil:
            let table = Table(.header)
            parent.add(name, .table(table))
            current = table
        case .table(let table) where table.origin == .implicit:
            table.origin = .header
            current = table
        default:
            throw error("'\(dotted(path))' is defined twice", at: start)
        }
    }

    private mutating func parseTableArrayHeader() throws(SyntaxError) {
        let start = index
        index += 2
        let path = try parseKey()
        skipWhitespace()
        guard starts(with: "]]") else { throw error("expected ']]' to end the array of tables header") }
        index += 2
        let parent = try parent(of: path, start: start)
        let name = path[path.count - 1]
        let table = Table(.arrayElement)
        switch parent.entries[name] {
        case nil:
            parent.add(name, .tableArray([table]))
        case .tableArray(let tables):
            parent.entries[name] = .tableArray(tables + [table])
        default:
            throw error("'\(dotted(path))' is already defined and is not an array of tables", at: start)
        }
        current = table
    }

    // MARK: Key/value pairs

    private mutating func parseKeyValue(into table: Table, depth: Int = 0) throws(SyntaxError) {
        let start = index
        let path = try parseKey()
        skipWhitespace()
        guard peek == UInt8(ascii: "=") else { throw error("expected '=' after the key '\(dotted(path))'") }
        index += 1
        skipWhitespace()
        let value = try parseValue(depth: depth)
        var target = table
        for (offset, part) in path.dropLast().enumerated() {
            switch target.entries[part] {
            case nil:
                let child = Table(.dotted)
                target.add(part, .table(child))
                target = child
            case .table(let child) where child.origin == .dotted:
                target = child
            default:
                throw error("'\(dotted(Array(path[...offset])))' is already defined; it cannot be extended with a dotted key", at: start)
            }
        }
        let name = path[path.count - 1]
        guard target.entries[name] == nil else { throw error("the key '\(dotted(path))' is defined twice", at: start) }
        target.add(name, value)
    }

    // MARK: Values

    private mutating func parseValue(depth: Int) throws(SyntaxError) -> Entry {
        guard let byte = peek else { throw error("expected a value") }
        switch byte {
        case UInt8(ascii: "\""):
            return .value(.string(starts(with: "\"\"\"") ? try parseMultilineString(basic: true) : try parseBasicString()))
        case UInt8(ascii: "'"):
            return .value(.string(starts(with: "'''") ? try parseMultilineString(basic: false) : try parseLiteralString()))
        case UInt8(ascii: "["):
            guard depth < Self.maximumDepth else { throw error("arrays and inline tables nested deeper than \(Self.maximumDepth)") }
            return .value(try parseArray(depth: depth + 1))
        case UInt8(ascii: "{"):
            guard depth < Self.maximumDepth else { throw error("arrays and inline tables nested deeper than \(Self.maximumDepth)") }
            return .table(try parseInlineTable(depth: depth + 1))
        case UInt8(ascii: "t") where starts(with: "true"):
            index += 4
            return .value(.boolean(true))
        case UInt8(ascii: "f") where starts(with: "false"):
            index += 5
            return .value(.boolean(false))
        default:
            return .value(try parseNumberOrDate())
        }
    }

    private mutating func parseArray(depth: Int) throws(SyntaxError) -> ConfigValue {
        index += 1
        var items: [ConfigValue] = []
        while true {
            try skipBlank()
            if peek == UInt8(ascii: "]") {
                index += 1
                return .array(items)
            }
            switch try parseValue(depth: depth) {
            case .value(let value): items.append(value)
            case .table(let table): items.append(.table(table.configTable))
            case .tableArray: throw error("an array of tables inside an array")
            }
            try skipBlank()
            guard let byte = peek else { throw error("the array is not closed with ']'") }
            if byte == UInt8(ascii: ",") {
                index += 1
            } else if byte != UInt8(ascii: "]") {
                throw error("expected ',' or ']' in the array")
            }
        }
    }

    private mutating func parseInlineTable(depth: Int) throws(SyntaxError) -> Table {
        index += 1
        let table = Table(.dotted)
        skipWhitespace()
        if peek == UInt8(ascii: "}") {
            index += 1
            table.origin = .inline
            return table
        }
        while true {
            try parseKeyValue(into: table, depth: depth)
            skipWhitespace()
            guard let byte = peek else { throw error("the inline table is not closed with '}'") }
            index += 1
            if byte == UInt8(ascii: "}") { break }
            guard byte == UInt8(ascii: ",") else { throw error("expected ',' or '}' in the inline table (it must fit on one line)", at: index - 1) }
            skipWhitespace()
        }
        // Nothing may be added to it later, also not to the tables its dotted keys made.
        func seal(_ table: Table) {
            table.origin = .inline
            for entry in table.entries.values { if case .table(let child) = entry { seal(child) } }
        }
        seal(table)
        return table
    }

    // MARK: Strings

    private func isAllowedInString(_ byte: UInt8) -> Bool { byte == 0x09 || (byte >= 0x20 && byte != 0x7F) }

    private mutating func parseBasicString() throws(SyntaxError) -> String {
        index += 1
        var out: [UInt8] = []
        while true {
            guard let byte = peek else { throw error("the string is not closed with '\"'") }
            switch byte {
            case UInt8(ascii: "\""):
                index += 1
                return String(decoding: out, as: UTF8.self)
            case UInt8(ascii: "\\"):
                try parseEscape(into: &out)
            default:
                guard isAllowedInString(byte) else { throw error("a control character in a string") }
                out.append(byte)
                index += 1
            }
        }
    }

    private mutating func parseEscape(into out: inout [UInt8]) throws(SyntaxError) {
        index += 1
        guard let escape = peek else { throw error("an unfinished escape") }
        index += 1
        switch escape {
        case UInt8(ascii: "b"): out.append(0x08)
        case UInt8(ascii: "t"): out.append(0x09)
        case UInt8(ascii: "n"): out.append(0x0A)
        case UInt8(ascii: "f"): out.append(0x0C)
        case UInt8(ascii: "r"): out.append(0x0D)
        case UInt8(ascii: "e"): out.append(0x1B)
        case UInt8(ascii: "\""): out.append(0x22)
        case UInt8(ascii: "\\"): out.append(0x5C)
        case UInt8(ascii: "u"), UInt8(ascii: "U"):
            let count = escape == UInt8(ascii: "u") ? 4 : 8
            var value: UInt32 = 0
            for _ in 0..<count {
                guard let byte = peek, let digit = Self.hexValue(byte) else { throw error("\\u and \\U take \(count) hexadecimal digits") }
                value = value << 4 | UInt32(digit)
                index += 1
            }
            guard let scalar = Unicode.Scalar(value) else { throw error("\\u\(String(value, radix: 16)) is not a Unicode scalar value") }
            out.append(contentsOf: Array(String(Character(scalar)).utf8))
        default:
            throw error("an unknown escape '\\\(Character(Unicode.Scalar(escape)))'", at: index - 2)
        }
    }

    static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case 0x30...0x39: byte - 0x30
        case 0x41...0x46: byte - 0x41 + 10
        case 0x61...0x66: byte - 0x61 + 10
        default: nil
        }
    }

    private mutating func parseLiteralString() throws(SyntaxError) -> String {
        index += 1
        let start = index
        while true {
            guard let byte = peek else { throw error("the string is not closed with \"'\"") }
            if byte == UInt8(ascii: "'") {
                index += 1
                return String(decoding: bytes[start..<(index - 1)], as: UTF8.self)
            }
            guard isAllowedInString(byte) else { throw error("a control character in a string") }
            index += 1
        }
    }

    /// A multi-line string (`"""` basic, with escapes and line-ending backslashes, or `'''`
    /// literal): newlines are kept, a newline right after the opening delimiter is not, and up
    /// to two quotes before the closing three belong to the string.
    private mutating func parseMultilineString(basic: Bool) throws(SyntaxError) -> String {
        let quote = basic ? UInt8(ascii: "\"") : UInt8(ascii: "'")
        index += 3
        if peek == 0x0A { index += 1 } else if peek == 0x0D, peek(1) == 0x0A { index += 2 }
        var out: [UInt8] = []
        while true {
            guard let byte = peek else { throw error(basic ? "the multi-line string is not closed with '\"\"\"'" : "the multi-line string is not closed with \"'''\"") }
            if byte == quote {
                var run = 0
                while peek(run) == quote { run += 1 }
                guard run <= 5 else { throw error("more than five quotes in a row in a multi-line string") }
                out.append(contentsOf: [UInt8](repeating: quote, count: run >= 3 ? run - 3 : run))
                index += run
                if run >= 3 { return String(decoding: out, as: UTF8.self) }
            } else if basic, byte == UInt8(ascii: "\\") {
                // A line-ending backslash trims the whitespace and newlines that follow.
                var lookahead = index + 1
                while lookahead < bytes.count, bytes[lookahead] == 0x20 || bytes[lookahead] == 0x09 { lookahead += 1 }
                if lookahead < bytes.count, bytes[lookahead] == 0x0A || (bytes[lookahead] == 0x0D && lookahead + 1 < bytes.count && bytes[lookahead + 1] == 0x0A) {
                    index = lookahead
                    while let next = peek, next == 0x20 || next == 0x09 || next == 0x0A || (next == 0x0D && peek(1) == 0x0A) {
                        index += next == 0x0D ? 2 : 1
                    }
                } else {
                    try parseEscape(into: &out)
                }
            } else if byte == 0x0A {
                out.append(byte)
                index += 1
            } else if byte == 0x0D, peek(1) == 0x0A {
                out.append(contentsOf: [0x0D, 0x0A])
                index += 2
            } else {
                guard isAllowedInString(byte) else { throw error("a control character in a string") }
                out.append(byte)
                index += 1
            }
        }
    }

    // MARK: Numbers and dates

    private mutating func parseNumberOrDate() throws(SyntaxError) -> ConfigValue {
        let start = index
        // A value runs until whitespace, a comment, a separator or the end of the line; a
        // date-time may hold one space between its date and time.
        while let byte = peek, !(byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D || byte == UInt8(ascii: "#")
                                 || byte == UInt8(ascii: ",") || byte == UInt8(ascii: "]") || byte == UInt8(ascii: "}")) {
            index += 1
        }
        var token = Array(bytes[start..<index])
        if token.count == 10, Self.isDate(token[...]), peek == 0x20, let next = peek(1), next >= 0x30, next <= 0x39 {
            let timeStart = index + 1
            var end = timeStart
            while end < bytes.count, !(bytes[end] == 0x20 || bytes[end] == 0x09 || bytes[end] == 0x0A || bytes[end] == 0x0D || bytes[end] == UInt8(ascii: "#")
                                       || bytes[end] == UInt8(ascii: ",") || bytes[end] == UInt8(ascii: "]") || bytes[end] == UInt8(ascii: "}")) { end += 1 }
            token = Array(bytes[start..<end])
            index = end
        }
        guard !token.isEmpty else { throw error("expected a value", at: start) }
        let text = String(decoding: token, as: UTF8.self)
        if let integer = Self.integer(token) { return .integer(integer) }
        if let float = Self.float(token) { return .float(float) }
        if Self.isDateTime(token) { return .dateTime(text) }
        if Self.looksLikeInteger(token) { throw error("the integer \(text.prefix(40)) is out of range (64 bits) or malformed", at: start) }
        throw error("'\(text.prefix(40))' is not a value (strings need quotes)", at: start)
    }

    private static func isDigit(_ byte: UInt8) -> Bool { byte >= 0x30 && byte <= 0x39 }

    /// Digits with single underscores between them; nil when malformed.
    private static func digits(_ bytes: ArraySlice<UInt8>, _ isDigit: (UInt8) -> Bool) -> [UInt8]? {
        guard let first = bytes.first, let last = bytes.last, isDigit(first), isDigit(last) else { return nil }
        var out: [UInt8] = []
        var previousUnderscore = false
        for byte in bytes {
            if byte == UInt8(ascii: "_") {
                guard !previousUnderscore else { return nil }
                previousUnderscore = true
            } else {
                guard isDigit(byte) else { return nil }
                previousUnderscore = false
                out.append(byte)
            }
        }
        return out
    }

    private static func looksLikeInteger(_ token: [UInt8]) -> Bool {
        var body = token[...]
        if let sign = body.first, sign == UInt8(ascii: "+") || sign == UInt8(ascii: "-") { body = body.dropFirst() }
        return !body.isEmpty && body.allSatisfy { isDigit($0) || $0 == UInt8(ascii: "_") }
    }

    static func integer(_ token: [UInt8]) -> Int64? {
        if token.count > 2, token[0] == UInt8(ascii: "0"), let radix: Int = [UInt8(ascii: "x"): 16, UInt8(ascii: "o"): 8, UInt8(ascii: "b"): 2][token[1]] {
            let valid: (UInt8) -> Bool = { byte in
                switch radix {
                case 16: hexValue(byte) != nil
                case 8: byte >= 0x30 && byte <= 0x37
                default: byte == 0x30 || byte == 0x31
                }
            }
            guard let clean = digits(token[2...], valid) else { return nil }
            return Int64(String(decoding: clean, as: UTF8.self), radix: radix)
        }
        var body = token[...]
        var negative = false
        if let sign = body.first, sign == UInt8(ascii: "+") || sign == UInt8(ascii: "-") {
            negative = sign == UInt8(ascii: "-")
            body = body.dropFirst()
        }
        guard let clean = digits(body, isDigit) else { return nil }
        guard clean.count == 1 || clean[0] != UInt8(ascii: "0") else { return nil }  // no leading zeros
        return Int64((negative ? "-" : "") + String(decoding: clean, as: UTF8.self))
    }

    static func float(_ token: [UInt8]) -> Double? {
        var body = token[...]
        var sign = ""
        if let first = body.first, first == UInt8(ascii: "+") || first == UInt8(ascii: "-") {
            sign = first == UInt8(ascii: "-") ? "-" : ""
            body = body.dropFirst()
        }
        if body.elementsEqual("inf".utf8) { return sign == "-" ? -.infinity : .infinity }
        if body.elementsEqual("nan".utf8) { return .nan }
        // int-part [ "." digits ] [ ("e" | "E") [sign] digits ], with at least a fraction or an exponent.
        let exponentIndex = body.firstIndex { $0 == UInt8(ascii: "e") || $0 == UInt8(ascii: "E") }
        let mantissa = body[body.startIndex..<(exponentIndex ?? body.endIndex)]
        let dot = mantissa.firstIndex(of: UInt8(ascii: "."))
        guard dot != nil || exponentIndex != nil else { return nil }
        guard let integerPart = digits(mantissa[mantissa.startIndex..<(dot ?? mantissa.endIndex)], isDigit),
              integerPart.count == 1 || integerPart[0] != UInt8(ascii: "0") else { return nil }
        var text = sign + String(decoding: integerPart, as: UTF8.self)
        if let dot {
            guard let fraction = digits(mantissa[(dot + 1)...], isDigit) else { return nil }
            text += "." + String(decoding: fraction, as: UTF8.self)
        }
        if let exponentIndex {
            var exponent = body[(exponentIndex + 1)...]
            var exponentSign = ""
            if let first = exponent.first, first == UInt8(ascii: "+") || first == UInt8(ascii: "-") {
                exponentSign = first == UInt8(ascii: "-") ? "-" : ""
                exponent = exponent.dropFirst()
            }
            guard let exponentDigits = digits(exponent, isDigit) else { return nil }
            text += "e" + exponentSign + String(decoding: exponentDigits, as: UTF8.self)
        }
        return Double(text)
    }

    /// `YYYY-MM-DD`.
    static func isDate(_ token: ArraySlice<UInt8>) -> Bool {
        guard token.count == 10 else { return false }
        let b = Array(token)
        return [0, 1, 2, 3, 5, 6, 8, 9].allSatisfy { isDigit(b[$0]) } && b[4] == UInt8(ascii: "-") && b[7] == UInt8(ascii: "-")
    }

    /// `HH:MM:SS[.fraction]`.
    static func isTime(_ token: ArraySlice<UInt8>) -> Bool {
        let b = Array(token)
        guard b.count >= 8, [0, 1, 3, 4, 6, 7].allSatisfy({ isDigit(b[$0]) }), b[2] == UInt8(ascii: ":"), b[5] == UInt8(ascii: ":") else { return false }
        guard b.count > 8 else { return true }
        return b[8] == UInt8(ascii: ".") && b.count > 9 && b[9...].allSatisfy(isDigit)
    }

    /// An offset date-time, a local date-time, a local date or a local time (RFC 3339 forms).
    static func isDateTime(_ token: [UInt8]) -> Bool {
        if isTime(token[...]) { return true }
        guard token.count >= 10, isDate(token[0..<10]) else { return false }
        if token.count == 10 { return true }
        guard token[10] == UInt8(ascii: "T") || token[10] == UInt8(ascii: "t") || token[10] == 0x20 else { return false }
        var time = token[11...]
        if let last = time.last, last == UInt8(ascii: "Z") || last == UInt8(ascii: "z") {
            time = time.dropLast()
        } else if time.count > 6, time[time.endIndex - 6] == UInt8(ascii: "+") || time[time.endIndex - 6] == UInt8(ascii: "-") {
            let offset = Array(time.suffix(5))
            guard isDigit(offset[0]), isDigit(offset[1]), offset[2] == UInt8(ascii: ":"), isDigit(offset[3]), isDigit(offset[4]) else { return false }
            time = time.dropLast(6)
        }
        return isTime(time)
    }
}
