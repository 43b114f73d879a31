import ContainerRuntime

/// Bounds on what an image can make the drone download, read and unpack: its author and
/// its registry are outside input (`[agent.oci]` keys, docs/configuration.md). A pull that
/// hits one fails with `imageUnavailable` naming the key, and the backend ends `ErrorLoading`;
/// nothing beyond the limit is written.
public struct OCIImageLimits: Sendable, Hashable {
    /// `max_manifest_bytes`: an image index or manifest.
    public var maxManifestBytes = 4 << 20
    /// `max_config_bytes`: the image configuration blob.
    public var maxConfigBytes: Int64 = 8 << 20
    /// `max_layers`: layers of one image.
    public var maxLayers = 128
    /// `max_layer_bytes`: one layer blob as downloaded (compressed).
    public var maxLayerBytes: Int64 = 16 << 30
    /// `max_layer_unpacked_bytes`: the file data of one layer, unpacked (a decompression
    /// bomb stops here).
    public var maxLayerUnpackedBytes: Int64 = 32 << 30
    /// `max_image_unpacked_bytes`: the file data of all an image's layers together.
    public var maxImageUnpackedBytes: Int64 = 64 << 30
    /// `max_file_bytes`: one file of a layer.
    public var maxFileBytes: Int64 = 16 << 30
    /// `max_layer_entries`: files, directories and links of one layer.
    public var maxLayerEntries = 1_000_000
    /// `pull_min_bytes_per_sec` over `pull_slow_secs`: the slowest a registry may send.
    public var pullPace = TransferPace()

    /// The longest path of a layer entry (Linux's PATH_MAX) and the most directories it may
    /// be nested in: fixed, far beyond real images.
    public static let maxPathBytes = 4096
    public static let maxPathDepth = 256
    /// The most extended-header (PAX, GNU long name) bytes before one entry.
    public static let maxExtendedHeaderBytes = 1 << 20
    /// The longest file the drone reads from an image's root (`/etc/passwd`, `/etc/group`).
    public static let maxImageFileBytes = 1 << 20
    /// The largest value of any byte-size key (1 PiB): sums of a few stay far from overflow.
    public static let maximumSetting: Int64 = 1 << 50

    public init() {}

    /// What a manifest asks the drone to download, within the limits before any of it is
    /// fetched: the number of layers, the config's and each layer's size (a size of its own
    /// the registry must then keep to: blobs are cut off and refused beyond it).
    func check(_ manifest: OCIImageManifest, image: String) throws(RuntimeError) {
        guard manifest.layers.count <= maxLayers else {
            throw Self.exceeded("max_layers", "Image \(image) has \(manifest.layers.count) layers, more than \(maxLayers)")
        }
        guard manifest.config.size >= 0, manifest.config.size <= maxConfigBytes else {
            throw Self.exceeded("max_config_bytes", "Image \(image) has a configuration of \(manifest.config.size) bytes, more than \(maxConfigBytes)")
        }
        for layer in manifest.layers where layer.size < 0 || layer.size > maxLayerBytes {
            throw Self.exceeded("max_layer_bytes", "Image \(image) has a layer \(layer.digest) of \(layer.size) bytes, more than \(maxLayerBytes)")
        }
    }

    static func exceeded(_ key: String, _ message: String) -> RuntimeError {
        RuntimeError(.imageUnavailable, "\(message) ([agent.oci] \(key)).", limit: "agent.oci.\(key)")
    }
}
