import Foundation
import ImageBuilder

/// OCI image layouts made of crafted layers (`CraftedTar`, raw bytes, gzip bombs) and a
/// configuration a test chooses, to push to a `RegistryProcess` and pull as a drone would.
public enum CraftedImage {
    public struct Layer: Sendable {
        public var bytes: [UInt8]
        public var mediaType: String

        public static func tar(_ bytes: [UInt8]) -> Layer { Layer(bytes: bytes, mediaType: "application/vnd.oci.image.layer.v1.tar") }
        public static func gzip(_ bytes: [UInt8]) -> Layer { Layer(bytes: bytes, mediaType: "application/vnd.oci.image.layer.v1.tar+gzip") }
    }

    /// Writes an OCI layout with one manifest, tagged `tag`, into a new directory; returns
    /// the directory. `user` becomes the configuration's `User`, `command` its `Cmd`.
    public static func layout(layers: [Layer], user: String? = nil, command: [String] = ["/bin/true"], tag: String = "crafted") throws -> String {
        let layout = try TestEnvironment.temporaryDirectory("crafted-image")
        let blobs = "\(layout)/blobs/sha256"
        try FileManager.default.createDirectory(atPath: blobs, withIntermediateDirectories: true)
        func store(_ bytes: [UInt8]) throws -> String {
            let digest = ContainerImageBuilder.digest(bytes)
            try Data(bytes).write(to: URL(fileURLWithPath: "\(blobs)/\(digest.dropFirst("sha256:".count))"))
            return digest
        }
        func json(_ object: Any) throws -> [UInt8] { [UInt8](try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) }
        var process: [String: Any] = ["Cmd": command, "Env": ["PATH=/usr/bin:/bin"]]
        if let user { process["User"] = user }
        let diffIDs = layers.map { ContainerImageBuilder.digest($0.bytes) }
        let config = try json(["architecture": "amd64", "os": "linux", "config": process, "rootfs": ["type": "layers", "diff_ids": diffIDs]] as [String: Any])
        let configDigest = try store(config)
        var layerDescriptors: [[String: Any]] = []
        for layer in layers {
            layerDescriptors.append(["mediaType": layer.mediaType, "digest": try store(layer.bytes), "size": layer.bytes.count])
        }
        let manifest = try json(["schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                                 "config": ["mediaType": "application/vnd.oci.image.config.v1+json", "digest": configDigest, "size": config.count],
                                 "layers": layerDescriptors] as [String: Any])
        let manifestDigest = try store(manifest)
        let index = try json(["schemaVersion": 2, "manifests": [["mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifestDigest,
                                                                 "size": manifest.count, "annotations": ["org.opencontainers.image.ref.name": tag]]]] as [String: Any])
        try Data(index).write(to: URL(fileURLWithPath: "\(layout)/index.json"))
        try Data(#"{"imageLayoutVersion":"1.0.0"}"#.utf8).write(to: URL(fileURLWithPath: "\(layout)/oci-layout"))
        return layout
    }

    /// `bytes` compressed with the system's gzip.
    public static func gzip(_ bytes: [UInt8]) async throws -> [UInt8] {
        let directory = try TestEnvironment.temporaryDirectory("gzip")
        try Data(bytes).write(to: URL(fileURLWithPath: "\(directory)/data"))
        try await SystemProgram("gzip", debianPackage: "gzip").run(["-9", "-f", "\(directory)/data"])
        let compressed = try Data(contentsOf: URL(fileURLWithPath: "\(directory)/data.gz"))
        try? FileManager.default.removeItem(atPath: directory)
        return [UInt8](compressed)
    }
}
