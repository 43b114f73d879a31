import ContainerRuntime
import Foundation
import PlaneCore

/// How the OCI runtime networks backends (`[agent.oci] network`).
public enum OCINetworkMode: String, Sendable, Hashable {
    /// The host's network, shared by every backend and the drone; each backend listens on
    /// the port the drone assigns (`PORT`). An explicit opt-in.
    case host
    /// A network namespace per backend, made by the drone (`OCINetworkNamespaces`). The
    /// default.
    case namespace
}

/// `[agent.oci]` settings of a drone (see docs/configuration.md).
public struct OCIRuntimeConfiguration: Sendable, Hashable {
    /// The OCI runtime binary: `auto` (crun when installed, else runc), `runc`, `crun`, or a
    /// path to either.
    public var runtime: String = "auto"
    /// Where the runtime keeps its content store, backends and the binary's `--root`
    /// (default: `<state_dir>/oci`).
    public var stateDirectory: String
    /// The command that runs the shim, before `oci-shim` (default: this `plane` executable).
    public var shimExecutable: String?
    /// The registry of references without one.
    public var defaultRegistry: String = RegistryReference.dockerHub
    /// Registries (`host[:port]`) spoken to over plain HTTP.
    public var insecureRegistries: [String] = []
    /// `default` (the shipped Docker-equivalent profile), `unconfined`, or a path to a
    /// profile in the OCI `linux.seccomp` format.
    public var seccompProfile: String = "default"
    /// Process limit per backend when the spawn sets none.
    public var defaultPidsLimit: Int64 = 4096
    /// What a backend may write to its root file system (its overlay's upper directory), in
    /// bytes, held by a btrfs quota group on its own subvolume (nil: no limit).
    public var writableLayerBytes: Int64?
    /// Memory limit per backend when the spawn sets none (nil: none).
    public var defaultMemoryBytes: Int64? = ResourceLimitsSpec.defaultMemoryBytes
    /// A read-only root file system for every backend (with a writable tmpfs `/tmp`).
    public var readOnlyRoot: Bool = false
    /// Whether spawn requests may mount anything (v0.3.10's `allow_volume_mounts`).
    public var allowMounts: Bool = false
    /// Whether backends get an overlayfs root (false: each gets a private copy of the image).
    public var useOverlay: Bool = true
    /// Images no backend used for this long are removed from the content store.
    public var imageRetention: Duration = .seconds(24 * 3600)
    /// How often unused content is looked for.
    public var garbageCollectionInterval: Duration = .seconds(3600)
    /// Keep one shim process started ahead of need, so a backend's start does not wait for
    /// the plane executable to load (about 10 ms; docs/benchmarks.md).
    public var standbyShim: Bool = true
    /// The OOM killer's preference for backends (`oom_score_adj`, -1000...1000): above the
    /// drone's own 0, so under memory pressure a backend is killed before the drone.
    public var oomScoreAdjust: Int = 500
    /// A backend's stored output (`output.log`) is rotated beyond this size, one older file
    /// kept (`output.log.1`): at most about twice this on disk per backend.
    public var maxOutputBytes: Int64 = 16 << 20
    /// Size of tmpfs mounts (`/tmp` of a read-only root, and a spawn's tmpfs mounts).
    public var tmpfsSizeBytes: Int64 = 64 << 20
    /// How backends are networked.
    public var network: OCINetworkMode = .namespace
    /// What backends in namespaces may reach beyond the drone's host: nothing (the
    /// default: nothing from their links is forwarded), everything, or the listed networks
    /// (forwarded, masqueraded, filtered by the drone's `EgressFirewall` chains).
    public var egress: EgressPolicy = .denyAll
    /// Addresses of backend network namespaces (`network = "namespace"`), two per backend.
    public var subnet = IPv4Subnet(base: 0x0AD5_0000, prefixLength: 16)
    /// Name servers in the `resolv.conf` of backends with their own namespace (nil: the
    /// host's, without loopback addresses, which a namespace cannot reach).
    public var nameservers: [String]?
    /// Bounds on what an image (its author, its registry) can make the drone download,
    /// read and unpack.
    public var imageLimits = OCIImageLimits()

    public init(stateDirectory: String) {
        self.stateDirectory = stateDirectory
    }

    /// Reads `[agent.oci]` (as the drone's TOML loader converts it to JSON); unknown keys
    /// and wrong types are refused with the key named.
    public init(json: JSONObject, droneStateDirectory: String) throws(RuntimeError) {
        self.init(stateDirectory: "\(droneStateDirectory)/oci")
        func string(_ key: String) throws(RuntimeError) -> String? {
            guard let value = json[key] else { return nil }
            guard let text = value.stringValue, !text.isEmpty else { throw Self.invalid(key, "a non-empty string") }
            return text
        }
        func integer(_ key: String, minimum: Int64, maximum: Int64 = Int64.max) throws(RuntimeError) -> Int64? {
            guard let value = json[key] else { return nil }
            guard let number = value.int64Value, number >= minimum, number <= maximum else {
                throw Self.invalid(key, maximum == Int64.max ? "an integer of at least \(minimum)" : "an integer from \(minimum) to \(maximum)")
            }
            return number
        }
        func bool(_ key: String) throws(RuntimeError) -> Bool? {
            guard let value = json[key] else { return nil }
            guard let flag = value.boolValue else { throw Self.invalid(key, "true or false") }
            return flag
        }
        let known: Set<String> = ["runtime", "state_dir", "shim", "default_registry", "insecure_registries", "seccomp_profile", "pids_limit",
                                  "read_only_root", "allow_mounts", "overlay", "image_retention_secs", "gc_interval_secs",
                                  "standby_shim", "network", "subnet", "nameservers", "max_manifest_bytes", "max_config_bytes", "max_layers",
                                  "max_layer_bytes", "max_layer_unpacked_bytes", "max_file_bytes", "max_layer_entries", "oom_score_adj",
                                  "tmp_size_bytes", "max_output_bytes", "memory_limit_bytes", "max_image_unpacked_bytes", "egress", "writable_layer_bytes",
                                  "pull_min_bytes_per_sec", "pull_slow_secs"]
        if let unknown = json.keys.first(where: { !known.contains($0) }) {
            throw RuntimeError(.invalidSpec, "[agent.oci] has no setting '\(unknown)'; known: \(known.sorted().joined(separator: ", ")).")
        }
        if let value = try string("runtime") { runtime = value }
        if let value = try string("state_dir") { stateDirectory = value }
        shimExecutable = try string("shim")
        if let value = try string("default_registry") { defaultRegistry = value }
        if let value = json["insecure_registries"] {
            guard let items = value.arrayValue, items.allSatisfy({ $0.stringValue != nil }) else { throw Self.invalid("insecure_registries", "a list of host[:port] strings") }
            insecureRegistries = items.compactMap(\.stringValue)
        }
        if let value = try string("seccomp_profile") { seccompProfile = value }
        if let value = try integer("pids_limit", minimum: 1, maximum: 4_194_304) { defaultPidsLimit = value }
        if let value = json["memory_limit_bytes"] {
            guard let bytes = ResourceLimitsSpec.memoryLimitSetting(value.int64Value) else {
                throw Self.invalid("memory_limit_bytes", ResourceLimitsSpec.memoryLimitSettingRange)
            }
            defaultMemoryBytes = bytes == 0 ? nil : bytes
        }
        if let value = try bool("read_only_root") { readOnlyRoot = value }
        if let value = try bool("allow_mounts") { allowMounts = value }
        if let value = try bool("overlay") { useOverlay = value }
        if let value = try integer("image_retention_secs", minimum: 0, maximum: 10 * 365 * 86_400) { imageRetention = .seconds(value) }
        if let value = try integer("gc_interval_secs", minimum: 1, maximum: 365 * 86_400) { garbageCollectionInterval = .seconds(value) }
        if let value = try integer("max_manifest_bytes", minimum: 1024, maximum: 64 << 20) { imageLimits.maxManifestBytes = Int(value) }
        if let value = try integer("max_config_bytes", minimum: 1024, maximum: 256 << 20) { imageLimits.maxConfigBytes = value }
        if let value = try integer("max_layers", minimum: 1, maximum: 1000) { imageLimits.maxLayers = Int(value) }
        if let value = try integer("max_layer_bytes", minimum: 1024, maximum: 1 << 50) { imageLimits.maxLayerBytes = value }
        if let value = try integer("max_layer_unpacked_bytes", minimum: 1024, maximum: 1 << 50) { imageLimits.maxLayerUnpackedBytes = value }
        if let value = try integer("max_image_unpacked_bytes", minimum: 1024, maximum: 1 << 50) { imageLimits.maxImageUnpackedBytes = value }
        if let value = try integer("max_file_bytes", minimum: 1, maximum: 1 << 50) { imageLimits.maxFileBytes = value }
        if let value = try integer("max_layer_entries", minimum: 1, maximum: 100_000_000) { imageLimits.maxLayerEntries = Int(value) }
        if let value = try integer("pull_min_bytes_per_sec", minimum: 0, maximum: 1 << 40) { imageLimits.pullPace.minimumBytesPerSecond = value }
        if let value = try integer("pull_slow_secs", minimum: 1, maximum: 3600) { imageLimits.pullPace.window = .seconds(value) }
        if let value = try bool("standby_shim") { standbyShim = value }
        if let value = try integer("oom_score_adj", minimum: -1000, maximum: 1000) { oomScoreAdjust = Int(value) }
        if let value = try integer("tmp_size_bytes", minimum: 1 << 20, maximum: 1 << 40) { tmpfsSizeBytes = value }
        if let value = try integer("max_output_bytes", minimum: 64 << 10, maximum: 1 << 40) { maxOutputBytes = value }
        if let value = json["egress"] {
            do { egress = try EgressPolicy(setting: value) } catch { throw RuntimeError(.invalidSpec, "[agent.oci] \(error.message)") }
        }
        if let value = try integer("writable_layer_bytes", minimum: 0, maximum: 1 << 50) {
            guard value == 0 || value >= 1 << 20 else { throw Self.invalid("writable_layer_bytes", "0 (no limit) or an integer from 1048576 (1 MiB) to \(Int64(1) << 50)") }
            writableLayerBytes = value == 0 ? nil : value
        }
        if let value = try string("network") {
            guard let mode = OCINetworkMode(rawValue: value) else { throw Self.invalid("network", "\"host\" or \"namespace\"") }
            network = mode
        }
        if let value = try string("subnet") {
            do {
                subnet = try IPv4Subnet(value)
            } catch {
                throw Self.invalid("subnet", "an IPv4 subnet like 10.213.0.0/16 (\(error.message))")
            }
            guard subnet.prefixLength <= 30 else { throw Self.invalid("subnet", "at least a /30 (each backend takes two addresses)") }
        }
        if let value = json["nameservers"] {
            guard let items = value.arrayValue, let addresses = Optional(items.compactMap(\.stringValue)), addresses.count == items.count,
                  addresses.allSatisfy(Self.isIPAddress) else {
                throw Self.invalid("nameservers", "a list of IPv4 or IPv6 addresses")
            }
            nameservers = addresses
        }
        guard stateDirectory.hasPrefix("/") else { throw Self.invalid("state_dir", "an absolute path") }
    }

    static func isIPAddress(_ text: String) -> Bool {
        var buffer = [UInt8](repeating: 0, count: 16)
        return inet_pton(AF_INET, text, &buffer) == 1 || inet_pton(AF_INET6, text, &buffer) == 1
    }

    static func invalid(_ key: String, _ expected: String) -> RuntimeError {
        RuntimeError(.invalidSpec, "[agent.oci] \(key) must be \(expected).")
    }
}
