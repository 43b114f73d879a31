import ContainerRuntime
import Foundation
@testable import OCIRuntime
import PlaneCore
import PlaneTestSupport
import Testing

/// What the OCI runtime writes is its own (0700 directories, 0600 files), and what a
/// backend gets from an image or a mount gives it no more than it should: a root mounted
/// `nosuid,nodev`, read-only binds read-only all the way down. With runc and with crun.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct OCIPrivateDataTests {
    static let variants: [OCIVariant] = [.runcRegistry, .crunLayout]

    static func mode(_ path: String) -> mode_t? {
        var info = stat()
        return lstat(path, &info) == 0 ? info.st_mode & 0o7777 : nil
    }

    @Test(arguments: variants)
    func theRootIsNosuidNodevAndReadOnlyBindsAreReadOnlyBelowToo(_ variant: OCIVariant) async throws {
        let (runtime, drone, image) = try await OCITestSetup.runtime(variant) { $0.allowMounts = true }
        // A host directory with a file system mounted below it: `ro` alone would leave
        // that one writable inside the backend.
        let source = try TestEnvironment.temporaryDirectory("oci-ro-source")
        try FileManager.default.createDirectory(atPath: source + "/below", withIntermediateDirectories: true)
        #expect(mount("tmpfs", source + "/below", "tmpfs", 0, "size=1m") == 0, "mount tmpfs: \(errno)")
        defer { umount2(source + "/below", Int32(MNT_DETACH)) }
        let spec = BackendSpec(backendID: .random(), droneID: drone, image: image, port: UInt16(try TestEnvironment.freePort()),
                               network: .host(address: "127.0.0.1"),
                               mounts: [MountSpec(kind: .bind, source: source, target: "/data", readOnly: true),
                                        MountSpec(kind: .bind, source: source + "/below", target: "/scratch")])
        let handle = try await runtime.start(spec)
        let address = try #require(handle.address)
        let http = HTTPProbe(host: address.host, port: Int(address.port))
        _ = try await http.waitUntilAnswering("/")
        // runc keeps the overlay's nosuid,nodev on the root; crun remounts the root without
        // them, where the image's files have no setuid bits and no device nodes anyway
        // (LayerUnpackerTests).
        let root = try await http.get("/probe/mount/").body
        if variant.binary == "runc" { #expect(root.contains("nosuid") && root.contains("nodev"), "the root options: \(root)") }
        #expect(try await http.get("/probe/write/data/file").body == "error: EROFS")
        #expect(try await http.get("/probe/write/data/below/file").body == "error: EROFS", "a mount below a read-only bind must be read-only too")
        // A writable bind stays writable (the same tmpfs, mounted on its own).
        #expect(try await http.get("/probe/write/scratch/file").body == "ok")
        #expect(FileManager.default.fileExists(atPath: source + "/below/file"))
        // The runtime's files: owner-only.
        let state = runtime.configuration.stateDirectory
        for directory in [state, "\(state)/backends", "\(state)/runtime-root", "\(state)/volumes", "\(state)/content", "\(state)/content/layers", "\(state)/content/blobs"] {
            #expect(Self.mode(directory) == 0o700, "\(directory): \(String(Self.mode(directory) ?? 0, radix: 8))")
        }
        let output = runtime.directory(spec.backendID).outputLog
        #expect(Self.mode(output) == 0o600, "\(output)")
        if variant.fromRegistry {
            let blobs = "\(state)/content/blobs/sha256"
            let names = try FileManager.default.contentsOfDirectory(atPath: blobs)
            #expect(!names.isEmpty)
            for name in names { #expect(Self.mode("\(blobs)/\(name)") == 0o600, "\(name)") }
        }
        try? await runtime.stop(spec.backendID, grace: .seconds(1))
        try? await runtime.remove(spec.backendID)
    }

    /// A backend's stored output is bounded: beyond `max_output_bytes` the log is rotated
    /// (one older file kept), and a reader that follows it goes on in the new file.
    @Test func theOutputLogIsRotated() async throws {
        let (runtime, drone, image) = try await OCITestSetup.runtime(.crunLayout) { $0.maxOutputBytes = 64 << 10 }
        let spec = BackendSpec(backendID: .random(), droneID: drone, image: image, port: UInt16(try TestEnvironment.freePort()),
                               network: .host(address: "127.0.0.1"))
        _ = try await runtime.start(spec)
        defer { Task { try? await runtime.stop(spec.backendID, grace: .seconds(1)); try? await runtime.remove(spec.backendID) } }
        let http = HTTPProbe(port: Int(spec.port))
        _ = try await http.waitUntilAnswering("/")
        let follower = Task {
            var sawMarker = false
            for try await line in runtime.logs(of: spec.backendID, follow: true) where line.text.contains("/after-rotation") {
                sawMarker = true
                break
            }
            return sawMarker
        }
        for _ in 0..<5 { #expect(try await http.get("/probe/print/100000").body == "printed 100000") }
        _ = try await http.get("/after-rotation")
        let output = runtime.directory(spec.backendID).outputLog
        func size(_ path: String) -> Int64 {
            var info = stat()
            return stat(path, &info) == 0 ? Int64(info.st_size) : -1
        }
        #expect(size(output + ".1") > 0, "rotated")
        #expect(size(output) <= (64 << 10) + 200 && size(output + ".1") <= (64 << 10) + 200, "\(size(output)) \(size(output + ".1"))")
        let deadline = Task { try await Task.sleep(for: .seconds(20)); follower.cancel() }
        #expect(try await follower.value, "the follower read on into the new file")
        deadline.cancel()
    }

    /// Without overlayfs, the merged copy of an image drops setuid and setgid bits and its
    /// device nodes: what `nosuid,nodev` does for an overlay root.
    @Test func aCopiedRootKeepsNoSetuidBitsNorDevices() throws {
        let layer = try TestEnvironment.temporaryDirectory("oci-merge-layer")
        let root = try TestEnvironment.temporaryDirectory("oci-merge-root")
        let tool = layer + "/tool"
        try Data("#!/bin/sh\n".utf8).write(to: URL(fileURLWithPath: tool))
        #expect(chmod(tool, 0o6755) == 0)
        try FileManager.default.createDirectory(atPath: layer + "/shared", withIntermediateDirectories: true)
        #expect(chmod(layer + "/shared", 0o3775) == 0)
        #expect(mknod(layer + "/disk", S_IFBLK | 0o666, LayerUnpacker.deviceNumber(major: 8, minor: 0)) == 0, "mknod needs root: \(errno)")
        #expect(mknod(layer + "/memory", S_IFCHR | 0o666, LayerUnpacker.deviceNumber(major: 1, minor: 1)) == 0)
        #expect(mkfifo(layer + "/pipe", 0o644) == 0 && chmod(layer + "/pipe", 0o4644) == 0)
        try LayerMerger.merge(layer: layer, into: root)
        #expect(Self.mode(root + "/tool") == 0o755)
        #expect(Self.mode(root + "/shared") == 0o1775)
        #expect(Self.mode(root + "/disk") == nil && Self.mode(root + "/memory") == nil)
        #expect(Self.mode(root + "/pipe") == 0o644)
    }
}
