import ContainerRuntime
import Foundation
import Logging
import PlaneCore
import Synchronization

/// What an image resolved to: its configuration and its unpacked layers, bottom first.
public struct ResolvedImage: Sendable, Hashable, Codable {
    public var reference: String
    public var manifestDigest: OCIDigest
    public var configuration: OCIImageConfiguration
    /// Layer digests (compressed, as the manifest names them), bottom first.
    public var layers: [OCIDigest]
    /// When a backend last started from it (for garbage collection).
    public var lastUsed: Timestamp
    /// Whom the registry served it to (registry images; nil for a layout, or a record from
    /// before scopes were kept, which is resolved again before use).
    public var access: ImageAccessScope?
}

/// The drone's image content in its state directory, shared by all its backends:
///
/// - `blobs/<algorithm>/<hex>`: manifests, configs and layer blobs, each checked against its
///   digest before it is stored;
/// - `layers/<algorithm>/<hex>/`: each layer unpacked once (read-only lower layers of every
///   backend's overlay root), named by the layer blob's digest;
/// - `layer-sizes/<algorithm>/<hex>`: the file data each layer unpacked to, charged to every
///   image that uses the layer against `max_image_unpacked_bytes` (`ImageUnpackBudget`);
/// - `images/<sha256 of the reference>.json`: what a reference resolved to, whom the
///   registry served it to (`ImageAccessScope`), and when it was last used;
/// - `access/<algorithm>/<hex>`: for each blob, the repositories and scopes the registry has
///   let read it. A pull with another scope asks the registry (`HEAD`) before it uses a
///   blob that is already here, so content one spawn pulled with credentials is never
///   served to a spawn without them.
///
/// Everything is written under `tmp/` and renamed into place, so a crash never leaves a
/// half-written blob or layer under its final name. Concurrent pulls of the same content
/// share one download and one unpack.
public actor OCIContentStore {
    public nonisolated let root: String
    nonisolated let registry: RegistryClient
    let logger: Logger
    /// What an image may make the store download, read and unpack.
    nonisolated let limits: OCIImageLimits
    private var inFlight: [String: Task<Void, any Error>] = [:]

    init(root: String, registry: RegistryClient, logger: Logger, limits: OCIImageLimits = OCIImageLimits()) throws(RuntimeError) {
        self.root = root
        self.registry = registry
        self.logger = logger
        self.limits = limits
        try Self.makeDirectory(root)
        for directory in ["blobs", "blobs/sha256", "blobs/sha512", "layers", "layers/sha256", "layers/sha512", "layer-sizes", "layer-sizes/sha256",
                          "layer-sizes/sha512", "access", "access/sha256", "access/sha512", "images", "tmp"] {
            try Self.makeDirectory("\(root)/\(directory)")
        }
        // Leftovers of an earlier run that stopped mid-pull.
        for leftover in (try? FileManager.default.contentsOfDirectory(atPath: "\(root)/tmp")) ?? [] {
            try? FileManager.default.removeItem(atPath: "\(root)/tmp/\(leftover)")
        }
    }

    static func makeDirectory(_ path: String) throws(RuntimeError) {
        // Owner-only: a private image's layers must not be readable by other users.
        do { try PrivateFiles.directory(path) } catch {
            throw RuntimeError(.unavailable, "Cannot create \(path) for the OCI runtime's content store.", underlying: error)
        }
    }

    public nonisolated func blobPath(_ digest: OCIDigest) -> String { "\(root)/blobs/\(digest.algorithm.rawValue)/\(digest.hex)" }
    public nonisolated func layerPath(_ digest: OCIDigest) -> String { "\(root)/layers/\(digest.algorithm.rawValue)/\(digest.hex)" }
    nonisolated func accessPath(_ digest: OCIDigest) -> String { "\(root)/access/\(digest.algorithm.rawValue)/\(digest.hex)" }
    /// The unpacked file data of a layer, in bytes (decimal text), written before the layer
    /// is moved into place.
    nonisolated func layerSizePath(_ digest: OCIDigest) -> String { "\(root)/layer-sizes/\(digest.algorithm.rawValue)/\(digest.hex)" }
    nonisolated func imageRecordPath(_ reference: String) -> String { "\(root)/images/\(OCIDigest.sha256(of: Array(reference.utf8)).hex).json" }

    nonisolated func temporaryPath(_ name: String) -> String { "\(root)/tmp/\(name)-\(UUID().uuidString)" }

    // MARK: Images

    /// The image as last resolved, if all of its layers are still here.
    public func resolvedImage(_ reference: String) -> ResolvedImage? {
        guard let data = FileManager.default.contents(atPath: imageRecordPath(reference)),
              let image = try? JSONDecoder().decode(ResolvedImage.self, from: data) else { return nil }
        guard image.layers.allSatisfy({ FileManager.default.fileExists(atPath: layerPath($0)) }) else { return nil }
        return image
    }

    func record(_ image: ResolvedImage) throws(RuntimeError) {
        let data: Data
        do { data = try JSONEncoder().encode(image) } catch { throw RuntimeError(.internal, "Cannot encode the record of image \(image.reference).", underlying: error) }
        try writeAtomically(data, to: imageRecordPath(image.reference))
    }

    /// Marks the image as used now (a backend started from it).
    public func touch(_ reference: String) {
        guard var image = resolvedImage(reference) else { return }
        image.lastUsed = .now()
        try? record(image)
    }

    nonisolated func writeAtomically(_ data: Data, to path: String) throws(RuntimeError) {
        let temporary = temporaryPath("write")
        do {
            try data.write(to: URL(fileURLWithPath: temporary))
            try PrivateFiles.restrictFile(temporary)
            guard rename(temporary, path) == 0 else { throw RuntimeError(.internal, "Cannot rename \(temporary) to \(path): \(String(cString: strerror(errno))).") }
        } catch let error as RuntimeError {
            unlink(temporary)
            throw error
        } catch {
            unlink(temporary)
            throw RuntimeError(.internal, "Cannot write \(path).", underlying: error)
        }
    }

    // MARK: Pulling

    /// Resolves `reference` and makes every layer of it available (downloaded, checked,
    /// unpacked), following the pull policy.
    public func pull(_ reference: OCIImageReference, credentials: RegistryCredentials?, policy: DockerPullPolicy) async throws(RuntimeError) -> ResolvedImage {
        let key = reference.description
        if policy != .always, case .registry(let registryReference) = reference, let image = resolvedImage(key) {
            // Usable as it is only if the registry served it to anyone, or to these very
            // credentials; otherwise the registry is asked again with the spawn's own.
            let scope = ImageAccessScope(credentials, registry: registryReference.registry)
            if image.access == .anonymous || image.access == scope { return image }
            if policy == .never {
                throw RuntimeError(.imageUnavailable, "Image \(key) is on this drone, pulled with other credentials, and the pull policy is Never; pass the credentials it was pulled with, or use IfNotPresent.")
            }
        } else if policy == .never, case .registry = reference {
            throw RuntimeError(.imageUnavailable, "Image \(key) is not on this drone and the pull policy is Never; pull it first or use IfNotPresent.")
        }
        let image: ResolvedImage
        switch reference {
        case .registry(let registryReference):
            image = try await pullFromRegistry(registryReference, credentials: credentials)
        case .layout(let path, let tag):
            image = try await readLayout(path: path, tag: tag, reference: key)
        }
        try record(image)
        return image
    }

    private func pullFromRegistry(_ reference: RegistryReference, credentials: RegistryCredentials?) async throws(RuntimeError) -> ResolvedImage {
        let name = reference.description
        let scope = ImageAccessScope(credentials, registry: reference.registry)
        logger.info("oci.pull", metadata: ["plane.image": "\(name)"])
        var (data, mediaType, digest) = try await registry.manifest(reference, at: reference.reference, credentials: credentials, maxBytes: limits.maxManifestBytes)
        var type = mediaType.flatMap { OCIMediaType.isIndex($0) || OCIMediaType.isManifest($0) ? $0 : nil } ?? OCIJSON.mediaType(of: data)
        if OCIMediaType.isIndex(type) {
            let index = try OCIJSON.decode(OCIImageIndex.self, from: data, what: "image index", image: name)
            let chosen = try index.manifest(for: .host, image: name)
            (data, mediaType, digest) = try await registry.manifest(reference, at: chosen.digest.description, credentials: credentials, maxBytes: limits.maxManifestBytes)
            type = mediaType ?? OCIJSON.mediaType(of: data)
        }
        guard OCIMediaType.isManifest(type) || type == nil else {
            throw RuntimeError(.imageUnavailable, "Image \(name): registry \(reference.registry) sent a manifest of type '\(type ?? "?")', which this runtime does not read (it reads OCI and Docker schema 2).")
        }
        let manifest = try OCIJSON.decode(OCIImageManifest.self, from: data, what: "manifest", image: name)
        try limits.check(manifest, image: name)
        try writeAtomically(data, to: blobPath(digest))
        let configPath = blobPath(manifest.config.digest)
        let downloadedConfig = Mutex(false)
        try await once("blob \(manifest.config.digest)") { [registry = self.registry] in
            guard !FileManager.default.fileExists(atPath: configPath) else { return }
            let temporary = self.temporaryPath("blob")
            try await registry.downloadBlob(manifest.config, of: reference, credentials: credentials, to: temporary)
            guard rename(temporary, configPath) == 0 else { throw RuntimeError(.internal, "Cannot store blob \(manifest.config.digest).") }
            downloadedConfig.withLock { $0 = true }
        }
        try await ensureAccess(manifest.config, of: reference, credentials: credentials, scope: scope, downloaded: downloadedConfig.withLock { $0 })
        let configuration = try readConfiguration(at: configPath, image: name)
        // Layers concurrently: each downloaded (if missing), checked, unpacked (if missing).
        do {
            let budget = ImageUnpackBudget(limit: limits.maxImageUnpackedBytes, image: name)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for layer in manifest.layers {
                    group.addTask {
                        let blob = self.blobPath(layer.digest)
                        let downloaded = Mutex(false)
                        try await self.once("blob \(layer.digest)") { [registry = self.registry] in
                            guard await !self.layerIsUnpacked(layer.digest), !FileManager.default.fileExists(atPath: blob) else { return }
                            let temporary = self.temporaryPath("blob")
                            try await registry.downloadBlob(layer, of: reference, credentials: credentials, to: temporary)
                            guard rename(temporary, blob) == 0 else { throw RuntimeError(.internal, "Cannot store blob \(layer.digest).") }
                            downloaded.withLock { $0 = true }
                        }
                        try await self.ensureAccess(layer, of: reference, credentials: credentials, scope: scope, downloaded: downloaded.withLock { $0 })
                        try await self.unpackLayer(layer, blob: blob, image: name, verify: false, budget: budget)
                    }
                }
                try await group.waitForAll()
            }
        } catch let error as RuntimeError {
            throw error
        } catch {
            throw RuntimeError(.imageUnavailable, "Pulling image \(name) failed.", underlying: error)
        }
        return ResolvedImage(reference: name, manifestDigest: digest, configuration: configuration, layers: manifest.layers.map(\.digest), lastUsed: .now(),
                             access: scope)
    }

    /// Makes sure this pull may use the blob now on the drone: one it downloaded itself is
    /// recorded as readable by its repository and scope; one that was here already (or that
    /// another pull brought meanwhile) is used only when the registry has served it to this
    /// repository and scope before, or does now: it is downloaded again and checked against
    /// its digest, then dropped. (A `HEAD` would not do: a registry that merely names a
    /// digest, without having its bytes, would get another spawn's private layer.)
    private func ensureAccess(_ descriptor: OCIDescriptor, of reference: RegistryReference, credentials: RegistryCredentials?, scope: ImageAccessScope,
                              downloaded: Bool) async throws(RuntimeError) {
        let entry = "\(reference.registry)/\(reference.repository) \(scope.rawValue)"
        let path = accessPath(descriptor.digest)
        let known = (try? String(contentsOfFile: path, encoding: .utf8))?.split(separator: "\n").map(String.init) ?? []
        if known.contains(entry) { return }
        if !downloaded {
            let temporary = temporaryPath("proof")
            defer { unlink(temporary) }
            do {
                try await registry.downloadBlob(descriptor, of: reference, credentials: credentials, to: temporary)
            } catch {
                throw RuntimeError(.imageUnavailable, "Image \(reference): registry \(reference.registry) does not serve blob \(descriptor.digest) to \(scope); the copy on this drone, from another pull, is not used (\(error.message)).", underlying: error)
            }
        }
        let current = (try? String(contentsOfFile: path, encoding: .utf8))?.split(separator: "\n").map(String.init) ?? []
        try writeAtomically(Data((current + [entry]).joined(separator: "\n").utf8 + [0x0A]), to: path)
    }

    /// An OCI image layout on disk (`index.json` and `blobs/`), e.g. the one `build-image`
    /// writes. Its blobs are checked against their digests and unpacked from where they are.
    private func readLayout(path: String, tag: String?, reference: String) async throws(RuntimeError) -> ResolvedImage {
        let indexData: Data
        do {
            indexData = Data(try BoundedFileReader.read("\(path)/index.json", limit: limits.maxManifestBytes, what: "The index.json of layout \(path)",
                                                        limitKey: "agent.oci.max_manifest_bytes"))
        } catch {
            throw RuntimeError(.imageUnavailable, "Image \(reference): \(path) is not an OCI image layout (no readable index.json: \(error.message))", limit: error.limit)
        }
        let index = try OCIJSON.decode(OCIImageIndex.self, from: indexData, what: "layout index.json", image: reference)
        let refName = "org.opencontainers.image.ref.name"
        let candidates = tag.map { tag in index.manifests.filter { $0.annotations?[refName] == tag } } ?? index.manifests
        guard let descriptor = candidates.count == 1 ? candidates.first : candidates.first(where: { $0.platform?.runs(on: .host) ?? false }) else {
            let tags = index.manifests.compactMap { $0.annotations?[refName] }
            throw RuntimeError(.imageUnavailable, "Image \(reference): the layout has \(candidates.isEmpty ? "no manifest" : "several manifests") for \(tag.map { "tag '\($0)'" } ?? "no tag"); its tags: \(tags.isEmpty ? "none" : tags.joined(separator: ", ")).")
        }
        func layoutBlob(_ digest: OCIDigest) -> String { "\(path)/blobs/\(digest.algorithm.rawValue)/\(digest.hex)" }
        func verified(_ digest: OCIDigest, limit: Int, key: String) throws(RuntimeError) -> Data {
            guard FileManager.default.fileExists(atPath: layoutBlob(digest)) else {
                throw RuntimeError(.imageUnavailable, "Image \(reference): blob \(digest) is missing from the layout.")
            }
            let data = Data(try BoundedFileReader.read(layoutBlob(digest), limit: limit, what: "Blob \(digest) of layout \(path)", limitKey: key))
            var hasher = OCIDigest.Hasher(digest.algorithm)
            data.withUnsafeBytes { hasher.update($0) }
            guard hasher.finalize() == digest else { throw RuntimeError(.imageUnavailable, "Image \(reference): blob \(digest) of the layout does not match its digest; refusing it.") }
            return data
        }
        var manifestDigest = descriptor.digest
        let manifestKey = "agent.oci.max_manifest_bytes"
        var data = try verified(manifestDigest, limit: limits.maxManifestBytes, key: manifestKey)
        if OCIMediaType.isIndex(descriptor.mediaType) {
            let nested = try OCIJSON.decode(OCIImageIndex.self, from: data, what: "image index", image: reference)
            manifestDigest = try nested.manifest(for: .host, image: reference).digest
            data = try verified(manifestDigest, limit: limits.maxManifestBytes, key: manifestKey)
        }
        let manifest = try OCIJSON.decode(OCIImageManifest.self, from: data, what: "manifest", image: reference)
        try limits.check(manifest, image: reference)
        let configData = try verified(manifest.config.digest, limit: Int(limits.maxConfigBytes), key: "agent.oci.max_config_bytes")
        let configuration = try OCIJSON.decode(OCIImageConfiguration.self, from: configData, what: "configuration", image: reference)
        let budget = ImageUnpackBudget(limit: limits.maxImageUnpackedBytes, image: reference)
        for layer in manifest.layers {
            try await unpackLayer(layer, blob: layoutBlob(layer.digest), image: reference, verify: true, budget: budget)
        }
        return ResolvedImage(reference: reference, manifestDigest: manifestDigest, configuration: configuration, layers: manifest.layers.map(\.digest), lastUsed: .now())
    }

    private func readConfiguration(at path: String, image: String) throws(RuntimeError) -> OCIImageConfiguration {
        let data = try BoundedFileReader.read(path, limit: Int(limits.maxConfigBytes), what: "The configuration of image \(image)", limitKey: "agent.oci.max_config_bytes")
        return try OCIJSON.decode(OCIImageConfiguration.self, from: Data(data), what: "configuration", image: image)
    }

    func layerIsUnpacked(_ digest: OCIDigest) -> Bool { FileManager.default.fileExists(atPath: layerPath(digest)) }

    /// Runs `work` once per key at a time: a second caller waits for the first's result.
    private func once(_ key: String, _ work: @escaping @Sendable () async throws -> Void) async throws(RuntimeError) {
        let task: Task<Void, any Error>
        if let running = inFlight[key] {
            task = running
        } else {
            task = Task { try await work() }
            inFlight[key] = task
        }
        defer { if inFlight[key] == task { inFlight[key] = nil } }
        do { try await task.value } catch let error as RuntimeError { throw error } catch {
            throw RuntimeError(.internal, "\(key) failed.", underlying: error)
        }
    }

    /// Unpacks the layer blob at `blob` into `layers/…` (once), checking its digest on the
    /// way when `verify` (blobs not from our own checked store), and charges what it unpacks
    /// to (or, for a layer already here, its recorded size) `budget`.
    private func unpackLayer(_ layer: OCIDescriptor, blob: String, image: String, verify: Bool, budget: ImageUnpackBudget) async throws(RuntimeError) {
        let destination = layerPath(layer.digest)
        let sizePath = layerSizePath(layer.digest)
        let temporary = temporaryPath("layer")
        let logger = logger
        let charged = Mutex(false)
        try await once("layer \(layer.digest)") {
            guard !FileManager.default.fileExists(atPath: destination) else { return }
            let compression = try LayerCompression(mediaType: layer.mediaType, image: image)
            let what = "Layer \(layer.digest) of image \(image)"
            let started = ContinuousClock.now
            let limits = self.limits
            try await Self.offload { () throws(RuntimeError) in
                try Self.makeDirectory(temporary)
                do throws(RuntimeError) {
                    let size = try LayerArchive.unpack(blob: blob, compression: compression, expectedDigest: verify ? layer.digest : nil, into: temporary,
                                                       mode: .overlayLayer, what: what, limits: limits, budget: budget)
                    charged.withLock { $0 = true }
                    try self.writeAtomically(Data("\(size)\n".utf8), to: sizePath)
                } catch {
                    try? FileManager.default.removeItem(atPath: temporary)
                    throw error
                }
                guard rename(temporary, destination) == 0 else {
                    try? FileManager.default.removeItem(atPath: temporary)
                    throw RuntimeError(.internal, "Cannot move unpacked layer \(layer.digest) into place: \(String(cString: strerror(errno))).")
                }
            }
            logger.debug("oci.layer_unpacked", metadata: ["plane.layer": "\(layer.digest)", "plane.duration": "\(ContinuousClock.now - started)"])
        }
        if !charged.withLock({ $0 }) { try budget.charge(try await recordedSize(of: layer.digest)) }
    }

    /// A layer's recorded unpacked size; a layer unpacked before sizes were recorded is
    /// measured (its regular files' sizes) once and recorded.
    private func recordedSize(of digest: OCIDigest) async throws(RuntimeError) -> Int64 {
        let path = layerSizePath(digest)
        if let text = try? String(contentsOfFile: path, encoding: .utf8), let size = Int64(text.trimmingCharacters(in: .whitespacesAndNewlines)), size >= 0 {
            return size
        }
        let layer = layerPath(digest)
        let measured = Mutex<Int64>(0)
        try await Self.offload { () throws(RuntimeError) in
            let size = Self.fileDataSize(under: layer)
            measured.withLock { $0 = size }
            try self.writeAtomically(Data("\(size)\n".utf8), to: path)
        }
        return measured.withLock { $0 }
    }

    /// The sizes of the regular files below `directory` (links not followed), saturating.
    static func fileDataSize(under directory: String) -> Int64 {
        var total: Int64 = 0
        guard let walker = FileManager.default.enumerator(atPath: directory) else { return 0 }
        while let relative = walker.nextObject() as? String {
            var info = stat()
            guard lstat("\(directory)/\(relative)", &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { continue }
            total = total.addingReportingOverflow(Int64(info.st_size)).overflow ? Int64.max : total + Int64(info.st_size)
        }
        return total
    }

    /// Runs blocking file work off the cooperative thread pool.
    static func offload(_ work: @escaping @Sendable () throws(RuntimeError) -> Void) async throws(RuntimeError) {
        let result: Result<Void, RuntimeError> = await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                do throws(RuntimeError) {
                    try work()
                    continuation.resume(returning: .success(()))
                } catch {
                    continuation.resume(returning: .failure(error))
                }
            }
        }
        try result.get()
    }

    // MARK: Garbage collection

    /// Removes image records not used since `cutoff` (unless a backend uses them: `inUse`
    /// holds their references), then every blob and unpacked layer no remaining record
    /// needs. Returns the number of blobs and layers removed.
    @discardableResult
    public func collectGarbage(unusedSince cutoff: Timestamp, inUse: Set<String>) -> Int {
        var keepBlobs: Set<String> = []
        var keepLayers: Set<String> = []
        let images = "\(root)/images"
        for file in (try? FileManager.default.contentsOfDirectory(atPath: images)) ?? [] {
            let path = "\(images)/\(file)"
            guard let data = FileManager.default.contents(atPath: path), let image = try? JSONDecoder().decode(ResolvedImage.self, from: data) else {
                unlink(path)
                continue
            }
            if image.lastUsed < cutoff, !inUse.contains(image.reference) {
                unlink(path)
                continue
            }
            keepBlobs.insert(image.manifestDigest.description)
            if let manifest = FileManager.default.contents(atPath: blobPath(image.manifestDigest)),
               let decoded = try? JSONDecoder().decode(OCIImageManifest.self, from: manifest) {
                keepBlobs.insert(decoded.config.digest.description)
            }
            for layer in image.layers {
                keepBlobs.insert(layer.description)
                keepLayers.insert(layer.description)
            }
        }
        // Blobs in use by a pull right now are under tmp/ or just renamed: a pull records its
        // image after its layers, so GC runs only while no pull is in flight.
        guard inFlight.isEmpty else { return 0 }
        var removed = 0
        for algorithm in ["sha256", "sha512"] {
            for hex in (try? FileManager.default.contentsOfDirectory(atPath: "\(root)/blobs/\(algorithm)")) ?? [] where !keepBlobs.contains("\(algorithm):\(hex)") {
                if unlink("\(root)/blobs/\(algorithm)/\(hex)") == 0 { removed += 1 }
            }
            for hex in (try? FileManager.default.contentsOfDirectory(atPath: "\(root)/access/\(algorithm)")) ?? [] where !keepBlobs.contains("\(algorithm):\(hex)") {
                unlink("\(root)/access/\(algorithm)/\(hex)")
            }
            for hex in (try? FileManager.default.contentsOfDirectory(atPath: "\(root)/layers/\(algorithm)")) ?? [] where !keepLayers.contains("\(algorithm):\(hex)") {
                if (try? FileManager.default.removeItem(atPath: "\(root)/layers/\(algorithm)/\(hex)")) != nil { removed += 1 }
            }
            for hex in (try? FileManager.default.contentsOfDirectory(atPath: "\(root)/layer-sizes/\(algorithm)")) ?? [] where !keepLayers.contains("\(algorithm):\(hex)") {
                unlink("\(root)/layer-sizes/\(algorithm)/\(hex)")
            }
        }
        if removed > 0 { logger.info("oci.garbage_collected", metadata: ["plane.removed": "\(removed)"]) }
        return removed
    }
}

/// Reading a layer blob: decompression, digest check and unpacking in one pass.
enum LayerArchive {
    /// Returns the file data unpacked, in bytes.
    @discardableResult
    static func unpack(blob: String, compression: LayerCompression, expectedDigest: OCIDigest?, into root: String, mode: LayerUnpacker.Mode, what: String,
                       limits: OCIImageLimits = OCIImageLimits(), budget: ImageUnpackBudget? = nil) throws(RuntimeError) -> Int64 {
        let file = try FileByteSource(path: blob)
        defer { file.close() }
        let hashing = HashingByteSource(file, algorithm: expectedDigest?.algorithm ?? .sha256)
        var unpacker = LayerUnpacker(root: root, mode: mode, what: what)
        let unpacked: Int64
        switch compression {
        case .none:
            var reader = TarReader(hashing, what: what, limits: limits)
            reader.budget = budget
            try unpacker.unpack(&reader)
            unpacked = reader.unpackedBytes
        case .gzip:
            var reader = TarReader(try GzipByteSource(hashing, what: what), what: what, limits: limits)
            reader.budget = budget
            try unpacker.unpack(&reader)
            unpacked = reader.unpackedBytes
        case .zstd:
            var reader = TarReader(try ZstdByteSource(hashing, what: what), what: what, limits: limits)
            reader.budget = budget
            try unpacker.unpack(&reader)
            unpacked = reader.unpackedBytes
        }
        if let expectedDigest {
            // What follows the archive's end (padding) belongs to the blob too.
            try hashing.drain()
            guard hashing.digest == expectedDigest else {
                throw RuntimeError(.imageUnavailable, "\(what) does not match its digest; refusing it.")
            }
        }
        return unpacked
    }
}
