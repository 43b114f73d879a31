import ArgumentParser
import ContainerRuntime
import ExternalRuntime
import Foundation
import Logging
import PlaneCore
import PlaneDrone

/// `plane runtimes`: the built-in runtimes and the plugins in the runtimes directory, each
/// made once (a plugin is started and greeted) to show its version and capabilities.
struct RuntimesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "runtimes",
        abstract: "List the container runtimes a drone can use: built-in ones and plugins, with versions and capabilities.",
        discussion: "Exit status: 0 listed (a runtime that cannot start here is listed with why), 1 the runtimes directory holds a broken manifest."
    )

    @Option(name: .long, help: ArgumentHelp("The runtimes directory (default: the source tree's runtimes/ when run from a build, else /usr/local/lib/plane/runtimes).", valueName: "path"))
    var runtimesDir: String?
    @Flag(name: .long, help: "Print one JSON object per runtime.") var json = false

    func run() async throws {
        LoggingSystem.bootstrapPlane()
        var logger = Logger(label: "plane.runtimes")
        logger.logLevel = .error
        let directory = runtimesDir ?? RuntimePluginDiscovery.defaultDirectory()
        var agent = AgentConfiguration(ip: .literal("127.0.0.1"))
        agent.runtimesDirectory = directory
        agent.pluginCallTimeout = .seconds(10)
        let found = RuntimePluginDiscovery.scan(directory)
        let registry: RuntimeRegistry
        do {
            registry = try DroneCommand.registry(agent: agent, logger: logger)
        } catch {
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            throw ExitCode(1)
        }
        let plugins = Dictionary(uniqueKeysWithValues: found.plugins.map { ($0.name, $0) })
        let state = NSTemporaryDirectory() + "plane-runtimes-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: state) }
        if !json { print("Runtimes directory: \(directory)") }
        for name in registry.names {
            let plugin = plugins[name]
            var object: [String: Any] = ["name": name, "kind": plugin == nil ? "built-in" : "plugin"]
            if let plugin {
                object["directory"] = plugin.directory
                object["description"] = plugin.description
                object["protocol_versions"] = plugin.protocolVersions
            }
            do {
                let runtime = try await registry.makeRuntime(named: name, context: RuntimeContext(droneID: DroneID.random(), stateDirectory: state, logger: logger))
                let descriptor = runtime.descriptor
                object["version"] = descriptor.version
                object["network_modes"] = descriptor.capabilities.networkModes.map(\.rawValue).sorted()
                object["mounts"] = descriptor.capabilities.mounts
                object["stats"] = descriptor.capabilities.stats
                object["oom_events"] = descriptor.capabilities.outOfMemoryEvents
                object["waits"] = descriptor.capabilities.waits
                object["options"] = descriptor.capabilities.optionsSchema.map { JSONWriter.string($0) } ?? "none"
                if let external = runtime as? ExternalRuntime {
                    object["calls"] = external.calls.map(\.rawValue).sorted()
                    await external.shutdown()
                }
            } catch {
                object["unavailable"] = error.description
            }
            print(json ? Self.jsonLine(object) : Self.textBlock(object))
        }
        for problem in found.problems { print(json ? Self.jsonLine(["problem": problem]) : "Skipped: \(problem)") }
        if !found.problems.isEmpty { throw ExitCode(1) }
    }

    static func jsonLine(_ object: [String: Any]) -> String {
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]) else { return "{}" }
        return String(decoding: data, as: UTF8.self)
    }

    static func textBlock(_ object: [String: Any]) -> String {
        var lines = ["\(object["name"] ?? "") (\(object["kind"] ?? ""))"]
        if let version = object["version"] { lines.append("  version:       \(version)") }
        if let description = object["description"] as? String, !description.isEmpty { lines.append("  description:   \(description)") }
        if let directory = object["directory"] { lines.append("  directory:     \(directory)") }
        if let versions = object["protocol_versions"] as? [Int] { lines.append("  protocol:      \(versions.map(String.init).joined(separator: ", "))") }
        if let modes = object["network_modes"] as? [String] { lines.append("  network modes: \(modes.joined(separator: ", "))") }
        if let mounts = object["mounts"], let stats = object["stats"], let oom = object["oom_events"] {
            lines.append("  mounts: \(mounts), stats: \(stats), OOM events: \(oom)")
        }
        if let calls = object["calls"] as? [String] { lines.append("  optional calls: \(calls.joined(separator: ", "))") }
        if let options = object["options"] { lines.append("  options:       \(options)") }
        if let problem = object["unavailable"] { lines.append("  unavailable here: \(problem)") }
        return lines.joined(separator: "\n")
    }
}
