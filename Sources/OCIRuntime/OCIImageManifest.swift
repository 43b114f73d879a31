import ContainerRuntime
import Foundation

/// The media types this runtime reads (OCI image spec and Docker's schema 2).
public enum OCIMediaType {
    public static let ociIndex = "application/vnd.oci.image.index.v1+json"
    public static let ociManifest = "application/vnd.oci.image.manifest.v1+json"
    public static let dockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
    public static let dockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
    public static let ociConfig = "application/vnd.oci.image.config.v1+json"
    public static let dockerConfig = "application/vnd.docker.container.image.v1+json"

    /// Sent as `Accept` on every manifest request: without it a registry may answer with the
    /// old schema 1 format.
    public static let manifestAccept = [ociIndex, ociManifest, dockerManifestList, dockerManifest]

    static func isIndex(_ type: String?) -> Bool { type == ociIndex || type == dockerManifestList }
    static func isManifest(_ type: String?) -> Bool { type == ociManifest || type == dockerManifest }
}

/// How a layer blob is compressed, from its media type.
public enum LayerCompression: String, Sendable, Hashable {
    case none, gzip, zstd

    init(mediaType: String, image: String) throws(RuntimeError) {
        switch mediaType {
        case "application/vnd.oci.image.layer.v1.tar", "application/vnd.docker.image.rootfs.diff.tar":
            self = .none
        case "application/vnd.oci.image.layer.v1.tar+gzip", "application/vnd.docker.image.rootfs.diff.tar.gzip",
             "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip":
            self = .gzip
        case "application/vnd.oci.image.layer.v1.tar+zstd", "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd":
            self = .zstd
        default:
            throw RuntimeError(.imageUnavailable, "Image \(image) has a layer of media type '\(mediaType)', which this runtime cannot unpack (it takes tar, tar+gzip and tar+zstd layers).")
        }
    }
}

/// A content descriptor: what a manifest or index points at.
public struct OCIDescriptor: Sendable, Hashable, Codable {
    public var mediaType: String
    public var digest: OCIDigest
    public var size: Int64
    public var platform: OCIPlatform?
    public var annotations: [String: String]?

    public init(mediaType: String, digest: OCIDigest, size: Int64, platform: OCIPlatform? = nil, annotations: [String: String]? = nil) {
        self.mediaType = mediaType
        self.digest = digest
        self.size = size
        self.platform = platform
        self.annotations = annotations
    }
}

public struct OCIPlatform: Sendable, Hashable, Codable, CustomStringConvertible {
    public var architecture: String
    public var os: String
    public var variant: String?

    enum CodingKeys: String, CodingKey {
        case architecture, os, variant
    }

    public init(architecture: String, os: String, variant: String? = nil) {
        self.architecture = architecture
        self.os = os
        self.variant = variant
    }

    /// This host's platform in OCI's names.
    public static var host: OCIPlatform {
        #if arch(x86_64)
        OCIPlatform(architecture: "amd64", os: "linux")
        #elseif arch(arm64)
        OCIPlatform(architecture: "arm64", os: "linux", variant: "v8")
        #else
        OCIPlatform(architecture: "unknown", os: "linux")
        #endif
    }

    /// Whether an image for `self` runs on `host` (an arm64 manifest without a variant runs on v8).
    func runs(on host: OCIPlatform) -> Bool {
        guard os == host.os, architecture == host.architecture else { return false }
        guard let variant, let hostVariant = host.variant else { return true }
        return variant == hostVariant
    }

    public var description: String { "\(os)/\(architecture)" + (variant.map { "/\($0)" } ?? "") }
}

/// An image index (OCI) or manifest list (Docker): one manifest per platform.
public struct OCIImageIndex: Sendable, Hashable, Codable {
    public var schemaVersion: Int
    public var mediaType: String?
    public var manifests: [OCIDescriptor]

    /// The manifest for `platform`, or an error listing what the index offers.
    func manifest(for platform: OCIPlatform, image: String) throws(RuntimeError) -> OCIDescriptor {
        if let match = manifests.first(where: { $0.platform?.runs(on: platform) ?? false }) { return match }
        let offered = manifests.compactMap { $0.platform?.description }
        throw RuntimeError(.imageUnavailable, "Image \(image) has no manifest for this host's platform \(platform); it offers: \(offered.isEmpty ? "none with a platform" : offered.joined(separator: ", ")).")
    }
}

/// An image manifest: the config blob and the layers, bottom first.
public struct OCIImageManifest: Sendable, Hashable, Codable {
    public var schemaVersion: Int
    public var mediaType: String?
    public var config: OCIDescriptor
    public var layers: [OCIDescriptor]

    public init(schemaVersion: Int = 2, mediaType: String? = OCIMediaType.ociManifest, config: OCIDescriptor, layers: [OCIDescriptor]) {
        self.schemaVersion = schemaVersion
        self.mediaType = mediaType
        self.config = config
        self.layers = layers
    }
}

/// The parts of an image configuration a backend's process is made from.
public struct OCIImageConfiguration: Sendable, Hashable, Codable {
    public struct Process: Sendable, Hashable, Codable {
        public var user: String?
        public var env: [String]?
        public var entrypoint: [String]?
        public var cmd: [String]?
        public var workingDir: String?
        public var stopSignal: String?

        enum CodingKeys: String, CodingKey {
            case user = "User", env = "Env", entrypoint = "Entrypoint", cmd = "Cmd", workingDir = "WorkingDir", stopSignal = "StopSignal"
        }

        public init(user: String? = nil, env: [String]? = nil, entrypoint: [String]? = nil, cmd: [String]? = nil, workingDir: String? = nil) {
            self.user = user
            self.env = env
            self.entrypoint = entrypoint
            self.cmd = cmd
            self.workingDir = workingDir
        }
    }

    public var architecture: String?
    public var os: String?
    public var config: Process?

    public init(architecture: String? = nil, os: String? = nil, config: Process? = nil) {
        self.architecture = architecture
        self.os = os
        self.config = config
    }

    /// The command line: entrypoint then cmd.
    public var arguments: [String] { (config?.entrypoint ?? []) + (config?.cmd ?? []) }
}

/// Decodes manifest-level JSON with the error naming the image.
enum OCIJSON {
    static func decode<T: Decodable>(_ type: T.Type, from data: Data, what: String, image: String) throws(RuntimeError) -> T {
        do {
            return try JSONDecoder().decode(type, from: data)
        } catch {
            throw RuntimeError(.imageUnavailable, "Image \(image): its \(what) is not valid JSON of the expected shape.", underlying: error)
        }
    }

    /// The `mediaType` field of a manifest-level document, if it has one.
    static func mediaType(of data: Data) -> String? {
        struct Probe: Decodable { var mediaType: String?; var manifests: [OCIDescriptor]? }
        guard let probe = try? JSONDecoder().decode(Probe.self, from: data) else { return nil }
        if let type = probe.mediaType { return type }
        return probe.manifests != nil ? OCIMediaType.ociIndex : nil
    }
}
