/// `[agent.docker]` / `[runtime.docker]` settings of a drone.
public struct DockerRuntimeConfiguration: Sendable, Hashable {
    /// Unix socket path (`/var/run/docker.sock`, `unix:///...`) or `http://host:port`.
    public var endpoint: String = "/var/run/docker.sock"
    /// OCI runtime for backends (e.g. `runsc`); nil: the daemon's default.
    public var ociRuntime: String?
    /// Docker log driver and options for backends; nil: the daemon's default.
    public var logDriver: String?
    public var logOptions: [String: String] = [:]
    /// Process limit per backend (nil: unlimited).
    public var pidsLimit: Int64? = 4096
    /// Whether spawn requests may mount anything (v0.3.10's `allow_volume_mounts`).
    public var allowMounts: Bool = false

    public init() {}
}
