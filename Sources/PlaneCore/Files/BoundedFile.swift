#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads files whose content someone outside controls (an image's `/etc/passwd`, an OCI
/// layout's blobs, a configuration file), so that no such file can hang the process or
/// fill its memory: it is opened without blocking (`O_NONBLOCK`: a FIFO's open returns at
/// once), must be a regular file by `fstat` before anything is read (a FIFO or a device
/// such as `/dev/zero` is refused), must not be larger than the limit, and no more than the
/// limit is read even if it grows meanwhile.
public enum BoundedFile {
    public enum Failure: Error, Sendable, Hashable {
        case missing
        /// A symlink (where links are not followed) or a non-directory on the way.
        case link(component: String)
        case notRegular
        case tooLarge(size: Int64, limit: Int)
        case unreadable(errno: Int32)

        public var reason: String {
            switch self {
            case .missing: "it does not exist"
            case .link(let component): "'\(component)' on its path is a symlink or not a directory"
            case .notRegular: "it is not a regular file (a FIFO, device, socket or directory is never read)"
            case .tooLarge(let size, let limit): "it has \(size) bytes; at most \(limit) are read"
            case .unreadable(let code): String(cString: strerror(code))
            }
        }
    }

    /// A regular file at `path` (links followed).
    public static func read(_ path: String, limit: Int) throws(Failure) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY)
        guard fd >= 0 else { throw errno == ENOENT ? .missing : .unreadable(errno: errno) }
        defer { close(fd) }
        return try read(fd, limit: limit)
    }

    /// A file of the tree at `root`, at the relative `path`, opened one component at a time
    /// with `O_NOFOLLOW`: a symlink anywhere on the way is refused, so the file is inside
    /// the root whatever the tree holds.
    public static func read(_ relative: String, under root: String, limit: Int) throws(Failure) -> [UInt8] {
        var fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw .unreadable(errno: errno) }
        defer { close(fd) }
        let components = relative.split(separator: "/").map(String.init)
        for (index, component) in components.enumerated() {
            let isLast = index == components.count - 1
            let next = openat(fd, component, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | (isLast ? O_NONBLOCK | O_NOCTTY : O_DIRECTORY))
            guard next >= 0 else {
                let code = errno
                if code == ENOENT { throw .missing }
                if code == ELOOP || code == ENOTDIR { throw .link(component: components[...index].joined(separator: "/")) }
                throw .unreadable(errno: code)
            }
            close(fd)
            fd = next
        }
        return try read(fd, limit: limit)
    }

    /// A file the kernel generates (`/proc`, `/sys`), read to its end. Such a file says
    /// it has 0 bytes and is produced a page at a time: Foundation's
    /// `String(contentsOfFile:)` and `Data(contentsOf:)` stop after its first page (about
    /// 4 KiB), which silently cut a long `/proc/self/mountinfo`, `/proc/net/tcp` or a
    /// process's `environ`. At most `limit` bytes are read.
    public static func readGenerated(_ path: String, limit: Int = 16 << 20) throws(Failure) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY)
        guard fd >= 0 else { throw errno == ENOENT ? .missing : .unreadable(errno: errno) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw .unreadable(errno: errno) }
        guard info.st_mode & S_IFMT == S_IFREG else { throw .notRegular }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16 << 10)
        while true {
            let count = chunk.withUnsafeMutableBytes { systemRead(fd, $0.baseAddress!, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw .unreadable(errno: errno)
            }
            if count == 0 { return bytes }
            guard bytes.count + count <= limit else { throw .tooLarge(size: Int64(bytes.count + count), limit: limit) }
            bytes.append(contentsOf: chunk[0..<count])
        }
    }

    /// `readGenerated` as UTF-8 text; nil when the file cannot be read.
    public static func generatedText(_ path: String, limit: Int = 16 << 20) -> String? {
        (try? readGenerated(path, limit: limit)).map { String(decoding: $0, as: UTF8.self) }
    }

    private static func read(_ fd: Int32, limit: Int) throws(Failure) -> [UInt8] {
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw .unreadable(errno: errno) }
        guard info.st_mode & S_IFMT == S_IFREG else { throw .notRegular }
        guard info.st_size >= 0, info.st_size <= Int64(limit) else { throw .tooLarge(size: Int64(info.st_size), limit: limit) }
        // A regular file never blocks; O_NONBLOCK is only there for the open.
        var bytes = [UInt8](repeating: 0, count: limit + 1)
        var filled = 0
        while filled <= limit {
            let count = bytes.withUnsafeMutableBytes { systemRead(fd, $0.baseAddress! + filled, limit + 1 - filled) }
            if count < 0 {
                if errno == EINTR { continue }
                throw .unreadable(errno: errno)
            }
            if count == 0 { break }
            filled += count
        }
        guard filled <= limit else { throw .tooLarge(size: Int64(filled), limit: limit) }
        return Array(bytes[0..<filled])
    }

    private static func systemRead(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int) -> Int {
        #if canImport(Glibc)
        Glibc.read(fd, buffer, count)
        #elseif canImport(Musl)
        Musl.read(fd, buffer, count)
        #else
        Darwin.read(fd, buffer, count)
        #endif
    }
}
