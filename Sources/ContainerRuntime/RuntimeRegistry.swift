import Logging
import PlaneCore

/// What a runtime factory gets from the drone.
public struct RuntimeContext: Sendable {
    public var droneID: DroneID
    /// The drone's state directory; a runtime keeps its own files below `stateDirectory/<name>`.
    public var stateDirectory: String
    /// The runtime's own configuration section from `drone.toml`, as JSON.
    public var configuration: JSONObject
    public var logger: Logger

    public init(droneID: DroneID, stateDirectory: String, configuration: JSONObject = JSONObject(), logger: Logger) {
        self.droneID = droneID
        self.stateDirectory = stateDirectory
        self.configuration = configuration
        self.logger = logger
    }
}

/// Runtimes by name. The composition root registers the built-ins and discovered plugins;
/// `drone.toml` picks one by name.
public struct RuntimeRegistry: Sendable {
    public typealias Factory = @Sendable (RuntimeContext) async throws(RuntimeError) -> any ContainerRuntime

    private var factories: [String: Factory] = [:]

    public init() {}

    /// The registered names, sorted.
    public var names: [String] { factories.keys.sorted() }

    /// Registers `factory` under `name`; a name can be registered once.
    public mutating func register(_ name: String, factory: @escaping Factory) throws(RuntimeError) {
        guard !name.isEmpty, name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }) else {
            throw RuntimeError(.invalidSpec, "Runtime name '\(name)' is invalid: use letters, digits, '-' and '_'.")
        }
        guard factories[name] == nil else {
            throw RuntimeError(.alreadyExists, "A runtime named '\(name)' is already registered; runtime names must be unique (check the plugins in the runtimes directory).")
        }
        factories[name] = factory
    }

    /// Makes the runtime registered under `name`.
    public func makeRuntime(named name: String, context: RuntimeContext) async throws(RuntimeError) -> any ContainerRuntime {
        guard let factory = factories[name] else {
            let known = names.isEmpty ? "none" : names.map { "'\($0)'" }.joined(separator: ", ")
            throw RuntimeError(.notFound, "No runtime named '\(name)'; known runtimes: \(known). Set [agent] runtime in drone.toml to one of them.")
        }
        return try await factory(context)
    }
}
