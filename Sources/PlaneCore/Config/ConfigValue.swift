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

    public mutating func applyEnvironment(_ environment: [String: String], prefix: String = "PLANE_") {
        for (name, value) in environment.sorted(by: { $0.key < $1.key }) where name.hasPrefix(prefix) && !Self.isReservedVariable(name) {
            let path = name.dropFirst(prefix.count).lowercased().components(separatedBy: "__")
            guard !path.isEmpty, !path.contains(where: \.isEmpty) else { continue }
            set(.unparsed(value, variable: name), at: path[...])
        }
    }

    mutating func set(_ value: ConfigValue, at path: ArraySlice<String>) {
        guard let first = path.first else { return }
        if path.count == 1 {
            self[first] = value
            return
        }
        var child: ConfigTable
        if case .table(let existing) = self[first] { child = existing } else { child = ConfigTable() }
        child.set(value, at: path.dropFirst())
        self[first] = .table(child)
    }
}

