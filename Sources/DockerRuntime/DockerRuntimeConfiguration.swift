import ContainerRuntime

/// `[agent.docker]` / `[runtime.docker]` settings of a drone.
public struct DockerRuntimeConfiguration: Sendable, Hashable {
    /// Where backends are networked.
    public enum Network: Sendable, Hashable {
        /// A bridge network the drone creates when it is missing (`name`, on `subnet`), with
        /// traffic between its containers disabled: each backend has an address of its own,
        /// reached by the drone at that address and `PORT`, and no backend can reach
        /// another. The default.
        case managed(name: String, subnet: String)
        /// v0.3.10's `network = "NAME"`: an existing Docker network the operator made, with
        /// whatever isolation it has. The proxy reaches containers at their address on it.
        case named(String)
        /// `network = "host"`: the host's network, shared by every backend and the drone
        /// (an explicit opt-in; docs/security.md, "Host networking").
        case host
    }

    /// The managed network's default name.
    public static let defaultManagedNetwork = "plane-backends"
    /// The managed network's default subnet.
    public static let defaultSubnet = "10.214.0.0/16"

    /// Unix socket path (`/var/run/docker.sock`, `unix:///...`) or `http://host:port`.
    public var endpoint: String = "/var/run/docker.sock"
    /// OCI runtime for backends (e.g. `runsc`); nil: the daemon's default.
    public var ociRuntime: String?
    /// Docker log driver and options for backends; nil: the daemon's default.
    public var logDriver: String?
    public var logOptions: [String: String] = [:]
    /// Process limit per backend when the spawn sets none (nil: unlimited).
    public var pidsLimit: Int64? = 4096
    /// Memory limit per backend when the spawn sets none (nil: unlimited).
    public var memoryLimitBytes: Int64? = ResourceLimitsSpec.defaultMemoryBytes
    /// Whether spawn requests may mount anything (v0.3.10's `allow_volume_mounts`).
    public var allowMounts: Bool = false
    public var network: Network = .managed(name: defaultManagedNetwork, subnet: defaultSubnet)
    /// What backends on the managed network may reach beyond the drone's host (`egress`):
    /// everything (Docker's NAT, the default), nothing (an internal network: the drone
    /// reaches the backends, they reach nothing outside), or the listed networks (Docker's
    /// NAT, with the drone's `EgressFirewall` chain in `DOCKER-USER`).
    public var egress: EgressPolicy = .allowAll
    /// The OOM killer's preference for backends (`OomScoreAdj`, -1000...1000): above the
    /// drone's own 0, so under memory pressure a backend is killed before the drone.
    public var oomScoreAdjust: Int = 500
    /// Where the drone records which credentials may use the images it pulled with
    /// credentials (`DockerImageAccess`); nil: kept in memory only.
    public var imageAccessFile: String?
    /// Size of a spawn's tmpfs mounts.
    public var tmpfsSizeBytes: Int64 = 64 << 20
    /// What a backend may write to its container's writable layer (Docker's `StorageOpt`
    /// `size`); nil: no limit. Needs a storage driver that can hold it (btrfs, zfs, or
    /// overlay2 on xfs mounted with `pquota`): `DockerRuntime.make` checks the daemon's.
    public var writableLayerBytes: Int64?
    /// The longest a pull may take (`pull_timeout_secs`): dockerd waits on a registry that
    /// sends its blobs a byte now and then for as long as it does; beyond this the drone
    /// cuts the pull (dockerd stops it once no client waits) and the spawn fails.
    public var pullTimeout: Duration = .seconds(600)

    public init() {}
}
