import Crypto
import Foundation

/// Packages an executable into a container image: a root filesystem with the binary, its
/// shared libraries and a few `/etc` files, as one uncompressed layer; written as an OCI
/// image layout directory and as an archive `docker load` accepts.
public struct ContainerImageBuilder: Sendable {
    public var executable: String
    /// Repository name, e.g. `plane-test-server`.
    public var name: String
    public var tag: String
    /// Extra environment (`PORT=8080` is always set unless given).
    public var environment: [String: String]
    /// Where the executable lives in the image.
    public var installPath: String { "/usr/local/bin/\((executable as NSString).lastPathComponent)" }

    public init(executable: String, name: String, tag: String = "latest", environment: [String: String] = [:]) {
        self.executable = executable
        self.name = name
        self.tag = tag
        self.environment = environment
    }

    /// What was built.
    public struct Result: Sendable, Codable {
        /// `name:tag`.
        public var reference: String
        /// Digest of the OCI manifest (`sha256:...`).
        public var manifestDigest: String
        /// Digest of the image configuration, which Docker uses as the image id.
        public var configDigest: String
        public var layerDigest: String
        public var layerSize: Int
        public var ociLayout: String
        public var dockerArchive: String
    }

    public static func digest(_ bytes: [UInt8]) -> String {
        "sha256:" + SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
    }

    public func rootFilesystem() throws(ImageBuilderError) -> RootFilesystem {
        guard FileManager.default.isExecutableFile(atPath: executable) else {
            throw ImageBuilderError(.invalidInput, "'\(executable)' is not an executable file; build the product first.")
        }
        var root = RootFilesystem()
        root.addBaseFiles()
        try root.copyHostFile(executable, to: installPath, mode: 0o755)
        for library in try SharedLibraryResolver.libraries(of: executable) {
            try root.copyHostFile(library, to: library)
        }
        return root
    }

    static var architecture: String {
        var info = utsname()
        uname(&info)
        let machine = withUnsafeBytes(of: &info.machine) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
        switch machine {
        case "x86_64": return "amd64"
        case "aarch64", "arm64": return "arm64"
        default: return machine
        }
    }

    /// Builds the image into `outputDirectory` (`oci/` and `<name>.tar`).
    public func build(into outputDirectory: String) throws(ImageBuilderError) -> Result {
        let layer = try rootFilesystem().tarLayer()
        let layerDigest = Self.digest(layer)
        var env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
        var extra = environment
        if extra["PORT"] == nil { extra["PORT"] = "8080" }
        env += extra.keys.sorted().map { "\($0)=\(extra[$0]!)" }
        let config: [String: Any] = [
            "created": "1970-01-01T00:00:00Z",
            "architecture": Self.architecture,
            "os": "linux",
            "config": ["Entrypoint": [installPath], "Env": env, "WorkingDir": "/"] as [String: Any],
            "rootfs": ["type": "layers", "diff_ids": [layerDigest]] as [String: Any],
            "history": [["created": "1970-01-01T00:00:00Z", "created_by": "plane-image-builder \(installPath)"]],
        ]
        let configBytes = try Self.json(config)
        let configDigest = Self.digest(configBytes)
        let manifest: [String: Any] = [
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": ["mediaType": "application/vnd.oci.image.config.v1+json", "digest": configDigest, "size": configBytes.count] as [String: Any],
            "layers": [["mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layerDigest, "size": layer.count] as [String: Any]],
        ]
        let manifestBytes = try Self.json(manifest)
        let manifestDigest = Self.digest(manifestBytes)
        let reference = "\(name):\(tag)"

        // OCI image layout.
        let layout = (outputDirectory as NSString).appendingPathComponent("oci")
        try? FileManager.default.removeItem(atPath: layout)
        let blobs = (layout as NSString).appendingPathComponent("blobs/sha256")
        do {
            try FileManager.default.createDirectory(atPath: blobs, withIntermediateDirectories: true)
        } catch {
            throw ImageBuilderError(.io, "Cannot create '\(blobs)': \(error)")
        }
        func writeBlob(_ bytes: [UInt8], _ digest: String) throws(ImageBuilderError) {
            try Self.write(bytes, to: (blobs as NSString).appendingPathComponent(String(digest.dropFirst("sha256:".count))))
        }
        try writeBlob(layer, layerDigest)
        try writeBlob(configBytes, configDigest)
        try writeBlob(manifestBytes, manifestDigest)
        try Self.write(try Self.json(["imageLayoutVersion": "1.0.0"]), to: (layout as NSString).appendingPathComponent("oci-layout"))
        let index: [String: Any] = [
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [[
                "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifestDigest, "size": manifestBytes.count,
                "annotations": ["org.opencontainers.image.ref.name": tag, "io.containerd.image.name": "docker.io/library/\(reference)"],
            ] as [String: Any]],
        ]
        try Self.write(try Self.json(index), to: (layout as NSString).appendingPathComponent("index.json"))

        // `docker load` archive (docker save format).
        let configHex = String(configDigest.dropFirst("sha256:".count))
        let layerHex = String(layerDigest.dropFirst("sha256:".count))
        var archive = TarWriter()
        let dockerManifest: [[String: Any]] = [["Config": "\(configHex).json", "RepoTags": [reference], "Layers": ["\(layerHex)/layer.tar"]]]
        try archive.append(path: "\(configHex).json", kind: .file(configBytes), mode: 0o644)
        try archive.append(path: layerHex, kind: .directory, mode: 0o755)
        try archive.append(path: "\(layerHex)/layer.tar", kind: .file(layer), mode: 0o644)
        try archive.append(path: "manifest.json", kind: .file(try Self.json(dockerManifest)), mode: 0o644)
        try archive.append(path: "repositories", kind: .file(try Self.json([name: [tag: layerHex]])), mode: 0o644)
        let archivePath = (outputDirectory as NSString).appendingPathComponent("\(name).tar")
        try Self.write(archive.finish(), to: archivePath)

        return Result(reference: reference, manifestDigest: manifestDigest, configDigest: configDigest, layerDigest: layerDigest,
                      layerSize: layer.count, ociLayout: layout, dockerArchive: archivePath)
    }

    static func json(_ object: Any) throws(ImageBuilderError) -> [UInt8] {
        do {
            return Array(try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]))
        } catch {
            throw ImageBuilderError(.io, "Cannot encode JSON: \(error)")
        }
    }

    static func write(_ bytes: [UInt8], to path: String) throws(ImageBuilderError) {
        guard FileManager.default.createFile(atPath: path, contents: Data(bytes)) else {
            throw ImageBuilderError(.io, "Cannot write '\(path)'.")
        }
    }
}
