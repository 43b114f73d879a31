import Crypto
import Foundation
import PlaneCore
import PlaneTestSupport
import Testing
@testable import ImageBuilder

struct TarWriterTests {
    @Test func systemTarReadsWhatWeWrite() throws {
        var tar = TarWriter()
        let long = "a/" + String(repeating: "d", count: 90) + "/" + String(repeating: "f", count: 60) + ".txt"
        try tar.append(path: "/dir", kind: .directory, mode: 0o755)
        try tar.append(path: "/dir/hello.txt", kind: .file(Array("hello\n".utf8)), mode: 0o644)
        try tar.append(path: long, kind: .file([1, 2, 3]), mode: 0o600)
        try tar.append(path: "/dir/link", kind: .symlink("hello.txt"), mode: 0o777)
        let bytes = tar.finish()
        #expect(bytes.count % 512 == 0)
        let dir = try TestEnvironment.temporaryDirectory("plane-tar")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(FileManager.default.createFile(atPath: "\(dir)/t.tar", contents: Data(bytes)))
        try FileManager.default.createDirectory(atPath: "\(dir)/x", withIntermediateDirectories: true)
        try SystemProgram("tar", debianPackage: "tar").run(["-xf", "\(dir)/t.tar", "-C", "\(dir)/x"])
        #expect(try String(contentsOfFile: "\(dir)/x/dir/hello.txt", encoding: .utf8) == "hello\n")
        #expect(FileManager.default.contents(atPath: "\(dir)/x/\(long)") == Data([1, 2, 3]))
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: "\(dir)/x/dir/link") == "hello.txt")
        #expect(throws: ImageBuilderError.self) { try TarWriter().appending(String(repeating: "x", count: 300)) }
    }

    @Test func lddOutputParsing() throws {
        let output = """
            \tlinux-vdso.so.1 (0x00007ffd1b5f2000)
            \tlibstdc++.so.6 => /lib/x86_64-linux-gnu/libstdc++.so.6 (0x00007f3c9c000000)
            \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f3c9be1f000)
            \t/lib64/ld-linux-x86-64.so.2 (0x00007f3c9c5a5000)
            """
        #expect(try SharedLibraryResolver.parse(output) == ["/lib/x86_64-linux-gnu/libstdc++.so.6", "/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"])
        #expect(throws: ImageBuilderError.self) { try SharedLibraryResolver.parse("\tlibfoo.so.1 => not found\n") }
    }
}

extension TarWriter {
    func appending(_ path: String) throws(ImageBuilderError) {
        var copy = self
        try copy.append(path: path, kind: .file([]), mode: 0o644)
    }
}

/// Builds the plane-test-server image from the built executable and checks it for real.
@Suite(.timeLimit(.minutes(3)))
struct ContainerImageBuilderTests {
    @Test func testServerImageIsCompleteAndConsistent() async throws {
        let output = try TestEnvironment.temporaryDirectory("plane-image")
        defer { try? FileManager.default.removeItem(atPath: output) }
        // Through the tool the plugin runs.
        let tool = try TestExecutables.path("plane-image-builder")
        let json = try await SystemProgram(tool, debianPackage: "(built by swift build)").run([try TestExecutables.path("plane-test-server"), "plane-test-server", output, "test"])
        let result = try JSONDecoder().decode(ContainerImageBuilder.Result.self, from: Data(json.utf8))
        #expect(result.reference == "plane-test-server:test")

        // Every blob's name is its digest; index → manifest → config + layer.
        let blobs = "\(result.ociLayout)/blobs/sha256"
        for name in try FileManager.default.contentsOfDirectory(atPath: blobs) {
            let data = try #require(FileManager.default.contents(atPath: "\(blobs)/\(name)"))
            #expect(ContainerImageBuilder.digest(Array(data)) == "sha256:\(name)")
        }
        let index = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(result.ociLayout)/index.json"))) as? [String: Any]
        let manifests = index?["manifests"] as? [[String: Any]]
        #expect(manifests?.first?["digest"] as? String == result.manifestDigest)
        let manifestData = try Data(contentsOf: URL(fileURLWithPath: "\(blobs)/\(result.manifestDigest.dropFirst(7))"))
        let manifest = try JSONSerialization.jsonObject(with: manifestData) as? [String: Any]
        #expect((manifest?["config"] as? [String: Any])?["digest"] as? String == result.configDigest)
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(blobs)/\(result.configDigest.dropFirst(7))"))) as? [String: Any]
        let runConfig = config?["config"] as? [String: Any]
        #expect(runConfig?["Entrypoint"] as? [String] == ["/usr/local/bin/plane-test-server"])
        #expect((runConfig?["Env"] as? [String])?.contains("PORT=8080") == true)

        // The layer is a root filesystem in which the server runs by itself (chroot, no Docker).
        let rootfs = "\(output)/rootfs"
        try FileManager.default.createDirectory(atPath: rootfs, withIntermediateDirectories: true)
        try await SystemProgram("tar", debianPackage: "tar").run(["-xf", "\(blobs)/\(result.layerDigest.dropFirst(7))", "-C", rootfs])
        #expect(FileManager.default.isExecutableFile(atPath: "\(rootfs)/usr/local/bin/plane-test-server"))
        #expect(FileManager.default.fileExists(atPath: "\(rootfs)/etc/passwd"))
        // With /proc, as every runtime gives a container: libdispatch's worker-pool monitor
        // reads /proc/<tid>/stat once its pool is busy and traps (SIGILL) where it cannot,
        // which a loaded machine hit in about one start in twenty. A mount namespace of its
        // own keeps that /proc out of the host's mount table.
        try FileManager.default.createDirectory(atPath: "\(rootfs)/proc", withIntermediateDirectories: true)
        let port = try TestEnvironment.freePort()
        let server = try ChildProcess(
            "/usr/bin/unshare",
            arguments: ["--mount", "--propagation", "private", "/bin/sh", "-c",
                        #"mount -t proc proc "$1/proc" && exec /usr/sbin/chroot "$1" /usr/local/bin/plane-test-server"#, "sh", rootfs],
            environment: ["PORT": String(port), "HOST": "127.0.0.1"])
        let response: HTTPProbe.Response
        do {
            response = try await HTTPProbe(port: port).waitUntilAnswering("/", within: .seconds(30))
        } catch {
            // Say what the process was doing (a rare CI failure showed no output at all).
            let state = server.isRunning
                ? "still running; /proc status: " + (BoundedFile.generatedText("/proc/\(server.pid)/status")?.split(separator: "\n").filter { $0.hasPrefix("State") || $0.hasPrefix("Threads") }.joined(separator: ", ") ?? "?")
                    + "; wchan: " + (BoundedFile.generatedText("/proc/\(server.pid)/wchan") ?? "?")
                : "exited with \(await server.waitForExit(timeout: .seconds(1)).map(String.init) ?? "?")"
            Issue.record("the chrooted server did not answer (\(state)); its output: \(server.output)")
            throw error
        }
        #expect(response.body == "Hello World!")
        await server.stop()

        // The docker-load archive lists the image and carries the same layer.
        let listing = try await SystemProgram("tar", debianPackage: "tar").run(["-tf", result.dockerArchive])
        #expect(listing.contains("manifest.json"))
        #expect(listing.contains("\(result.layerDigest.dropFirst(7))/layer.tar"))
    }
}
