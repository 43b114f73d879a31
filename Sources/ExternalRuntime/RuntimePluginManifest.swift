import ContainerRuntime
import Foundation
import PlaneCore

/// A plugin's `runtime.toml`: who it is and how to start it.
///
/// ```toml
/// name = "process"                 # the name drone.toml's [agent] runtime picks
/// version = "0.1.0"
/// description = "Backends as plain host processes"
/// protocol_versions = [1]
/// executable = "plane-runtime-process"   # relative to this directory, or next to `plane`
/// args = []                              # optional
/// ```
public struct RuntimePluginManifest: Sendable, Hashable {
    public var name: String
    public var version: String
    public var description: String
    public var protocolVersions: [Int]
    /// The executable as written in the manifest.
    public var executable: String
    public var arguments: [String]
    /// The plugin's directory (where `runtime.toml` is).
    public var directory: String

    public var manifestPath: String { directory + "/runtime.toml" }

    public init(name: String, version: String, description: String, protocolVersions: [Int], executable: String, arguments: [String] = [], directory: String) {
        self.name = name
        self.version = version
        self.description = description
        self.protocolVersions = protocolVersions
        self.executable = executable
        self.arguments = arguments
        self.directory = directory
    }

    /// Reads `{directory}/runtime.toml`; every problem is named with the file.
    public static func load(directory: String) throws(RuntimeError) -> RuntimePluginManifest {
        let path = directory + "/runtime.toml"
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw RuntimeError(.invalidSpec, "Cannot read the runtime plugin manifest \(path).", underlying: error)
        }
        return try parse(text, directory: directory)
    }

    public static func parse(_ text: String, directory: String) throws(RuntimeError) -> RuntimePluginManifest {
        let path = directory + "/runtime.toml"
        let table: ConfigTable
        do {
            table = try TOMLParser.parse(text)
        } catch {
            throw RuntimeError(.invalidSpec, "The runtime plugin manifest \(path) is not valid TOML: \(error).")
        }
        func string(_ key: String, required: Bool = true) throws(RuntimeError) -> String? {
            guard let value = table[key] else {
                if required { throw RuntimeError(.invalidSpec, "\(path): \"\(key)\" is missing.") }
                return nil
            }
            guard case .string(let text) = value else { throw RuntimeError(.invalidSpec, "\(path): \"\(key)\" must be a string.") }
            return text
        }
        let known: Set<String> = ["name", "version", "description", "protocol_versions", "executable", "args"]
        if let unknown = table.keys.first(where: { !known.contains($0) }) {
            throw RuntimeError(.invalidSpec, "\(path): unknown key \"\(unknown)\"; the keys are \(known.sorted().joined(separator: ", ")).")
        }
        var versions: [Int] = []
        if case .array(let values)? = table["protocol_versions"] {
            for value in values {
                if case .integer(let number) = value, let version = Int(exactly: number) { versions.append(version) } else { versions = []; break }
            }
        }
        guard !versions.isEmpty else {
            throw RuntimeError(.invalidSpec, "\(path): \"protocol_versions\" must be a non-empty list of integers, e.g. [1].")
        }
        var arguments: [String] = []
        if let args = table["args"] {
            guard case .array(let list) = args else { throw RuntimeError(.invalidSpec, "\(path): \"args\" must be a list of strings.") }
            for item in list {
                guard case .string(let text) = item else { throw RuntimeError(.invalidSpec, "\(path): \"args\" must be a list of strings.") }
                arguments.append(text)
            }
        }
        let name = try string("name")!
        guard !name.isEmpty, name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }) else {
            throw RuntimeError(.invalidSpec, "\(path): name \"\(name)\" is invalid; use letters, digits, '-' and '_'.")
        }
        return RuntimePluginManifest(name: name, version: try string("version")!, description: try string("description", required: false) ?? "",
                                     protocolVersions: versions, executable: try string("executable")!, arguments: arguments, directory: directory)
    }

    /// The executable's absolute path: as written when absolute; else in the plugin's
    /// directory; else next to the running `plane` (where `swift build` puts plugins built
    /// with it).
    public func resolvedExecutable(besides planeExecutable: String = CommandLine.arguments[0]) throws(RuntimeError) -> String {
        var candidates: [String] = []
        if executable.hasPrefix("/") {
            candidates = [executable]
        } else {
            candidates = [directory + "/" + executable]
            let planeDirectory = URL(fileURLWithPath: planeExecutable).resolvingSymlinksInPath().deletingLastPathComponent().path
            candidates.append(planeDirectory + "/" + executable)
        }
        for candidate in candidates where FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        throw RuntimeError(.unavailable, "Runtime plugin '\(name)': its executable \(executable) is not at \(candidates.joined(separator: " or ")); build or install it (see \(manifestPath)).")
    }
}
