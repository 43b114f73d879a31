#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Directories and files only their owner may read: the drone's state (its SQLite store
/// holds whole spawn requests with registry passwords and bearer tokens), image layers,
/// keys. Directories are 0700, files 0600; an existing one with a wider mode is narrowed,
/// so an installation from before this rule is fixed at its next start.
public enum PrivateFiles {
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public var path: String
        public var errno: Int32
        public var description: String { "\(path): \(String(cString: strerror(errno)))" }

        public init(path: String, errno: Int32) {
            self.path = path
            self.errno = errno
        }
    }

    public static let directoryMode: mode_t = 0o700
    public static let fileMode: mode_t = 0o600

    /// Creates `path` as an owner-only directory (missing parents are created 0755, like
    /// `mkdir -p`), or narrows an existing one to 0700. A symlink at `path` is followed:
    /// the operator may point a state directory elsewhere.
    public static func directory(_ path: String) throws(Failure) {
        var components: [Substring] = []
        for component in path.split(separator: "/", omittingEmptySubsequences: true) {
            components.append(component)
            let prefix = (path.hasPrefix("/") ? "/" : "") + components.joined(separator: "/")
            let last = components.count == path.split(separator: "/", omittingEmptySubsequences: true).count
            if mkdir(prefix, last ? directoryMode : 0o755) != 0 && errno != EEXIST {
                throw Failure(path: prefix, errno: errno)
            }
        }
        try narrow(path, to: directoryMode)
    }

    /// Narrows an existing file to 0600; a missing file is fine.
    public static func restrictFile(_ path: String) throws(Failure) {
        var info = stat()
        guard lstat(path, &info) == 0 else {
            if errno == ENOENT { return }
            throw Failure(path: path, errno: errno)
        }
        guard info.st_mode & S_IFMT == S_IFREG else { return }
        try narrow(path, to: fileMode)
    }

    /// Creates an empty owner-only file at `path` if there is none (so that what writes it
    /// next, e.g. SQLite, never makes it readable by others for a moment).
    public static func createFile(_ path: String) throws(Failure) {
        let fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, fileMode)
        guard fd >= 0 else { throw Failure(path: path, errno: errno) }
        close(fd)
        try restrictFile(path)
    }

    /// Whether `mode`'s permission bits give anything to group or others.
    public static func isShared(_ mode: mode_t) -> Bool { mode & 0o077 != 0 }

    private static func narrow(_ path: String, to mode: mode_t) throws(Failure) {
        var info = stat()
        guard stat(path, &info) == 0 else { throw Failure(path: path, errno: errno) }
        guard info.st_mode & 0o7777 != mode else { return }
        guard chmod(path, mode) == 0 else {
            throw Failure(path: path, errno: errno)
        }
    }
}
