import CLinux
import CZstd
import ContainerRuntime
import Foundation
import ImageBuilder
@testable import OCIRuntime
import PlaneTestSupport
import Testing

/// Layers unpacked from real tar streams into temporary directories: contents and metadata,
/// compression, whiteouts in both modes, and crafted layers that try to write outside.
struct LayerUnpackerTests {
    func layer(_ build: (inout TarWriter) throws -> Void) throws -> [UInt8] {
        var tar = TarWriter()
        try build(&tar)
        return tar.finish()
    }

    func unpack(_ bytes: [UInt8], into root: String, mode: LayerUnpacker.Mode = .overlayLayer) throws(RuntimeError) {
        var reader = TarReader(MemoryByteSource(bytes), what: "test layer")
        var unpacker = LayerUnpacker(root: root, mode: mode, what: "test layer")
        try unpacker.unpack(&reader)
    }

    func read(_ path: String) -> String? { FileManager.default.contents(atPath: path).map { String(decoding: $0, as: UTF8.self) } }

    func fileType(_ path: String) -> mode_t? {
        var info = stat()
        return lstat(path, &info) == 0 ? info.st_mode & S_IFMT : nil
    }

    @Test func filesDirectoriesLinksAndModes() throws {
        let root = try TestEnvironment.temporaryDirectory("layer")
        try unpack(try layer { tar in
            try tar.append(path: "usr/", kind: .directory, mode: 0o755)
            try tar.append(path: "usr/bin/tool", kind: .file(Array("#!/bin/sh\n".utf8)), mode: 0o4755)
            try tar.append(path: "bin", kind: .symlink("usr/bin"), mode: 0o777)
            try tar.append(path: "usr/bin/alias", kind: .hardlink("usr/bin/tool"), mode: 0o755)
            try tar.append(path: "deep/implicit/parent.txt", kind: .file(Array("x".utf8)), mode: 0o640)
            // A later entry replaces an earlier one.
            try tar.append(path: "usr/bin/tool", kind: .file(Array("second".utf8)), mode: 0o700)
        }, into: root)
        #expect(read("\(root)/usr/bin/tool") == "second")
        #expect(read("\(root)/usr/bin/alias") == "#!/bin/sh\n", "the hardlink kept the first file's inode")
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: "\(root)/bin") == "usr/bin")
        #expect(read("\(root)/deep/implicit/parent.txt") == "x")
        var info = stat()
        // Setuid and setgid bits are not carried into the drone's disk (they would grant
        // nothing: backends run with no_new_privs).
        #expect(lstat("\(root)/usr/bin/alias", &info) == 0 && info.st_mode & 0o7777 == 0o755)
        #expect(lstat("\(root)/deep/implicit/parent.txt", &info) == 0 && info.st_mode & 0o7777 == 0o640)
    }

    /// Device nodes in a layer are left out (whiteouts still work); a FIFO stays, without
    /// setuid or setgid bits.
    @Test func deviceNodesAreLeftOut() throws {
        for mode in [LayerUnpacker.Mode.overlayLayer, .merged] {
            let root = try TestEnvironment.temporaryDirectory("layer-devices")
            var tar = CraftedTar()
            tar.entry("dev/", .directory, mode: 0o755)
            tar.entry("dev/sda", .blockDevice, mode: 0o666, deviceMajor: 8, deviceMinor: 0)
            tar.entry("dev/mem", .characterDevice, mode: 0o666, deviceMajor: 1, deviceMinor: 1)
            tar.entry("shared/", .directory, mode: 0o2775)
            tar.entry("shared/pipe", .fifo, mode: 0o6644)
            try unpack(tar.finish(), into: root, mode: mode)
            #expect(fileType("\(root)/dev/sda") == nil && fileType("\(root)/dev/mem") == nil, "\(mode)")
            #expect(fileType("\(root)/shared/pipe") == S_IFIFO)
            var info = stat()
            #expect(lstat("\(root)/shared/pipe", &info) == 0 && info.st_mode & 0o7777 == 0o644)
            #expect(lstat("\(root)/shared", &info) == 0 && info.st_mode & 0o7777 == 0o775)
        }
    }

    @Test func gzipAndZstdLayers() throws {
        let tar = try layer { try $0.append(path: "hello.txt", kind: .file(Array(String(repeating: "hello ", count: 50_000).utf8)), mode: 0o644) }
        let directory = try TestEnvironment.temporaryDirectory("layer-blobs")
        let plain = "\(directory)/layer.tar"
        _ = FileManager.default.createFile(atPath: plain, contents: Data(tar))
        // gzip of two members, as concatenated archives are.
        let gzip = Process()
        gzip.executableURL = URL(fileURLWithPath: "/bin/sh")
        gzip.arguments = ["-c", "head -c 1000 '\(plain)' | gzip -c > '\(plain).gz' && tail -c +1001 '\(plain)' | gzip -c >> '\(plain).gz'"]
        try gzip.run()
        gzip.waitUntilExit()
        #expect(gzip.terminationStatus == 0)
        var compressed = [UInt8](repeating: 0, count: ZSTD_compressBound(tar.count))
        let size = ZSTD_compress(&compressed, compressed.count, tar, tar.count, 3)
        #expect(ZSTD_isError(size) == 0)
        _ = FileManager.default.createFile(atPath: "\(plain).zst", contents: Data(compressed.prefix(size)))
        for (file, compression) in [("\(plain).gz", LayerCompression.gzip), ("\(plain).zst", .zstd), (plain, .none)] {
            let blob = try #require(FileManager.default.contents(atPath: file))
            let digest = OCIDigest.sha256(of: [UInt8](blob))
            let root = try TestEnvironment.temporaryDirectory("layer")
            try LayerArchive.unpack(blob: file, compression: compression, expectedDigest: digest, into: root, mode: .overlayLayer, what: "test layer")
            #expect(read("\(root)/hello.txt")?.count == 300_000, "\(compression)")
            // The same blob with a digest it does not have: refused.
            let other = try TestEnvironment.temporaryDirectory("layer")
            #expect(throws: RuntimeError.self) {
                try LayerArchive.unpack(blob: file, compression: compression, expectedDigest: OCIDigest.sha256(of: [1, 2, 3]), into: other, mode: .overlayLayer, what: "test layer")
            }
        }
        // Truncated gzip is an error, not a short file.
        let truncated = "\(directory)/truncated.gz"
        let whole = try #require(FileManager.default.contents(atPath: "\(plain).gz"))
        _ = FileManager.default.createFile(atPath: truncated, contents: whole.prefix(whole.count / 2))
        #expect(throws: RuntimeError.self) {
            try LayerArchive.unpack(blob: truncated, compression: .gzip, expectedDigest: nil, into: try TestEnvironment.temporaryDirectory("layer"), mode: .overlayLayer, what: "test layer")
        }
    }

    @Test func whiteoutsForOverlayAndMerged() throws {
        let lower = try layer { tar in
            try tar.append(path: "etc/keep", kind: .file(Array("k".utf8)), mode: 0o644)
            try tar.append(path: "etc/gone", kind: .file(Array("g".utf8)), mode: 0o644)
            try tar.append(path: "cache/old", kind: .file(Array("o".utf8)), mode: 0o644)
        }
        let upper = try layer { tar in
            try tar.append(path: "etc/.wh.gone", kind: .file([]), mode: 0o644)
            try tar.append(path: "cache/", kind: .directory, mode: 0o755)
            try tar.append(path: "cache/.wh..wh..opq", kind: .file([]), mode: 0o644)
            try tar.append(path: "cache/new", kind: .file(Array("n".utf8)), mode: 0o644)
        }
        // Merged: the upper layer deletes from the lower one, keeping its own entries.
        let merged = try TestEnvironment.temporaryDirectory("merged")
        try unpack(lower, into: merged, mode: .merged)
        try unpack(upper, into: merged, mode: .merged)
        #expect(read("\(merged)/etc/keep") == "k")
        #expect(fileType("\(merged)/etc/gone") == nil)
        #expect(fileType("\(merged)/cache/old") == nil)
        #expect(read("\(merged)/cache/new") == "n")
        // Overlay layer: whiteouts become what overlayfs reads.
        let layerRoot = try TestEnvironment.temporaryDirectory("overlay-layer")
        try unpack(upper, into: layerRoot, mode: .overlayLayer)
        var info = stat()
        #expect(lstat("\(layerRoot)/etc/gone", &info) == 0 && info.st_mode & S_IFMT == S_IFCHR && info.st_rdev == 0)
        var value = [UInt8](repeating: 0, count: 4)
        #expect(lgetxattr("\(layerRoot)/cache", "trusted.overlay.opaque", &value, value.count) == 1 && value[0] == UInt8(ascii: "y"))
        #expect(read("\(layerRoot)/cache/new") == "n")
    }

    @Test func craftedLayersCannotWriteOutside() throws {
        let outside = try TestEnvironment.temporaryDirectory("outside")
        let cases: [(String, (inout TarWriter) throws -> Void)] = [
            ("traversal", { try $0.append(path: "../../\(outside.split(separator: "/").last!)/pwned", kind: .file(Array("x".utf8)), mode: 0o644) }),
            ("write through an absolute symlink", { tar in
                try tar.append(path: "escape", kind: .symlink(outside), mode: 0o777)
                try tar.append(path: "escape/pwned", kind: .file(Array("x".utf8)), mode: 0o644)
            }),
            ("write through a relative symlink", { tar in
                try tar.append(path: "up", kind: .symlink("../../../../../../.."), mode: 0o777)
                try tar.append(path: "up\(outside)/pwned", kind: .file(Array("x".utf8)), mode: 0o644)
            }),
            ("hardlink escape", { try $0.append(path: "passwd", kind: .hardlink("../../../../../../../etc/passwd"), mode: 0o644) }),
            ("hardlink through a symlink", { tar in
                try tar.append(path: "etc", kind: .symlink("/etc"), mode: 0o777)
                try tar.append(path: "passwd", kind: .hardlink("etc/passwd"), mode: 0o644)
            }),
        ]
        for (name, build) in cases {
            let root = try TestEnvironment.temporaryDirectory("layer")
            #expect(throws: RuntimeError.self, "\(name)") { try unpack(try layer(build), into: root) }
            #expect(fileType("\(outside)/pwned") == nil, "\(name)")
        }
        // An absolute symlink on its own is kept as it is: the container resolves it in its root.
        let root = try TestEnvironment.temporaryDirectory("layer")
        try unpack(try layer { try $0.append(path: "etc/localtime", kind: .symlink("/usr/share/zoneinfo/UTC"), mode: 0o777) }, into: root)
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: "\(root)/etc/localtime") == "/usr/share/zoneinfo/UTC")
    }

    @Test func malformedArchivesAreErrors() throws {
        var bytes = try layer { try $0.append(path: "a.txt", kind: .file(Array("abc".utf8)), mode: 0o644) }
        bytes[148] = UInt8(ascii: "7")  // a wrong checksum
        let root = try TestEnvironment.temporaryDirectory("layer")
        #expect { try unpack(bytes, into: root) } throws: { ($0 as? RuntimeError)?.message.contains("checksum") ?? false }
        let cut = try layer { try $0.append(path: "a.txt", kind: .file(Array(repeating: 65, count: 2000)), mode: 0o644) }.prefix(1000)
        #expect { try unpack(Array(cut), into: root) } throws: { ($0 as? RuntimeError)?.message.contains("ends") ?? false }
    }

    func unpack(_ bytes: [UInt8], limits: OCIImageLimits) throws -> String {
        let root = try TestEnvironment.temporaryDirectory("layer")
        var reader = TarReader(MemoryByteSource(bytes), what: "test layer", limits: limits)
        var unpacker = LayerUnpacker(root: root, mode: .overlayLayer, what: "test layer")
        try unpacker.unpack(&reader)
        return root
    }

    /// Every number a header or PAX record carries is range-checked before any arithmetic:
    /// each of these trapped the drone (an arithmetic overflow or an out-of-range uid_t).
    @Test func hostileNumbersAreErrorsNotTraps() throws {
        let cases: [(String, (inout CraftedTar) -> Void, String)] = [
            ("PAX size 2^63-1", { $0.pax([("size", "9223372036854775807")]); $0.entry("big", .file) }, "max_file_bytes"),
            ("PAX size beyond Int64", { $0.pax([("size", "99999999999999999999")]); $0.entry("big", .file) }, "size"),
            ("negative PAX size", { $0.pax([("size", "-1")]); $0.entry("neg", .file) }, "size"),
            ("base-256 size of a directory", { $0.entry("dir/", .directory, sizeField: CraftedTar.base256(1 << 50)) }, "max_file_bytes"),
            ("base-256 size beyond Int64", { $0.entry("dir/", .directory, sizeField: CraftedTar.base256(UInt64.max)) }, "overflows"),
            ("PAX size 2^63-1 of a symlink (its data is skipped)", { $0.pax([("size", "9223372036854775807")]); $0.entry("link", .symlink, link: "x") }, "max_file_bytes"),
            ("PAX record length 2^63-1", { $0.pax([("path", "x")], lengths: [Int.max]) ; $0.entry("x", .file) }, "PAX"),
            ("PAX record length shorter than its key", { $0.pax([("path", "x")], lengths: [2]); $0.entry("x", .file) }, "PAX"),
            ("negative PAX uid", { $0.pax([("uid", "-1")]); $0.entry("f", .file) }, "uid"),
            ("PAX uid 2^32", { $0.pax([("uid", "4294967296")]); $0.entry("f", .file) }, "uid"),
            ("PAX gid 2^32-1", { $0.pax([("gid", "4294967295")]); $0.entry("f", .file) }, "gid"),
            ("PAX uid not a number", { $0.pax([("uid", "root")]); $0.entry("f", .file) }, "uid"),
            ("extended headers of 2 MiB", { tar in
                for index in 0..<3 { tar.pax([("comment\(index)", String(repeating: "c", count: 700_000))]) }
                tar.entry("f", .file)
            }, "1 MiB"),
        ]
        for (name, build, expected) in cases {
            var tar = CraftedTar()
            build(&tar)
            let error = try #require(throws: RuntimeError.self, "\(name)") { _ = try unpack(tar.finish(), limits: OCIImageLimits()) }
            #expect((error.message + (error.limit ?? "")).contains(expected), "\(name): \(error.message)")
        }
        // A large PAX uid within range is kept.
        var tar = CraftedTar()
        tar.pax([("uid", "4294967294"), ("gid", "70000")])
        tar.entry("f", .file, data: Array("x".utf8))
        var reader = TarReader(MemoryByteSource(tar.finish()), what: "test layer")
        let entry = try #require(try reader.next())
        #expect(entry.uid == 4_294_967_294 && entry.gid == 70_000)
    }

    /// What one layer may hold is bounded, so a decompression bomb or a layer of a million
    /// tiny files ends at the limit named, with nothing beyond it written.
    @Test func layerLimitsAreEnforced() throws {
        var limits = OCIImageLimits()
        limits.maxLayerEntries = 3
        limits.maxFileBytes = 1000
        limits.maxLayerUnpackedBytes = 1500
        func refusal(_ build: (inout CraftedTar) -> Void) -> String? {
            var tar = CraftedTar()
            build(&tar)
            do { _ = try unpack(tar.finish(), limits: limits); return nil } catch { return (error as? RuntimeError)?.limit ?? "other: \(error)" }
        }
        #expect(refusal { for index in 0..<4 { $0.entry("f\(index)", .file) } } == "agent.oci.max_layer_entries")
        #expect(refusal { $0.entry("big", .file, data: [UInt8](repeating: 1, count: 1001)) } == "agent.oci.max_file_bytes")
        #expect(refusal { tar in for index in 0..<2 { tar.entry("f\(index)", .file, data: [UInt8](repeating: 1, count: 800)) } } == "agent.oci.max_layer_unpacked_bytes")
        #expect(refusal { tar in for index in 0..<3 { tar.entry("f\(index)", .file, data: [UInt8](repeating: 1, count: 500)) } } == nil)
        // A gzip bomb: 64 MiB of zeros in a file, about 64 KiB compressed, stops at the limit.
        let directory = try TestEnvironment.temporaryDirectory("bomb")
        var bomb = CraftedTar()
        bomb.entry("zeros", .file, data: [UInt8](repeating: 0, count: 64 << 20))
        _ = FileManager.default.createFile(atPath: "\(directory)/layer.tar", contents: Data(bomb.finish()))
        let gzip = Process()
        gzip.executableURL = URL(fileURLWithPath: "/bin/sh")
        gzip.arguments = ["-c", "gzip -9 -c '\(directory)/layer.tar' > '\(directory)/layer.tar.gz'"]
        try gzip.run()
        gzip.waitUntilExit()
        var small = OCIImageLimits()
        small.maxLayerUnpackedBytes = 1 << 20
        let root = try TestEnvironment.temporaryDirectory("bomb-root")
        let error = try #require(throws: RuntimeError.self) {
            try LayerArchive.unpack(blob: "\(directory)/layer.tar.gz", compression: .gzip, expectedDigest: nil, into: root, mode: .overlayLayer, what: "bomb", limits: small)
        }
        #expect(error.limit == "agent.oci.max_file_bytes" || error.limit == "agent.oci.max_layer_unpacked_bytes")
        #expect(fileType("\(root)/zeros") == nil, "nothing of the bomb's file was written")
    }

    /// An image's layers share one budget (`max_image_unpacked_bytes`): the layer that takes
    /// the total beyond it stops at the file that would, before writing that file.
    @Test func anImagesLayersShareOneBudget() throws {
        let budget = ImageUnpackBudget(limit: 1500, image: "test image")
        func layer(_ name: String) -> [UInt8] {
            var tar = CraftedTar()
            tar.entry(name, .file, data: [UInt8](repeating: 1, count: 800))
            return tar.finish()
        }
        func unpack(_ bytes: [UInt8], into root: String) throws(RuntimeError) {
            var reader = TarReader(MemoryByteSource(bytes), what: "test layer")
            reader.budget = budget
            var unpacker = LayerUnpacker(root: root, mode: .overlayLayer, what: "test layer")
            try unpacker.unpack(&reader)
        }
        let first = try TestEnvironment.temporaryDirectory("layer")
        try unpack(layer("a"), into: first)
        #expect(fileType("\(first)/a") == S_IFREG && budget.usedBytes == 800)
        let second = try TestEnvironment.temporaryDirectory("layer")
        let error = try #require(throws: RuntimeError.self) { try unpack(layer("b"), into: second) }
        #expect(error.limit == "agent.oci.max_image_unpacked_bytes" && error.message.contains("test image"), "\(error)")
        #expect(fileType("\(second)/b") == nil, "the file beyond the budget was not written")
        // Sizes from outside (a corrupt record) are clamped, never overflow.
        let large = ImageUnpackBudget(limit: 1 << 40, image: "x")
        #expect(throws: RuntimeError.self) { try large.charge(Int64.max) }
        #expect(throws: RuntimeError.self) { try large.charge(Int64.max) }
        #expect(throws: Never.self) { try ImageUnpackBudget(limit: 1 << 50, image: "x").charge(-5) }
    }

    /// Paths deeper than 256 directories or longer than PATH_MAX are refused before anything
    /// is created for them; `trusted.*` attributes (overlayfs's own) never come from a layer.
    @Test func deepTreesAndHostAttributesAreRefused() throws {
        var deep = CraftedTar()
        deep.pax([("path", (0..<300).map { _ in "d" }.joined(separator: "/") + "/file")])
        deep.entry("x", .file)
        #expect { _ = try unpack(deep.finish(), limits: OCIImageLimits()) } throws: { ($0 as? RuntimeError)?.message.contains("deep") ?? false }
        var long = CraftedTar()
        long.pax([("path", String(repeating: "a", count: 5000))])
        long.entry("x", .file)
        #expect { _ = try unpack(long.finish(), limits: OCIImageLimits()) } throws: { ($0 as? RuntimeError)?.message.contains("4096") ?? false }
        var attributes = CraftedTar()
        attributes.pax([("SCHILY.xattr.trusted.overlay.opaque", "y"), ("SCHILY.xattr.user.note", "kept")])
        attributes.entry("dir/", .directory, mode: 0o755)
        let root = try unpack(attributes.finish(), limits: OCIImageLimits())
        var value = [UInt8](repeating: 0, count: 8)
        #expect(lgetxattr("\(root)/dir", "trusted.overlay.opaque", &value, value.count) < 0)
    }
}
