import ContainerRuntime
import PlaneCore

/// The `hello` call's parameters: the versions the drone speaks and what the runtime needs
/// to know about its drone (as `RuntimeContext` gives a built-in runtime).
public struct PluginHello: Sendable, Hashable {
    public var protocolVersions: [Int]
    public var droneID: DroneID
    /// A directory the plugin owns for its state (`{drone state_dir}/runtimes/{name}`).
    public var stateDirectory: String
    /// The plugin's section of `drone.toml` (`[agent.{name}]`), as JSON.
    public var configuration: JSONObject

    public init(protocolVersions: [Int], droneID: DroneID, stateDirectory: String, configuration: JSONObject) {
        self.protocolVersions = protocolVersions
        self.droneID = droneID
        self.stateDirectory = stateDirectory
        self.configuration = configuration
    }

    public var json: JSONValue {
        .object(JSONObject([("protocol_versions", .array(protocolVersions.map { .integer($0) })), ("drone_id", .string(droneID.rawValue)),
                            ("state_dir", .string(stateDirectory)), ("configuration", .object(configuration))]))
    }

    public init(json: JSONValue) throws(PluginProtocolError) {
        let fields = try PluginFields(json, "hello")
        let versions = try fields.array("protocol_versions").compactMap { $0.int64Value.map(Int.init) }
        let drone: DroneID
        do { drone = try DroneID(try fields.string("drone_id")) } catch { throw PluginProtocolError(.malformedPayload, "hello: \"drone_id\" is not a drone id.") }
        self.init(protocolVersions: versions, droneID: drone, stateDirectory: try fields.string("state_dir"),
                  configuration: try fields.optionalObject("configuration") ?? JSONObject())
    }

    /// The highest version both sides speak, or an error naming both lists.
    public static func agree(ours: [Int], theirs: [Int], plugin: String) throws(PluginProtocolError) -> Int {
        guard let version = Set(ours).intersection(theirs).max() else {
            throw PluginProtocolError(.noCommonVersion, "Runtime plugin '\(plugin)' speaks protocol versions \(theirs.sorted()); this drone speaks \(ours.sorted()). Install a version of the plugin that supports one of the drone's, or upgrade the drone.")
        }
        return version
    }
}

/// The `hello` call's answer: the version agreed on, who the runtime is, and what it can do.
public struct PluginHelloResult: Sendable, Hashable {
    public var protocolVersion: Int
    public var descriptor: RuntimeDescriptor
    /// The optional calls it answers (`prepare`, `events`, `logs`, `stats`).
    public var calls: Set<PluginMethod>

    public init(protocolVersion: Int, descriptor: RuntimeDescriptor, calls: Set<PluginMethod>) {
        self.protocolVersion = protocolVersion
        self.descriptor = descriptor
        self.calls = calls
    }

    public var json: JSONValue {
        let capabilities = descriptor.capabilities
        return .object(JSONObject([
            ("protocol_version", .integer(protocolVersion)),
            ("name", .string(descriptor.name)),
            ("version", .string(descriptor.version)),
            ("capabilities", .object(JSONObject([
                ("network_modes", .array(capabilities.networkModes.map(\.rawValue).sorted().map(JSONValue.string))),
                ("mounts", .bool(capabilities.mounts)),
                ("stats", .bool(capabilities.stats)),
                ("oom_events", .bool(capabilities.outOfMemoryEvents)),
                ("calls", .array(calls.map(\.rawValue).sorted().map(JSONValue.string))),
                ("image_pattern", capabilities.imagePattern.map(JSONValue.string) ?? .null),
            ]))),
            ("options_schema", capabilities.optionsSchema ?? .null),
        ]))
    }

    public init(json: JSONValue) throws(PluginProtocolError) {
        let fields = try PluginFields(json, "hello result")
        let capabilities = try PluginFields(.object(try fields.optionalObject("capabilities") ?? JSONObject()), "hello result.capabilities")
        var modes: Set<NetworkModeKind> = []
        for mode in try capabilities.array("network_modes") {
            guard let name = mode.stringValue, let kind = NetworkModeKind(rawValue: name) else {
                throw PluginProtocolError(.malformedPayload, "hello result: network mode \(JSONWriter.string(mode)) is not host, bridge or publish.")
            }
            modes.insert(kind)
        }
        var calls: Set<PluginMethod> = []
        for call in try capabilities.array("calls") {
            // Calls this drone does not know are ignored: a newer plugin may offer more.
            if let name = call.stringValue, let method = PluginMethod(rawValue: name), PluginMethod.optional.contains(method) { calls.insert(method) }
        }
        if let pattern = try capabilities.optionalString("image_pattern"), (try? Regex(pattern)) == nil {
            throw PluginProtocolError(.malformedPayload, "hello result: \"image_pattern\" \(pattern) is not a regular expression.")
        }
        var schema = fields.object["options_schema"]
        if schema?.isNull == true { schema = nil }
        if let schema, schema.objectValue == nil, schema.boolValue == nil {
            throw PluginProtocolError(.malformedPayload, "hello result: \"options_schema\" must be a JSON Schema (an object) or null.")
        }
        let version = try fields.integer("protocol_version")
        self.init(protocolVersion: Int(version), descriptor: RuntimeDescriptor(
            name: try fields.string("name"), version: try fields.string("version"),
            capabilities: RuntimeCapabilities(networkModes: modes, mounts: try capabilities.bool("mounts", default: false),
                                              stats: try capabilities.bool("stats", default: false) && calls.contains(.stats),
                                              outOfMemoryEvents: try capabilities.bool("oom_events", default: false), optionsSchema: schema,
                                              imagePattern: try capabilities.optionalString("image_pattern"))),
                  calls: calls)
    }
}
