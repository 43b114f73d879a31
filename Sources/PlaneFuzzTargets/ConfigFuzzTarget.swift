import ContainerRuntime
import OCIRuntime
import PlaneCore
@testable import PlaneCommands

/// A configuration file and environment as an operator (or a tool writing them) can get
/// wrong: `controller.toml` and `drone.toml` through the loaders, with `PLANE_*` overrides,
/// and `[agent.oci]` through the OCI runtime's own reader. Every problem is an error that
/// names its key; nothing traps.
enum ConfigFuzzTarget {
    static let toml = FuzzTarget("config-toml", "TOML text (then NUL and KEY=VALUE lines as the environment) through both loaders and [agent.oci]'s reader.") { raw in
        let parts = FuzzInput.parts(Array(raw), 2)
        let text = String(decoding: parts[0], as: UTF8.self)
        var environment: [String: String] = [:]
        for line in String(decoding: parts[1], as: UTF8.self).split(separator: "\n") {
            let pair = line.split(separator: "=", maxSplits: 1)
            if pair.count == 2 { environment["PLANE_" + pair[0]] = String(pair[1]) }
        }
        guard var table = try? TOMLConfigFile.parse(text, source: "fuzz.toml") else { return }
        table.applyEnvironment(environment)
        _ = try? ControllerConfigLoader.configuration(from: table, source: "fuzz.toml")
        if let drone = try? DroneConfigLoader.configuration(from: table, source: "fuzz.toml"), let agent = drone.agent, agent.runtime == "oci" {
            _ = try? OCIRuntimeConfiguration(json: agent.runtimeConfiguration, droneStateDirectory: drone.stateDirectory)
        }
    }
}
