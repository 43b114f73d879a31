import ContainerRuntime
import Foundation
import Logging
import PlaneCore
import Synchronization

/// Which credentials may use the images this drone pulled into Docker with credentials:
/// dockerd keeps one copy of an image for everyone, so without this record a spawn without
/// credentials could run a private image another spawn pulled. An image the drone pulled
/// with credentials is used by a spawn with other credentials (or none) only after Docker
/// pulled it again with that spawn's own (the registry decides); an anonymous pull that
/// succeeds makes the image public. Kept in a 0600 JSON file so a restarted drone knows.
final class DockerImageAccess: Sendable {
    let path: String?
    let logger: Logger
    private let scopes: Mutex<[String: Set<String>]>

    init(path: String?, logger: Logger) {
        self.path = path
        self.logger = logger
        var loaded: [String: Set<String>] = [:]
        if let path, let bytes = try? BoundedFile.read(path, limit: 16 << 20), let decoded = try? JSONDecoder().decode([String: Set<String>].self, from: Data(bytes)) {
            loaded = decoded
        }
        scopes = Mutex(loaded)
    }

    /// Whether a spawn with `scope` may use the image as it is on the daemon.
    func mayUse(_ image: String, scope: ImageAccessScope) -> Bool {
        scopes.withLock { all in all[image].map { $0.contains(scope.rawValue) } ?? true }
    }

    /// The registry served `image` to `scope`.
    func granted(_ image: String, scope: ImageAccessScope) {
        let snapshot: [String: Set<String>] = scopes.withLock { all in
            if scope == .anonymous { all[image] = nil } else { all[image, default: []].insert(scope.rawValue) }
            return all
        }
        guard let path else { return }
        do {
            let data = try JSONEncoder().encode(snapshot)
            let temporary = path + ".tmp"
            try data.write(to: URL(fileURLWithPath: temporary))
            try PrivateFiles.restrictFile(temporary)
            guard rename(temporary, path) == 0 else { throw PrivateFiles.Failure(path: path, errno: errno) }
        } catch {
            logger.warning("docker.image_access_not_saved", metadata: ["docker.path": "\(path)", "error": "\(error)"])
        }
    }
}
