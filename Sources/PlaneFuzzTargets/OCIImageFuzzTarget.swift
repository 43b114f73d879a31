import ContainerRuntime
import Foundation
import NIOCore
import NIOHTTP1
@testable import OCIRuntime

/// What an image's author and its registry send the OCI runtime: the index, manifest and
/// configuration JSON, the user database a `User` is looked up in, and the registry's auth
/// challenges and error bodies.
enum OCIImageFuzzTarget {
    static let builder = OCIBundleBuilder(seccomp: nil, defaultPidsLimit: 4096, readOnlyRoot: false)
    static let spec = BackendSpec(backendID: "abc", droneID: "drone", image: "fuzz", port: 8080, network: .host(address: "127.0.0.1"))

    static let imageDocuments = FuzzTarget("oci-image", "OCI index, manifest and config JSON (NUL-separated from an /etc/passwd, /etc/group and a User): decoded, checked against the limits, made into a config.json.") { raw in
        let parts = FuzzInput.parts(Array(raw), 4)
        let document = Data(parts[0])
        _ = OCIJSON.mediaType(of: document)
        if let index = try? OCIJSON.decode(OCIImageIndex.self, from: document, what: "index", image: "fuzz") {
            _ = try? index.manifest(for: .host, image: "fuzz")
        }
        if let manifest = try? OCIJSON.decode(OCIImageManifest.self, from: document, what: "manifest", image: "fuzz") {
            _ = try? OCIImageLimits().check(manifest, image: "fuzz")
            for layer in manifest.layers { _ = try? LayerCompression(mediaType: layer.mediaType, image: "fuzz") }
        }
        let configuration = (try? OCIJSON.decode(OCIImageConfiguration.self, from: document, what: "configuration", image: "fuzz")) ?? OCIImageConfiguration()
        let userText = String(decoding: parts[3], as: UTF8.self)
        let user = (try? OCIBundleBuilder.resolveUser(userText.isEmpty ? configuration.config?.user : userText,
                                                      passwd: String(decoding: parts[1], as: UTF8.self),
                                                      group: String(decoding: parts[2], as: UTF8.self), image: "fuzz"))
        if let user {
            FuzzTarget.require(user.uid != UInt32.max && user.gid != UInt32.max, "a user id of -1")
            _ = try? builder.build(spec: spec, image: configuration, user: user, rootPath: "rootfs", network: .host)
        }
    }

    static let registryAnswers = FuzzTarget("registry-answer", "A registry's WWW-Authenticate challenge and error body, and an image reference.") { raw in
        let parts = FuzzInput.parts(Array(raw), 3)
        let challenge = AuthChallenge(String(decoding: parts[0], as: UTF8.self))
        _ = challenge?.parameters["realm"]
        _ = RegistryClient.errorText(RegistryClient.Answer(status: 401, headers: [:], body: .init(bytes: parts[1])))
        _ = try? OCIImageReference(String(decoding: parts[2], as: UTF8.self), defaultRegistry: "docker.io")
    }
}
