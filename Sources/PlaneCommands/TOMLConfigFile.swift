import Foundation
import PlaneCore

/// Reads a TOML file into a `ConfigTable` (with `TOMLParser`, ADR 0002), then applies
/// `PLANE_*` environment overrides. The file must be a regular file of at most 4 MiB.
/// `ignored`: variables that could not be applied (`ConfigTable.applyEnvironment`).
enum TOMLConfigFile {
    static let maximumBytes = 4 << 20

    static func load(path: String?, environment: [String: String] = ProcessInfo.processInfo.environment) throws(ConfigError)
        -> (ConfigTable, source: String, ignored: [String]) {
        var table = ConfigTable()
        let source = path ?? "the environment (no configuration file)"
        if let path {
            let bytes: [UInt8]
            do {
                bytes = try BoundedFile.read(path, limit: maximumBytes)
            } catch {
                throw ConfigError(.unreadable, source: path, problems: ["\(error.reason); pass the path of a readable TOML file"], cause: error)
            }
            guard let text = String(validating: bytes, as: UTF8.self) else {
                throw ConfigError(.syntax, source: path, problems: ["the file is not UTF-8 text"])
            }
            table = try parse(text, source: path)
        }
        let ignored = table.applyEnvironment(environment)
        return (table, source, ignored)
    }

    static func parse(_ text: String, source: String) throws(ConfigError) -> ConfigTable {
        do {
            return try TOMLParser.parse(text)
        } catch {
            throw ConfigError(.syntax, source: source, problems: [error.description], cause: error)
        }
    }
}
