import ContainerRuntime
import Foundation
@testable import OCIRuntime
import PlaneTestSupport
import Testing

/// Files the drone reads from an image's root filesystem: whatever the image put there, the
/// read returns at once with the content, nil, or an error; it never blocks on a FIFO,
/// never reads a device, never follows a link out of the root, never reads past 1 MiB.
struct BoundedFileReaderTests {
    func root(_ build: (String) throws -> Void) throws -> String {
        let root = try TestEnvironment.temporaryDirectory("image-root")
        try FileManager.default.createDirectory(atPath: "\(root)/etc", withIntermediateDirectories: true)
        try build(root)
        return root
    }

    @Test func regularFilesAreReadAndMissingOnesAreNil() throws {
        let image = try root { try "root:x:0:0::/:/bin/sh\n".write(toFile: "\($0)/etc/passwd", atomically: true, encoding: .utf8) }
        #expect(try OCIRuntime.readImageFile(image, "etc/passwd") == "root:x:0:0::/:/bin/sh\n")
        #expect(try OCIRuntime.readImageFile(image, "etc/group") == nil)
    }

    @Test func fifosDevicesHugeFilesAndLinksAreErrors() async throws {
        let cases: [(String, (String) throws -> Void)] = [
            ("a FIFO", { #expect(mkfifo("\($0)/etc/passwd", 0o644) == 0) }),
            ("a character device (/dev/zero's numbers)", { #expect(mknod("\($0)/etc/passwd", S_IFCHR | 0o644, LayerUnpacker.deviceNumber(major: 1, minor: 5)) == 0) }),
            ("a file of 2 MiB", { try Data(count: 2 << 20).write(to: URL(fileURLWithPath: "\($0)/etc/passwd")) }),
            ("a symlink to the host's file", { try FileManager.default.createSymbolicLink(atPath: "\($0)/etc/passwd", withDestinationPath: "/etc/passwd") }),
            ("a symlinked directory", { root in
                try FileManager.default.removeItem(atPath: "\(root)/etc")
                try FileManager.default.createSymbolicLink(atPath: "\(root)/etc", withDestinationPath: "/etc")
            }),
            ("a directory", { try FileManager.default.createDirectory(atPath: "\($0)/etc/passwd", withIntermediateDirectories: true) }),
        ]
        for (name, build) in cases {
            let image = try root(build)
            // Off the cooperative pool: a read that blocked would hang only this thread, and
            // the time limit below makes it a failure.
            let outcome = try await SystemProgram.offPool(timeout: .seconds(10)) { () -> String in
                do { return "read: \(try OCIRuntime.readImageFile(image, "etc/passwd")?.count ?? -1)" } catch { return "error: \(error)" }
            }
            #expect(outcome?.hasPrefix("error:") == true, "\(name): \(outcome ?? "no answer within 10 s (a blocking read)")")
        }
    }
}
