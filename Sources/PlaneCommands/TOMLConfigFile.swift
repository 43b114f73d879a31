import Foundation
import PlaneCore
import TOMLKit

/// Reads a TOML file into a `ConfigTable`, then applies `PLANE_*` environment overrides.
enum TOMLConfigFile {
    static func load(path: String?, environment: [String: String] = ProcessInfo.processInfo.environment) throws(ConfigError) -> (ConfigTable, source: String) {
        var table = ConfigTable()
        let source = path ?? "the environment (no configuration file)"
        if let path {
            let text: String
            do {
                text = try String(contentsOfFile: path, encoding: .utf8)
            } catch {
                throw ConfigError(.unreadable, source: path, problems: ["\((error as NSError).localizedDescription); pass the path of a readable TOML file"], cause: error)
            }
            table = try parse(text, source: path)
        }
        table.applyEnvironment(environment)
        return (table, source)
    }

    static func parse(_ text: String, source: String) throws(ConfigError) -> ConfigTable {
        do {
            return convert(try TOMLTable(string: text))
        } catch let error as TOMLParseError {
            throw ConfigError(.syntax, source: source, problems: ["\(error.description) at line \(error.source.begin.line), column \(error.source.begin.column)"], cause: error)
        } catch {
            throw ConfigError(.syntax, source: source, problems: ["\(error)"], cause: error)
        }
    }

    static func convert(_ table: TOMLTable) -> ConfigTable {
        var result = ConfigTable()
        for key in table.keys {
            if let value = table[key] { result[key] = convert(value) }
        }
        return result
    }

    static func convert(_ value: any TOMLValueConvertible) -> ConfigValue {
        switch value.type {
        case .table: return .table(value.table.map(convert) ?? ConfigTable())
        case .array: return .array(value.array.map { array in array.map { convert($0) } } ?? [])
        case .string: return .string(value.string ?? "")
        case .int: return .integer(Int64(value.int ?? 0))
        case .double: return .float(value.double ?? 0)
        case .bool: return .boolean(value.bool ?? false)
        default: return .dateTime(value.debugDescription)
        }
    }
}
