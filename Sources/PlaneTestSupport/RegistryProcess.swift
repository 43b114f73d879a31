import Foundation

/// A real `docker-registry` (the distribution registry) on 127.0.0.1 and a random port, with
/// filesystem storage in a temporary directory and, optionally, htpasswd (bcrypt) auth or
/// bearer-token auth through a `RegistryTokenServer`.
public final class RegistryProcess: @unchecked Sendable {
    public let port: Int
    public let directory: String
    public let credentials: (user: String, password: String)?
    private let child: ChildProcess

    public var address: String { "127.0.0.1:\(port)" }

    public static func start(credentials: (user: String, password: String)? = nil, tokenServer: RegistryTokenServer? = nil) async throws -> RegistryProcess {
        let directory = try TestEnvironment.temporaryDirectory("plane-registry")
        let port = try TestEnvironment.freePort()
        var config = """
            version: 0.1
            log:
              level: warn
            storage:
              filesystem:
                rootdirectory: \(directory)/data
            http:
              addr: 127.0.0.1:\(port)
            """
        if let tokenServer {
            config += """

                auth:
                  token:
                    realm: \(tokenServer.realm)
                    service: \(RegistryTokenServer.service)
                    issuer: \(RegistryTokenServer.issuer)
                    rootcertbundle: \(tokenServer.certificatePath)

                """
        } else if let credentials {
            let line = try await SystemProgram("htpasswd", debianPackage: "apache2-utils").run(["-Bbn", credentials.user, credentials.password])
            try line.trimmingCharacters(in: .whitespacesAndNewlines).appending("\n").write(toFile: "\(directory)/htpasswd", atomically: true, encoding: .utf8)
            config += "\nauth:\n  htpasswd:\n    realm: plane-test\n    path: \(directory)/htpasswd\n"
        }
        try config.write(toFile: "\(directory)/config.yml", atomically: true, encoding: .utf8)
        let child = try ChildProcess.watched(try SystemProgram("docker-registry", debianPackage: "docker-registry").path(),
                                             arguments: ["serve", "\(directory)/config.yml"])
        let registry = RegistryProcess(port: port, directory: directory, credentials: tokenServer?.credentials ?? credentials, child: child)
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline {
            if let status = try? await HTTPProbe(port: port).get("/v2/").status, status == 200 || status == 401 { return registry }
            guard child.isRunning else { throw TestSupportError("docker-registry exited: \(child.output)") }
            try await Task.sleep(for: .milliseconds(50))
        }
        await registry.stop()
        throw TestSupportError("docker-registry on port \(port) did not become ready: \(child.output)")
    }

    private init(port: Int, directory: String, credentials: (user: String, password: String)?, child: ChildProcess) {
        self.port = port
        self.directory = directory
        self.credentials = credentials
        self.child = child
    }

    /// Pushes a local Docker image here as `repository:tag` with the docker CLI (its login
    /// state kept in a private config directory); returns the full reference.
    public func push(localImage: String, as repository: String, tag: String) async throws -> String {
        let docker = SystemProgram("docker", debianPackage: "docker.io")
        let config = "\(directory)/docker-config"
        try FileManager.default.createDirectory(atPath: config, withIntermediateDirectories: true)
        let reference = "\(address)/\(repository):\(tag)"
        try await docker.run(["tag", localImage, reference])
        if let credentials {
            try await docker.run(["--config", config, "login", address, "-u", credentials.user, "-p", credentials.password])
        }
        try await docker.run(["--config", config, "push", reference])
        try await docker.run(["rmi", reference])
        return reference
    }

    /// Pushes the OCI image layout at `layout` (its `tag`) here as `repository:tag` with
    /// skopeo (which compresses the layers with gzip); returns the full reference.
    @discardableResult
    public func push(ociLayout layout: String, tag: String, as repository: String) async throws -> String {
        let reference = "\(address)/\(repository):\(tag)"
        var arguments = ["copy", "--quiet", "--dest-tls-verify=false"]
        if let credentials { arguments += ["--dest-creds", "\(credentials.user):\(credentials.password)"] }
        try await SystemProgram("skopeo", debianPackage: "skopeo").run(arguments + ["oci:\(layout):\(tag)", "docker://\(reference)"])
        return reference
    }

    /// The file the registry stores blob `hex` (sha256) in, to tamper with in tests.
    public func blobDataPath(sha256 hex: String) -> String {
        "\(directory)/data/docker/registry/v2/blobs/sha256/\(hex.prefix(2))/\(hex)/data"
    }

    public func stop() async {
        await child.stop()
        try? FileManager.default.removeItem(atPath: directory)
    }
}
