import Foundation

/// The drone.toml of a `plane drone` that a test or a benchmark starts: cluster
/// `plane.test`, its own state directory, the given nats-server, backends on 127.0.0.1 in
/// `ports`, a 2 s stop grace; `extra` is appended inside `[agent]` (more agent keys, then
/// further tables such as `[agent.oci]` or `[proxy]`).
public enum DroneConfigFile {
    /// Writes `drone.toml` into `directory` and returns its path.
    public static func write(in directory: String, drone: String, nats: String, ports: String, extra: String = "") throws -> String {
        try write(in: directory, drone: drone, natsHosts: [nats], ports: ports, extra: extra)
    }

    /// The same with several NATS servers (the nodes of a NATS cluster).
    public static func write(in directory: String, drone: String, natsHosts: [String], ports: String, extra: String = "") throws -> String {
        let path = directory + "/drone.toml"
        let hosts = natsHosts.map { "\"\($0)\"" }.joined(separator: ", ")
        try """
            cluster_domain = "plane.test"
            drone_id = "\(drone)"
            state_dir = "\(directory)/state"
            [nats]
            hosts = [\(hosts)]
            [agent]
            ip = "127.0.0.1"
            port_range = "\(ports)"
            stop_grace_secs = 2
            \(extra)
            """.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }
}
