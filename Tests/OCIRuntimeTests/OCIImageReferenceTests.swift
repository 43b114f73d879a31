import ContainerRuntime
@testable import OCIRuntime
import Testing

struct OCIImageReferenceTests {
    @Test(arguments: [
        ("alpine", "docker.io/library/alpine:latest", "registry-1.docker.io", "latest"),
        ("user/app:1.2", "docker.io/user/app:1.2", "registry-1.docker.io", "1.2"),
        ("127.0.0.1:5000/plane/test-server:v1", "127.0.0.1:5000/plane/test-server:v1", "127.0.0.1:5000", "v1"),
        ("localhost/app", "localhost/app:latest", "localhost", "latest"),
        ("ghcr.io/org/a.b_c__d-e---f:tag", "ghcr.io/org/a.b_c__d-e---f:tag", "ghcr.io", "tag"),
    ])
    func registryReferencesNormalize(text: String, normalized: String, host: String, reference: String) throws {
        guard case .registry(let parsed) = try OCIImageReference(text) else { Issue.record("not a registry reference"); return }
        #expect(parsed.description == normalized)
        #expect(parsed.apiHost == host)
        #expect(parsed.reference == reference)
    }

    @Test func digestsAndTheDefaultRegistry() throws {
        let digest = "sha256:" + String(repeating: "ab", count: 32)
        let parsed = try RegistryReference("example.com:8443/app:1@\(digest)")
        #expect(parsed.registry == "example.com:8443" && parsed.repository == "app" && parsed.tag == "1")
        #expect(parsed.reference == digest, "a digest wins over the tag")
        let local = try RegistryReference("team/app", defaultRegistry: "registry.internal")
        #expect(local.description == "registry.internal/team/app:latest", "no library/ prefix away from Docker Hub")
    }

    @Test func layoutReferences() throws {
        #expect(try OCIImageReference("oci-layout:/var/images/app:v2") == .layout(path: "/var/images/app", tag: "v2"))
        #expect(try OCIImageReference("oci-layout:/var/images/app") == .layout(path: "/var/images/app", tag: nil))
        #expect(try OCIImageReference("oci-layout:/a:b/c") == .layout(path: "/a:b/c", tag: nil), "a colon before the last / is part of the path")
        #expect(throws: RuntimeError.self) { try OCIImageReference("oci-layout:relative/path") }
    }

    @Test(arguments: ["", "UPPER/case", "a//b", "app:", "app:-bad", "-app", "app@sha256:12", "app@md5:" + String(repeating: "0", count: 32), "a/b_/c"])
    func invalidReferencesAreRefusedWithTheReason(text: String) {
        #expect { try OCIImageReference(text) } throws: { error in
            guard let error = error as? RuntimeError else { return false }
            return error.code == .invalidSpec && error.message.contains(text.isEmpty ? "empty" : text)
        }
    }
}
