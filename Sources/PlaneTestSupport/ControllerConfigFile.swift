import Foundation

/// The controller.toml of a `plane controller` that a test starts: the given nats-server,
/// `[scheduler]`, and the HTTP API on 127.0.0.1 at `httpPort` for cluster `plane.test`
/// (with `token` when given); `extra` is appended inside `[http]` (more keys, then further
/// tables such as `[http.services.NAME]`).
public enum ControllerConfigFile {
    /// Writes `controller.toml` into `directory` and returns its path.
    public static func write(in directory: String, nats: String, httpPort: Int, token: String? = nil, extra: String = "") throws -> String {
        let path = directory + "/controller.toml"
        try """
            [nats]
            hosts = ["\(nats)"]
            [scheduler]
            [http]
            bind_ip = "127.0.0.1"
            port = \(httpPort)
            cluster = "plane.test"
            \(token.map { "token = \"\($0)\"" } ?? "")
            \(extra)
            """.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }
}
