import ContainerRuntime
import Foundation
@testable import OCIRuntime

/// An image layer as its author wrote it: `TarReader` and `LayerUnpacker` (plain, gzip or
/// zstd; overlay or merged mode) into a fresh directory, with small limits; nothing may
/// appear outside that directory.
enum LayerFuzzTarget {
    /// Where the runs unpack: `root` (emptied after every run) beside `outside`, which must
    /// stay empty.
    static let base: String = {
        let path = NSTemporaryDirectory() + "plane-fuzz-layer-\(getpid())"
        try? FileManager.default.createDirectory(atPath: path + "/outside", withIntermediateDirectories: true)
        return path
    }()

    static let limits: OCIImageLimits = {
        var limits = OCIImageLimits()
        limits.maxLayerEntries = 64
        limits.maxFileBytes = 1 << 20
        limits.maxLayerUnpackedBytes = 4 << 20
        return limits
    }()

    static let tarLayer = FuzzTarget("tar-layer", "TarReader + LayerUnpacker (plain, gzip, zstd; overlay or merged) into a temporary directory; nothing escapes it.") { raw in
        var input = FuzzInput(raw)
        let flags = input.byte()
        let blob = input.rest()
        let root = base + "/root"
        try? FileManager.default.removeItem(atPath: root)
        guard mkdir(root, 0o755) == 0 else { return }
        defer { try? FileManager.default.removeItem(atPath: root) }
        let source = MemoryByteSource(blob)
        let mode: LayerUnpacker.Mode = flags & 0x10 == 0 ? .overlayLayer : .merged
        var unpacker = LayerUnpacker(root: root, mode: mode, what: "fuzzed layer")
        do {
            switch flags % 3 {
            case 0:
                var reader = TarReader(source, what: "fuzzed layer", limits: limits)
                try unpacker.unpack(&reader)
            case 1:
                var reader = TarReader(try GzipByteSource(source, what: "fuzzed layer"), what: "fuzzed layer", limits: limits)
                try unpacker.unpack(&reader)
            default:
                var reader = TarReader(try ZstdByteSource(source, what: "fuzzed layer"), what: "fuzzed layer", limits: limits)
                try unpacker.unpack(&reader)
            }
        } catch {
            // Refused or malformed: what matters is that it returned.
        }
        let escaped = (try? FileManager.default.contentsOfDirectory(atPath: base + "/outside")) ?? []
        FuzzTarget.require(escaped.isEmpty, "a layer wrote outside its directory: \(escaped)")
        let siblings = Set((try? FileManager.default.contentsOfDirectory(atPath: base)) ?? [])
        FuzzTarget.require(siblings.isSubset(of: ["outside", "root"]), "a layer wrote beside its directory: \(siblings)")
    }
}
