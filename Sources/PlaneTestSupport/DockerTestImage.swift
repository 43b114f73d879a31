import Foundation
import ImageBuilder

/// Builds the plane-test-server image and loads it into the real dockerd, once per test
/// process.
public actor DockerTestImage {
    public static let shared = DockerTestImage()
    public static let reference = "plane-test-server:conformance"
    private var loaded = false

    public func ensureLoaded() async throws -> String {
        if loaded { return Self.reference }
        let output = try TestEnvironment.temporaryDirectory("plane-docker-image")
        defer { try? FileManager.default.removeItem(atPath: output) }
        let result = try ContainerImageBuilder(executable: try TestExecutables.path("plane-test-server"), name: "plane-test-server", tag: "conformance").build(into: output)
        try SystemProgram("docker", debianPackage: "docker.io").run(["load", "-i", result.dockerArchive])
        loaded = true
        return Self.reference
    }
}
