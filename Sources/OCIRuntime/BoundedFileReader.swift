import ContainerRuntime
import Foundation

/// Reads files whose content an image author or an operator's layout controls, so that no
/// such file can hang the drone or fill its memory: a file is opened without blocking
/// (`O_NONBLOCK`: a FIFO's open returns at once), must be a regular file by `fstat` before
/// anything is read (a FIFO or a device such as `/dev/zero` is refused), must not be larger
/// than the limit, and no more than the limit is read even if it grows meanwhile.
enum BoundedFileReader {
    /// A regular file at `path` (links followed: the path is the operator's).
    static func read(_ path: String, limit: Int, what: String, limitKey: String? = nil) throws(RuntimeError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { throw RuntimeError(.imageUnavailable, "Cannot open \(what) (\(path)): \(String(cString: strerror(errno))).") }
        defer { close(fd) }
        return try read(fd, limit: limit, what: what, limitKey: limitKey)
    }

    /// A file of the tree at `root`, at the relative `path`, opened one component at a time
    /// with `O_NOFOLLOW`: a symlink anywhere on the way is refused, so the file is inside
    /// the root whatever the image holds. Nil when the file does not exist.
    static func read(_ relative: String, under root: String, limit: Int, what: String) throws(RuntimeError) -> [UInt8]? {
        var fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw RuntimeError(.internal, "Cannot open \(root): \(String(cString: strerror(errno))).") }
        defer { close(fd) }
        let components = relative.split(separator: "/").map(String.init)
        for (index, component) in components.enumerated() {
            let isLast = index == components.count - 1
            let flags = O_RDONLY | O_NOFOLLOW | O_CLOEXEC | (isLast ? O_NONBLOCK | O_NOCTTY : O_DIRECTORY)
            let next = openat(fd, component, flags)
            guard next >= 0 else {
                let error = errno
                if error == ENOENT { return nil }
                if error == ELOOP || error == ENOTDIR {
                    throw RuntimeError(.invalidSpec, "\(what) is not a regular file inside the image: '\(components[...index].joined(separator: "/"))' is a symlink or not a directory.")
                }
                throw RuntimeError(.invalidSpec, "Cannot open \(what): \(String(cString: strerror(error))).")
            }
            close(fd)
            fd = next
        }
        return try read(fd, limit: limit, what: what, limitKey: nil)
    }

    private static func read(_ fd: Int32, limit: Int, what: String, limitKey: String?) throws(RuntimeError) -> [UInt8] {
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw RuntimeError(.internal, "Cannot stat \(what): \(String(cString: strerror(errno))).") }
        guard info.st_mode & S_IFMT == S_IFREG else {
            throw RuntimeError(.invalidSpec, "\(what) is not a regular file (a FIFO, device, socket or directory is never read).")
        }
        guard info.st_size >= 0, info.st_size <= Int64(limit) else {
            throw RuntimeError(.imageUnavailable, "\(what) has \(info.st_size) bytes; at most \(limit) are read.", limit: limitKey)
        }
        // A regular file never blocks; O_NONBLOCK is only there for the open.
        var bytes = [UInt8](repeating: 0, count: limit + 1)
        var filled = 0
        while filled <= limit {
            let count = bytes.withUnsafeMutableBytes { Foundation.read(fd, $0.baseAddress! + filled, limit + 1 - filled) }
            if count < 0 {
                if errno == EINTR { continue }
                throw RuntimeError(.internal, "Cannot read \(what): \(String(cString: strerror(errno))).")
            }
            if count == 0 { break }
            filled += count
        }
        guard filled <= limit else {
            throw RuntimeError(.imageUnavailable, "\(what) grew beyond \(limit) bytes while it was read.", limit: limitKey)
        }
        return Array(bytes[0..<filled])
    }
}
