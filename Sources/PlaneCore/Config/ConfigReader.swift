import Foundation

/// Reads typed values out of a `ConfigTable`, remembering which keys were asked for, so
/// that `finish()` can report unknown keys (typos) and every type error at once, each with
/// its full key name (`dns.port`).
public final class ConfigReader {
    public let table: ConfigTable
    public let path: String
    private var known: Set<String> = []
    private var children: [ConfigReader] = []
    private var ownProblems: [String] = []

    public init(_ table: ConfigTable, path: String = "") {
        self.table = table
        self.path = path
    }

    func name(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    func origin(_ value: ConfigValue) -> String {
        if case .unparsed(_, let variable) = value { return " (from \(variable))" }
        return ""
    }

    /// Records a problem with a key (for checks only the caller can make).
    public func problem(_ key: String, _ text: String) {
        ownProblems.append("\(name(key)): \(text)")
    }

    public func contains(_ key: String) -> Bool {
        known.insert(key)
        return table[key] != nil
    }

    public func string(_ key: String) -> String? {
        known.insert(key)
        guard let value = table[key] else { return nil }
        switch value {
        case .string(let text): return text
        case .unparsed(let text, _): return text
        default:
            problem(key, "expected a string, found \(value.typeName)")
            return nil
        }
    }

    public func integer(_ key: String, in range: ClosedRange<Int64>? = nil) -> Int64? {
        known.insert(key)
        guard let value = table[key] else { return nil }
        let number: Int64?
        switch value {
        case .integer(let n): number = n
        case .unparsed(let text, _): number = Int64(text.trimmingCharacters(in: .whitespaces))
        default: number = nil
        }
        guard let number else {
            problem(key, "expected an integer, found \(describe(value))\(origin(value))")
            return nil
        }
        if let range, !range.contains(number) {
            problem(key, "\(number) is out of range; use \(range.lowerBound)...\(range.upperBound)")
            return nil
        }
        return number
    }

    public func int(_ key: String, in range: ClosedRange<Int>) -> Int? {
        integer(key, in: Int64(range.lowerBound)...Int64(range.upperBound)).map { Int($0) }
    }

    /// A number (integer or float) within `range`.
    public func number(_ key: String, in range: ClosedRange<Double>) -> Double? {
        known.insert(key)
        guard let value = table[key] else { return nil }
        let number: Double?
        switch value {
        case .integer(let n): number = Double(n)
        case .float(let n): number = n
        case .unparsed(let text, _): number = Double(text.trimmingCharacters(in: .whitespaces))
        default: number = nil
        }
        guard let number, number.isFinite else {
            problem(key, "expected a number, found \(describe(value))\(origin(value))")
            return nil
        }
        if !range.contains(number) {
            problem(key, "\(number) is out of range; use \(range.lowerBound)...\(range.upperBound)")
            return nil
        }
        return number
    }

    public func bool(_ key: String) -> Bool? {
        known.insert(key)
        guard let value = table[key] else { return nil }
        switch value {
        case .boolean(let flag): return flag
        case .unparsed(let text, _) where ["true", "false"].contains(text.lowercased()): return text.lowercased() == "true"
        default:
            problem(key, "expected true or false, found \(describe(value))\(origin(value))")
            return nil
        }
    }

    /// A list of strings; from an environment variable, comma-separated.
    public func stringArray(_ key: String) -> [String]? {
        known.insert(key)
        guard let value = table[key] else { return nil }
        switch value {
        case .array(let items):
            var strings: [String] = []
            for (index, item) in items.enumerated() {
                guard case .string(let text) = item else {
                    problem(key, "item \(index) should be a string, found \(item.typeName)")
                    return nil
                }
                strings.append(text)
            }
            return strings
        case .unparsed(let text, _):
            return text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        default:
            problem(key, "expected a list of strings, found \(value.typeName)")
            return nil
        }
    }

    /// A sub-table, read by its own reader (whose unknown keys are reported too).
    public func table(_ key: String) -> ConfigReader? {
        known.insert(key)
        guard let value = table[key] else { return nil }
        guard case .table(let child) = value else {
            problem(key, "expected a table ([\(name(key))] or \(key) = { ... }), found \(value.typeName)\(origin(value))")
            return nil
        }
        let reader = ConfigReader(child, path: name(key))
        children.append(reader)
        return reader
    }

    /// Every problem found so far, including unknown keys of this table and its children.
    /// An unknown key that comes from environment variables alone is no problem (the
    /// environment holds `PLANE_*` variables of other programs too): `ignoredVariables`.
    public var problems: [String] {
        var all = ownProblems
        let unknown = table.keys.filter { !known.contains($0) && table[$0]?.environmentOnlyVariables.isEmpty != false }
        if !unknown.isEmpty {
            let expected = known.sorted().joined(separator: ", ")
            for key in unknown {
                let where_ = table[key].map(origin) ?? ""
                all.append("\(name(key)): unknown key\(where_)" + (expected.isEmpty ? "" : " (known here: \(expected))"))
            }
        }
        for child in children { all += child.problems }
        return all
    }

    /// The `PLANE_*` variables that name no configuration key here or in the tables read
    /// below: ignored (the commands log them once).
    public var ignoredVariables: [String] {
        var variables: [String] = []
        for key in table.keys where !known.contains(key) {
            variables += table[key]?.environmentOnlyVariables ?? []
        }
        for child in children { variables += child.ignoredVariables }
        return variables.sorted()
    }

    /// Throws every problem found, or returns when there is none.
    public func finish(source: String) throws(ConfigError) {
        let problems = problems
        if !problems.isEmpty { throw ConfigError(.invalid, source: source, problems: problems) }
    }

    func describe(_ value: ConfigValue) -> String {
        switch value {
        case .string(let text): "the string \"\(text)\""
        case .unparsed(let text, _): "\"\(text)\""
        case .float(let number): "the float \(number)"
        default: value.typeName
        }
    }
}

