import AsyncHTTPClient
import ContainerRuntime
import Foundation
import Logging
@testable import OCIRuntime
import PlaneCore
import PlaneTestSupport
import Testing

/// Pulls through the real `docker-registry` (Debian) on 127.0.0.1, with the test server
/// image pushed by skopeo, and from a local OCI layout.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct OCIContentStoreTests {
    func makeStore(insecure: [String]) throws -> OCIContentStore {
        var logger = Logger(label: "test.oci")
        logger.logLevel = .warning
        let registry = RegistryClient(insecureRegistries: Set(insecure), client: HTTPClient.shared, logger: logger)
        return try OCIContentStore(root: try TestEnvironment.temporaryDirectory("oci-store"), registry: registry, logger: logger)
    }

    func serverBinary(in store: OCIContentStore, _ image: ResolvedImage) async -> Bool {
        for layer in image.layers where FileManager.default.isExecutableFile(atPath: "\(store.layerPath(layer))/usr/local/bin/plane-test-server") {
            return true
        }
        return false
    }

    @Test func pullsFromARegistryOnceAndConcurrently() async throws {
        let registry = try await RegistryProcess.start()
        defer { Task { await registry.stop() } }
        let reference = try await registry.push(ociLayout: try await OCITestImage.shared.layout(), tag: OCITestImage.tag, as: "plane/test-server")
        let store = try makeStore(insecure: [registry.address])
        let parsed = try OCIImageReference(reference)
        // Two pulls at once share the download and the unpack.
        async let first = store.pull(parsed, credentials: nil, policy: .ifNotPresent)
        async let second = store.pull(parsed, credentials: nil, policy: .ifNotPresent)
        let (a, b) = try await (first, second)
        #expect(a.layers == b.layers && a.manifestDigest == b.manifestDigest)
        #expect(await serverBinary(in: store, a))
        #expect(a.configuration.arguments == ["/usr/local/bin/plane-test-server"])
        let layerDirectories = try FileManager.default.contentsOfDirectory(atPath: "\(store.root)/layers/sha256")
        #expect(layerDirectories.count == a.layers.count)
        #expect(try FileManager.default.contentsOfDirectory(atPath: "\(store.root)/tmp").isEmpty, "nothing left half-written")
        // IfNotPresent with the image here needs no registry; Never too.
        await registry.stop()
        #expect(try await store.pull(parsed, credentials: nil, policy: .ifNotPresent).manifestDigest == a.manifestDigest)
        #expect(try await store.pull(parsed, credentials: nil, policy: .never).manifestDigest == a.manifestDigest)
        // Always asks the registry, which is gone: a clear error naming it.
        await #expect { try await store.pull(parsed, credentials: nil, policy: .always) } throws: {
            guard let error = $0 as? RuntimeError else { return false }
            return error.code == .imageUnavailable && error.message.contains(registry.address)
        }
        // An image never pulled with the policy Never.
        await #expect(throws: RuntimeError.self) { try await store.pull(try OCIImageReference("\(registry.address)/other:1"), credentials: nil, policy: .never) }
    }

    @Test func credentialsAreUsedAndWrongOnesExplained() async throws {
        let registry = try await RegistryProcess.start(credentials: ("plane", "s3cret"))
        defer { Task { await registry.stop() } }
        let reference = try OCIImageReference(try await registry.push(ociLayout: try await OCITestImage.shared.layout(), tag: OCITestImage.tag, as: "private/server"))
        let store = try makeStore(insecure: [registry.address])
        await #expect { try await store.pull(reference, credentials: nil, policy: .always) } throws: {
            ($0 as? RuntimeError)?.message.contains("needs credentials") ?? false
        }
        await #expect { try await store.pull(reference, credentials: RegistryCredentials(username: "plane", password: "wrong"), policy: .always) } throws: {
            guard let error = $0 as? RuntimeError else { return false }
            return error.code == .imageUnavailable && error.description.contains("401")
        }
        let image = try await store.pull(reference, credentials: RegistryCredentials(username: "plane", password: "s3cret"), policy: .always)
        #expect(await serverBinary(in: store, image))
    }

    /// A private image pulled with credentials is not served to a spawn without them (or
    /// with wrong ones): the registry is asked again with theirs and refuses. The right
    /// credentials use what is here.
    @Test func aPrivateImageIsNotRunnableWithoutItsCredentials() async throws {
        let registry = try await RegistryProcess.start(credentials: ("plane", "s3cret"))
        defer { Task { await registry.stop() } }
        let reference = try OCIImageReference(try await registry.push(ociLayout: try await OCITestImage.shared.layout(), tag: OCITestImage.tag, as: "private/scoped"))
        let store = try makeStore(insecure: [registry.address])
        let right = RegistryCredentials(username: "plane", password: "s3cret")
        let image = try await store.pull(reference, credentials: right, policy: .ifNotPresent)
        #expect(image.access == ImageAccessScope(right, registry: registry.address) && image.access != .anonymous)
        for (credentials, policy) in [(nil, DockerPullPolicy.ifNotPresent), (RegistryCredentials(username: "plane", password: "wrong"), .ifNotPresent), (nil, .never)] {
            await #expect(throws: RuntimeError.self, "\(String(describing: credentials)) \(policy)") {
                try await store.pull(reference, credentials: credentials, policy: policy)
            }
        }
        #expect(try await store.pull(reference, credentials: right, policy: .never).manifestDigest == image.manifestDigest)
        // The scope is never the secret itself.
        let record = try String(contentsOfFile: store.imageRecordPath(reference.description), encoding: .utf8)
        #expect(!record.contains("s3cret"))
    }

    /// Blobs already on the drone are shared between images only where the registry that
    /// names them also serves them to the pull: an image of another registry whose manifest
    /// names a private layer it does not have gets nothing from the drone's copy.
    @Test func aBlobOnTheDroneIsUsedOnlyWhereTheRegistryServesIt() async throws {
        let layout = try await OCITestImage.shared.layout()
        let privateRegistry = try await RegistryProcess.start(credentials: ("plane", "s3cret"))
        defer { Task { await privateRegistry.stop() } }
        let publicRegistry = try await RegistryProcess.start()
        defer { Task { await publicRegistry.stop() } }
        let privateReference = try OCIImageReference(try await privateRegistry.push(ociLayout: layout, tag: OCITestImage.tag, as: "private/server"))
        let publicReference = try OCIImageReference(try await publicRegistry.push(ociLayout: layout, tag: OCITestImage.tag, as: "mirror/server"))
        let other = try OCIImageReference(try await publicRegistry.push(ociLayout: layout, tag: OCITestImage.tag, as: "mirror/other"))
        let store = try makeStore(insecure: [privateRegistry.address, publicRegistry.address])
        let image = try await store.pull(privateReference, credentials: RegistryCredentials(username: "plane", password: "s3cret"), policy: .always)
        // The public registry has the same layers: the drone's copies are proven and reused.
        #expect(try await store.pull(publicReference, credentials: nil, policy: .always).layers == image.layers)
        // Now one of them is gone from the public registry, whose other repository still
        // names it.
        let layer = try #require(image.layers.last)
        try FileManager.default.removeItem(atPath: publicRegistry.blobDataPath(sha256: layer.hex))
        await #expect { try await store.pull(other, credentials: nil, policy: .always) } throws: {
            guard let error = $0 as? RuntimeError else { return false }
            return error.code == .imageUnavailable && error.message.contains("not used")
        }
    }

    @Test func bearerTokensFromATokenServerAndAWrongPasswordExplained() async throws {
        let tokens = try await RegistryTokenServer.start(credentials: ("plane", "t0ken-s3cret"))
        defer { Task { await tokens.stop() } }
        let registry = try await RegistryProcess.start(tokenServer: tokens)
        defer { Task { await registry.stop() } }
        // skopeo goes through the token flow to push.
        let reference = try OCIImageReference(try await registry.push(ociLayout: try await OCITestImage.shared.layout(), tag: OCITestImage.tag, as: "team/server"))
        let store = try makeStore(insecure: [registry.address])
        await #expect { try await store.pull(reference, credentials: RegistryCredentials(username: "plane", password: "wrong"), policy: .always) } throws: {
            guard let error = $0 as? RuntimeError else { return false }
            let text = error.description
            return error.code == .imageUnavailable && text.contains("team/server") && text.contains("401") && text.contains("incorrect username or password")
        }
        await #expect { try await store.pull(reference, credentials: nil, policy: .always) } throws: {
            guard let error = $0 as? RuntimeError else { return false }
            return error.code == .imageUnavailable && error.description.contains("team/server")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: "\(store.root)/layers/sha256").isEmpty, "nothing pulled without a token")
        let image = try await store.pull(reference, credentials: RegistryCredentials(username: "plane", password: "t0ken-s3cret"), policy: .always)
        #expect(await serverBinary(in: store, image))
    }

    @Test func aBlobThatDoesNotMatchItsDigestIsRefused() async throws {
        let registry = try await RegistryProcess.start()
        defer { Task { await registry.stop() } }
        let reference = try OCIImageReference(try await registry.push(ociLayout: try await OCITestImage.shared.layout(), tag: OCITestImage.tag, as: "plane/tampered"))
        // Find the layer blob the registry serves and change one byte of it.
        let store = try makeStore(insecure: [registry.address])
        guard case .registry(let registryReference) = reference else { Issue.record("not a registry reference"); return }
        let (data, _, _) = try await store.registry.manifest(registryReference, at: registryReference.reference, credentials: nil)
        let manifest = try JSONDecoder().decode(OCIImageManifest.self, from: data)
        let layer = try #require(manifest.layers.first)
        let path = registry.blobDataPath(sha256: layer.digest.hex)
        var bytes = try #require(FileManager.default.contents(atPath: path))
        bytes[bytes.count / 2] ^= 0xFF
        try bytes.write(to: URL(fileURLWithPath: path))
        await #expect { try await store.pull(reference, credentials: nil, policy: .always) } throws: {
            ($0 as? RuntimeError)?.message.contains("does not match its digest") ?? false
        }
        #expect(!FileManager.default.fileExists(atPath: store.layerPath(layer.digest)), "nothing was unpacked")
        #expect(!FileManager.default.fileExists(atPath: store.blobPath(layer.digest)), "nothing was stored")
    }

    /// `max_image_unpacked_bytes` bounds an image's layers together, whether they are
    /// unpacked by its pull or were already on the drone for another image.
    @Test func anImagesUnpackedSizeIsBoundedAcrossItsLayers() async throws {
        var limits = OCIImageLimits()
        limits.maxImageUnpackedBytes = 1 << 20
        var logger = Logger(label: "test.oci")
        logger.logLevel = .warning
        let store = try OCIContentStore(root: try TestEnvironment.temporaryDirectory("oci-store"),
                                        registry: RegistryClient(insecureRegistries: [], client: HTTPClient.shared, logger: logger), logger: logger, limits: limits)
        func layer(_ name: String) -> CraftedImage.Layer {
            var tar = CraftedTar()
            tar.entry(name, .file, data: [UInt8](repeating: 7, count: 600 << 10))
            return .tar(tar.finish())
        }
        func pull(_ layers: [CraftedImage.Layer]) async throws -> ResolvedImage {
            try await store.pull(try OCIImageReference("oci-layout:\(try CraftedImage.layout(layers: layers)):crafted"), credentials: nil, policy: .ifNotPresent)
        }
        func refusedAtTheImageLimit(_ error: any Error) -> Bool { (error as? RuntimeError)?.limit == "agent.oci.max_image_unpacked_bytes" }
        // 600 KiB: within; its size is recorded beside the layer.
        let small = try await pull([layer("a")])
        let recorded = try String(contentsOfFile: store.layerSizePath(small.layers[0]), encoding: .utf8)
        #expect(recorded == "\(600 << 10)\n")
        // 1.2 MiB in two new layers: the second stops the pull.
        await #expect(performing: { try await pull([layer("b"), layer("c")]) }, throws: refusedAtTheImageLimit)
        #expect(try FileManager.default.contentsOfDirectory(atPath: "\(store.root)/tmp").isEmpty, "nothing left half-unpacked")
        // The layer already here counts too.
        await #expect(performing: { try await pull([layer("a"), layer("d")]) }, throws: refusedAtTheImageLimit)
        // A layer from before sizes were recorded is measured once.
        unlink(store.layerSizePath(small.layers[0]))
        await #expect(performing: { try await pull([layer("a"), layer("d")]) }, throws: refusedAtTheImageLimit)
        #expect(try String(contentsOfFile: store.layerSizePath(small.layers[0]), encoding: .utf8) == "\(600 << 10)\n")
        #expect(try await pull([layer("a")]).layers == small.layers, "the image within the limit still pulls")
    }

    @Test func localLayoutsAndGarbageCollection() async throws {
        let store = try makeStore(insecure: [])
        let text = try await OCITestImage.shared.reference()
        let image = try await store.pull(try OCIImageReference(text), credentials: nil, policy: .ifNotPresent)
        #expect(await serverBinary(in: store, image))
        #expect(await store.resolvedImage(text) != nil)
        await #expect { try await store.pull(try OCIImageReference("oci-layout:\(try await OCITestImage.shared.layout()):nosuchtag"), credentials: nil, policy: .ifNotPresent) } throws: {
            ($0 as? RuntimeError)?.message.contains("conformance") ?? false
        }
        // In use or recent: kept. Neither: its record and layers go.
        #expect(await store.collectGarbage(unusedSince: Timestamp(secondsSinceEpoch: Timestamp.now().secondsSinceEpoch + 3600), inUse: [text]) == 0)
        #expect(await store.collectGarbage(unusedSince: Timestamp(secondsSinceEpoch: image.lastUsed.secondsSinceEpoch - 1), inUse: []) == 0)
        #expect(await store.collectGarbage(unusedSince: Timestamp(secondsSinceEpoch: Timestamp.now().secondsSinceEpoch + 3600), inUse: []) >= 1)
        #expect(await store.resolvedImage(text) == nil)
        #expect(try FileManager.default.contentsOfDirectory(atPath: "\(store.root)/layers/sha256").isEmpty)
        #expect(try FileManager.default.contentsOfDirectory(atPath: "\(store.root)/layer-sizes/sha256").isEmpty, "sizes go with their layers")
    }

    @Test func anIndexPicksTheHostsPlatform() throws {
        let digest = { (n: UInt8) in OCIDigest.sha256(of: [n]) }
        let index = OCIImageIndex(schemaVersion: 2, mediaType: OCIMediaType.ociIndex, manifests: [
            OCIDescriptor(mediaType: OCIMediaType.ociManifest, digest: digest(1), size: 1, platform: OCIPlatform(architecture: "s390x", os: "linux")),
            OCIDescriptor(mediaType: OCIMediaType.ociManifest, digest: digest(2), size: 1, platform: OCIPlatform.host),
            OCIDescriptor(mediaType: OCIMediaType.ociManifest, digest: digest(3), size: 1, platform: OCIPlatform(architecture: OCIPlatform.host.architecture, os: "windows")),
        ])
        #expect(try index.manifest(for: .host, image: "i").digest == digest(2))
        let foreign = OCIImageIndex(schemaVersion: 2, mediaType: nil, manifests: [index.manifests[0]])
        #expect { try foreign.manifest(for: .host, image: "i") } throws: { ($0 as? RuntimeError)?.message.contains("linux/s390x") ?? false }
    }
}

/// A registry that asks for a bearer token from a realm of its choosing (the realm is any
/// URL the registry writes into its `WWW-Authenticate`): the drone sends the spawn's registry
/// credentials only over HTTPS, or in plain HTTP back to the same registry host when that
/// registry is configured insecure — never to another host in the clear.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct RegistryTokenRealmTests {
    /// Serves a registry on 127.0.0.1 that answers 401 with a token realm on `realmHost`, and
    /// a token service there that writes each request's `Authorization` to a log.
    final class HostileRegistry: Sendable {
        let registryPort: Int
        let realmPort: Int
        let log: String
        let child: ChildProcess

        init(realmHost: String) async throws {
            let directory = try TestEnvironment.temporaryDirectory("hostile-registry")
            registryPort = try TestEnvironment.freePort()
            realmPort = realmHost == "127.0.0.1" ? registryPort : try TestEnvironment.freePort()
            log = directory + "/token-requests.log"
            try Self.script.write(toFile: directory + "/registry.py", atomically: true, encoding: .utf8)
            let python = try SystemProgram("python3", debianPackage: "python3").path()
            child = try ChildProcess.watched(python, arguments: [directory + "/registry.py", String(registryPort), realmHost, String(realmPort), log])
            let deadline = ContinuousClock.now + .seconds(20)
            while (try? await HTTPProbe(port: registryPort).get("/health").status) != 200 {
                guard ContinuousClock.now < deadline, child.isRunning else { throw TestSupportError("the hostile registry did not start: \(child.output)") }
                try await Task.sleep(for: .milliseconds(50))
            }
        }

        var tokenRequests: [String] {
            ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
        }

        func stop() async { await child.stop() }

        static let script = #"""
            import http.server, json, sys, threading
            registry_port, realm_host, realm_port, log = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]

            class Handler(http.server.BaseHTTPRequestHandler):
                def log_message(self, *args): pass
                def answer(self, status, body, headers=()):
                    data = json.dumps(body).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in headers: self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                def do_GET(self):
                    if self.path == "/health":
                        return self.answer(200, {})
                    if self.path.startswith("/token"):
                        with open(log, "a") as f:
                            f.write("%s %s\n" % (self.server.server_address[0], self.headers.get("Authorization", "none")))
                        return self.answer(200, {"token": "hostile-token"})
                    if self.headers.get("Authorization", "").startswith("Bearer "):
                        return self.answer(404, {"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]})
                    realm = 'Bearer realm="http://%s:%d/token",service="hostile"' % (realm_host, realm_port)
                    return self.answer(401, {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}, [("WWW-Authenticate", realm)])

            servers = [http.server.ThreadingHTTPServer(("127.0.0.1", registry_port), Handler)]
            if (realm_host, realm_port) != ("127.0.0.1", registry_port):
                servers.append(http.server.ThreadingHTTPServer((realm_host, realm_port), Handler))
            for server in servers[1:]:
                threading.Thread(target=server.serve_forever, daemon=True).start()
            servers[0].serve_forever()
            """#
    }

    func pull(from registry: HostileRegistry) async throws -> RuntimeError? {
        var logger = Logger(label: "test.oci")
        logger.logLevel = .critical
        let address = "127.0.0.1:\(registry.registryPort)"
        let client = RegistryClient(insecureRegistries: [address], client: HTTPClient.shared, logger: logger)
        let store = try OCIContentStore(root: try TestEnvironment.temporaryDirectory("oci-store"), registry: client, logger: logger)
        let reference = try OCIImageReference("\(address)/team/server:latest")
        do {
            _ = try await store.pull(reference, credentials: RegistryCredentials(username: "plane", password: "s3cret-pass"), policy: .always)
            return nil
        } catch {
            return error
        }
    }

    @Test func credentialsAreNotSentInTheClearToAnotherHost() async throws {
        let registry = try await HostileRegistry(realmHost: "127.0.0.2")
        let error = try await pull(from: registry)
        await registry.stop()
        #expect(error?.code == .imageUnavailable)
        #expect(error?.description.contains("not HTTPS; they are not sent") == true, "\(String(describing: error))")
        #expect(registry.tokenRequests.isEmpty, "the realm on another host was asked: \(registry.tokenRequests)")
    }

    @Test func anInsecureRegistryGetsThemBackOnItsOwnHost() async throws {
        let registry = try await HostileRegistry(realmHost: "127.0.0.1")
        let error = try await pull(from: registry)
        await registry.stop()
        // The image does not exist there; what matters is where the credentials went.
        #expect(error?.code == .imageUnavailable)
        let basic = "Basic " + Data("plane:s3cret-pass".utf8).base64EncodedString()
        #expect(registry.tokenRequests == ["127.0.0.1 \(basic)"], "\(registry.tokenRequests)")
    }
}
