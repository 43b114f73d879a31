import Foundation

/// A configuration value as read from a TOML file or an environment variable, before it
/// is turned into a typed configuration struct by a `ConfigReader`.
public indirect enum ConfigValue: Sendable, Hashable {
    case string(String)
    case integer(Int64)
    case float(Double)
    case boolean(Bool)
    case array([ConfigValue])
    case table(ConfigTable)
    /// A TOML date/time, kept as text.
    case dateTime(String)
    /// A value from an environment variable: text that is converted to whatever type the
    /// key expects (`"53"` → 53, `"true"` → true, `"a,b"` → a list).
    case unparsed(String, variable: String)

    /// Every variable this value came from, when it came from the environment only (a
    /// variable's text, or a table made of such); empty when any part is from a file.
    var environmentOnlyVariables: [String] {
        switch self {
        case .unparsed(_, let variable):
            return [variable]
        case .table(let table):
            var variables: [String] = []
            for entry in table.entries {
                let inner = entry.value.environmentOnlyVariables
                if inner.isEmpty { return [] }
                variables += inner
            }
            return variables
        default:
            return []
        }
    }

    var typeName: String {
        switch self {
        case .string: "a string"
        case .integer: "an integer"
        case .float: "a float"
        case .boolean: "a boolean"
        case .array: "an array"
        case .table: "a table"
        case .dateTime: "a date"
        case .unparsed: "text"
        }
    }
}

/// A table of configuration values, keys in file order.
public struct ConfigTable: Sendable, Hashable {
    public private(set) var entries: [(key: String, value: ConfigValue)]

    public init(_ entries: [(key: String, value: ConfigValue)] = []) { self.entries = entries }

    public subscript(key: String) -> ConfigValue? {
        get { entries.first { $0.key == key }?.value }
        set {
            if let index = entries.firstIndex(where: { $0.key == key }) {
                if let newValue { entries[index].value = newValue } else { entries.remove(at: index) }
            } else if let newValue {
                entries.append((key, newValue))
            }
        }
    }

    public var keys: [String] { entries.map(\.key) }

    public static func == (lhs: ConfigTable, rhs: ConfigTable) -> Bool {
        lhs.entries.count == rhs.entries.count && zip(lhs.entries, rhs.entries).allSatisfy { $0.key == $1.key && $0.value == $1.value }
    }

    public func hash(into hasher: inout Hasher) {
        for entry in entries { hasher.combine(entry.key); hasher.combine(entry.value) }
    }

    /// Applies `PLANE_SECTION__KEY=value` variables (v0.3.10's convention): the name after
    /// the prefix is lower-cased and split at `__` into a key path; the value stays text
    /// until a reader converts it to the type the key expects.
    /// `PLANE_` variables that are not configuration keys: the log level, and the test
    /// harness's own settings.
    public static func isReservedVariable(_ name: String) -> Bool {
        name == "PLANE_LOG" || name.hasPrefix("PLANE_TEST_")
    }

    ///
    /// Returns the variables that could not be applied: a name that is no key path
    /// (`PLANE_`, `PLANE_A____B`), or one that would put a key under a value from the file
    /// that is not a table (`PLANE_CLUSTER_DOMAIN__X`): they are ignored, and the file's value
    /// stays. (Variables that name no key are found by the readers: `ConfigReader`.)
    @discardableResult
    public mutating func applyEnvironment(_ environment: [String: String], prefix: String = "PLANE_") -> [String] {
        var ignored: [String] = []
        for (name, value) in environment.sorted(by: { $0.key < $1.key }) where name.hasPrefix(prefix) && !Self.isReservedVariable(name) {
            let path = name.dropFirst(prefix.count).lowercased().components(separatedBy: "__")
            guard !path.isEmpty, !path.contains(where: \.isEmpty), set(.unparsed(value, variable: name), at: path[...]) else {
                ignored.append(name)
                continue
            }
        }
        return ignored
    }

    /// Sets `value` at `path`, making tables on the way; false (nothing changed) when a
    /// value on the way is not a table.
    mutating func set(_ value: ConfigValue, at path: ArraySlice<String>) -> Bool {
        guard let first = path.first else { return false }
        if path.count == 1 {
            if case .table = self[first], case .unparsed = value { return false }
            self[first] = value
            return true
        }
        var child: ConfigTable
        switch self[first] {
        case .table(let existing): child = existing
        case nil: child = ConfigTable()
        case .unparsed:
            // Another variable's text (PLANE_A=x and PLANE_A__B=y): the deeper one wins.
            child = ConfigTable()
        default: return false
        }
        guard child.set(value, at: path.dropFirst()) else { return false }
        self[first] = .table(child)
        return true
    }
}

