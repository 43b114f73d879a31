import ContainerRuntime
import Foundation

/// Finds the plugins in a runtimes directory: every subdirectory with a `runtime.toml`.
public enum RuntimePluginDiscovery {
    /// What a scan found: the plugins, and the manifests that could not be read (each a
    /// message naming the file), which stop nothing but are reported.
    public struct Result: Sendable {
        public var plugins: [RuntimePluginManifest]
        public var problems: [String]
    }

    public static func scan(_ directory: String) -> Result {
        var result = Result(plugins: [], problems: [])
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return result }
        var seen: [String: String] = [:]
        for entry in entries.sorted() {
            let pluginDirectory = directory + "/" + entry
            guard FileManager.default.fileExists(atPath: pluginDirectory + "/runtime.toml") else { continue }
            do {
                let manifest = try RuntimePluginManifest.load(directory: pluginDirectory)
                if let other = seen[manifest.name] {
                    result.problems.append("Runtime plugins \(other) and \(pluginDirectory) are both named '\(manifest.name)'; names must be unique, so neither is loaded.")
                    result.plugins.removeAll { $0.name == manifest.name }
                    continue
                }
                seen[manifest.name] = pluginDirectory
                result.plugins.append(manifest)
            } catch {
                result.problems.append(error.description)
            }
        }
        return result
    }

    /// The default runtimes directory: the `runtimes` directory of the source tree when
    /// `plane` runs from a SwiftPM build directory (`{package}/.build/{config}/plane`),
    /// else `/usr/local/lib/plane/runtimes`.
    public static func defaultDirectory(planeExecutable: String = CommandLine.arguments[0]) -> String {
        var url = URL(fileURLWithPath: planeExecutable).resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<4 {
            if url.lastPathComponent.hasPrefix(".build") {
                let package = url.deletingLastPathComponent().path
                if FileManager.default.fileExists(atPath: package + "/runtimes") { return package + "/runtimes" }
            }
            url = url.deletingLastPathComponent()
        }
        return "/usr/local/lib/plane/runtimes"
    }
}
