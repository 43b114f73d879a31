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
        try await SystemProgram("docker", debianPackage: "docker.io").run(["load", "-i", result.dockerArchive])
        loaded = true
        return Self.reference
    }
}

/// Builds the plane-test-server image as an OCI image layout, once per test process (for
/// the OCI runtime, and to push into a test registry).
public actor OCITestImage {
    public static let shared = OCITestImage()
    public static let tag = "conformance"
    private var built: ContainerImageBuilder.Result?

    /// The layout's directory.
    public func layout() throws -> String {
        if let built { return built.ociLayout }
        let output = try TestEnvironment.temporaryDirectory("plane-oci-image")
        let result = try ContainerImageBuilder(executable: try TestExecutables.path("plane-test-server"), name: "plane-test-server", tag: Self.tag).build(into: output)
        built = result
        return result.ociLayout
    }

    /// `oci-layout:/path:tag`, as the OCI runtime takes it.
    public func reference() throws -> String { "oci-layout:\(try layout()):\(Self.tag)" }
}
