import CLinux
import ContainerRuntime
import Foundation

/// Unpacks one layer's tar stream into a directory, never writing outside it: entries with
/// `..` components are refused, and so is any entry whose path goes through a symlink (a
/// symlink in a layer may point anywhere; it is created as it is, since the container
/// resolves it inside its own root, but the unpacker never follows one). Hardlinks must
/// point at a file of the same directory tree, again not through a symlink.
///
/// Whiteouts (`.wh.NAME`, and `.wh..wh..opq` for an opaque directory) become what overlayfs
/// reads in `.overlayLayer` mode (a 0/0 character device, the `trusted.overlay.opaque`
/// attribute); in `.merged` mode, where layers are applied one over another into a single
/// tree, they delete what lower layers put there.
struct LayerUnpacker {
    enum Mode: Sendable { case overlayLayer, merged }

    static let whiteoutPrefix = ".wh."
    static let opaqueMarker = ".wh..wh..opq"

    let root: String
    let mode: Mode
    /// Layer description for errors ("layer sha256:… of image …").
    let what: String
    private let isRoot = geteuid() == 0
    /// Paths this layer created (relative), so that `.merged` whiteouts spare them.
    private var created: Set<String> = []
    private var directoryTimes: [(String, Int64)] = []

    init(root: String, mode: Mode, what: String) {
        self.root = root
        self.mode = mode
        self.what = what
    }

    private func refused(_ entry: String, _ why: String) -> RuntimeError {
        RuntimeError(.imageUnavailable, "\(what) was refused: entry '\(entry)' \(why).")
    }

    private func failed(_ operation: String, _ path: String) -> RuntimeError {
        RuntimeError(.internal, "Unpacking \(what) failed: \(operation) \(path): \(String(cString: strerror(errno))).")
    }

    /// Reads every entry of `reader` into `root` (which must exist).
    mutating func unpack<Source: ByteSource>(_ reader: inout TarReader<Source>) throws(RuntimeError) {
        var buffer = [UInt8](repeating: 0, count: 128 * 1024)
        while let entry = try reader.next() {
            try apply(entry, reader: &reader, buffer: &buffer)
        }
        // Directory times last: creating their children changed them.
        for (path, time) in directoryTimes.reversed() { setTime(path, time) }
    }

    /// The entry's path as components below the root, or an error for one that escapes.
    static func components(of path: String) -> [String]? {
        var parts: [String] = []
        for part in path.split(separator: "/", omittingEmptySubsequences: true) {
            if part == "." { continue }
            if part == ".." { return nil }
            parts.append(String(part))
        }
        return parts
    }

    /// Makes sure the parents of `parts` are real directories below the root (creating
    /// missing ones), never symlinks; returns the absolute path of `parts`.
    private mutating func prepareParents(_ parts: [String], entry: String) throws(RuntimeError) -> String {
        var path = root
        for part in parts.dropLast() {
            path += "/" + part
            var info = stat()
            if lstat(path, &info) == 0 {
                if info.st_mode & S_IFMT == S_IFLNK { throw refused(entry, "goes through the symlink '\(path.dropFirst(root.count + 1))'") }
                if info.st_mode & S_IFMT != S_IFDIR { throw refused(entry, "goes through '\(path.dropFirst(root.count + 1))', which is not a directory") }
            } else {
                guard mkdir(path, 0o755) == 0 else { throw failed("mkdir", path) }
            }
        }
        return parts.isEmpty ? root : path + "/" + parts.last!
    }

    private mutating func apply<Source: ByteSource>(_ entry: TarEntry, reader: inout TarReader<Source>, buffer: inout [UInt8]) throws(RuntimeError) {
        guard let parts = Self.components(of: entry.path) else { throw refused(entry.path, "has a '..' component (path traversal)") }
        guard parts.count <= OCIImageLimits.maxPathDepth else {
            throw refused(String(entry.path.prefix(200)) + "…", "is nested more than \(OCIImageLimits.maxPathDepth) directories deep")
        }
        guard let name = parts.last else {
            // The root itself ("./"): only its metadata.
            if entry.kind == .directory { applyMetadata(root, entry, isDirectory: true) }
            return
        }
        let relative = parts.joined(separator: "/")
        let path = try prepareParents(parts, entry: entry.path)
        let parent = String(path.dropLast(name.count + 1))

        if name == Self.opaqueMarker {
            switch mode {
            case .overlayLayer:
                guard lsetxattr(parent, "trusted.overlay.opaque", "y", 1, 0) == 0 else { throw failed("setting trusted.overlay.opaque on", parent) }
            case .merged:
                let prefix = parts.dropLast().joined(separator: "/")
                for child in (try? FileManager.default.contentsOfDirectory(atPath: parent)) ?? [] {
                    let childRelative = prefix.isEmpty ? child : prefix + "/" + child
                    if !created.contains(childRelative) { try removeTree(parent + "/" + child) }
                }
            }
            return
        }
        if name.hasPrefix(Self.whiteoutPrefix) {
            let hidden = String(name.dropFirst(Self.whiteoutPrefix.count))
            guard !hidden.isEmpty, hidden != ".", hidden != ".." else { throw refused(entry.path, "is a whiteout of nothing") }
            let target = parent + "/" + hidden
            switch mode {
            case .overlayLayer:
                try removeExisting(target)
                guard mknod(target, S_IFCHR, 0) == 0 else { throw failed("mknod (whiteout)", target) }
            case .merged:
                try removeTree(target)
            }
            return
        }

        created.insert(relative)
        switch entry.kind {
        case .directory:
            var info = stat()
            if lstat(path, &info) == 0, info.st_mode & S_IFMT != S_IFDIR { try removeTree(path) }
            if lstat(path, &info) != 0 {
                guard mkdir(path, 0o700) == 0 else { throw failed("mkdir", path) }
            }
            applyMetadata(path, entry, isDirectory: true)
            directoryTimes.append((path, entry.modificationTime))
        case .file:
            try removeExisting(path)
            let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw failed("creating", path) }
            defer { close(fd) }
            while true {
                let count = try buffer.withBytes { raw throws(RuntimeError) in try reader.readData(into: raw) }
                if count == 0 { break }
                var written = 0
                while written < count {
                    let step = buffer.withUnsafeBytes { raw in write(fd, raw.baseAddress! + written, count - written) }
                    if step < 0 {
                        if errno == EINTR { continue }
                        throw failed("writing", path)
                    }
                    written += step
                }
            }
            if isRoot { _ = fchown(fd, uid_t(entry.uid), gid_t(entry.gid)) }
            _ = fchmod(fd, mode_t(entry.mode) & Self.keptModeBits)
            setAttributes(path, entry)
            setTime(path, entry.modificationTime)
        case .symlink:
            try removeExisting(path)
            guard symlink(entry.linkTarget, path) == 0 else { throw failed("symlink", path) }
            if isRoot { _ = lchown(path, uid_t(entry.uid), gid_t(entry.gid)) }
            setAttributes(path, entry)
            setTime(path, entry.modificationTime)
        case .hardlink:
            guard let targetParts = Self.components(of: entry.linkTarget), !targetParts.isEmpty else {
                throw refused(entry.path, "is a hardlink to '\(entry.linkTarget)', outside the layer")
            }
            var targetPath = root
            for (index, part) in targetParts.enumerated() {
                targetPath += "/" + part
                var info = stat()
                guard lstat(targetPath, &info) == 0 else { throw refused(entry.path, "is a hardlink to '\(entry.linkTarget)', which this layer does not hold") }
                if index < targetParts.count - 1, info.st_mode & S_IFMT != S_IFDIR {
                    throw refused(entry.path, "is a hardlink to '\(entry.linkTarget)' through a symlink or file")
                }
                if index == targetParts.count - 1, info.st_mode & S_IFMT == S_IFDIR {
                    throw refused(entry.path, "is a hardlink to the directory '\(entry.linkTarget)'")
                }
            }
            if targetPath == path { return }
            try removeExisting(path)
            guard link(targetPath, path) == 0 else { throw failed("link", path) }
        case .characterDevice, .blockDevice:
            // An image's device nodes are left out: a backend's /dev is the runtime's, and a
            // node elsewhere could open a host device. (Whiteouts are handled above.)
            try removeExisting(path)
        case .fifo:
            try removeExisting(path)
            guard mknod(path, S_IFIFO | (mode_t(entry.mode) & Self.keptModeBits), 0) == 0 else { throw failed("mknod", path) }
            applyMetadata(path, entry, isDirectory: false)
        }
    }

    /// Permission bits kept from an image: everything but setuid and setgid, which would
    /// grant nothing anyway (backends run with no_new_privs) and are not carried into the
    /// drone's disk.
    static let keptModeBits: mode_t = 0o1777

    /// glibc's `makedev` (a macro Swift does not import).
    static func deviceNumber(major: UInt32, minor: UInt32) -> dev_t {
        let major = UInt64(major), minor = UInt64(minor)
        return dev_t((minor & 0xff) | ((major & 0xfff) << 8) | ((minor & ~0xff) << 12) | ((major & ~0xfff) << 32))
    }

    private func applyMetadata(_ path: String, _ entry: TarEntry, isDirectory: Bool) {
        if isRoot { _ = lchown(path, uid_t(entry.uid), gid_t(entry.gid)) }
        _ = chmod(path, mode_t(entry.mode) & Self.keptModeBits)
        setAttributes(path, entry)
        if !isDirectory { setTime(path, entry.modificationTime) }
    }

    private func setAttributes(_ path: String, _ entry: TarEntry) {
        // `trusted.*` attributes are the host's own business: overlayfs reads
        // `trusted.overlay.*` (opaque directories, redirects) from the layers it stacks, so
        // an image must not bring its own.
        for (name, value) in entry.extendedAttributes where !name.hasPrefix("trusted.") {
            // Attributes the host does not take (an unprivileged drone, a filesystem without
            // them) are left out, as container engines do.
            _ = value.withUnsafeBytes { lsetxattr(path, name, $0.baseAddress, $0.count, 0) }
        }
    }

    private func setTime(_ path: String, _ seconds: Int64) {
        var times = [timespec(tv_sec: Int(seconds), tv_nsec: 0), timespec(tv_sec: Int(seconds), tv_nsec: 0)]
        _ = utimensat(AT_FDCWD, path, &times, AT_SYMLINK_NOFOLLOW)
    }

    /// Removes what is at `path` unless it is a directory (a later entry replaces a file,
    /// link or device; a directory is replaced only by a non-directory, in `apply`).
    private func removeExisting(_ path: String) throws(RuntimeError) {
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        if info.st_mode & S_IFMT == S_IFDIR {
            try removeTree(path)
        } else if unlink(path) != 0 {
            throw failed("removing", path)
        }
    }

    private func removeTree(_ path: String) throws(RuntimeError) {
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        if info.st_mode & S_IFMT == S_IFDIR {
            do { try FileManager.default.removeItem(atPath: path) } catch { throw failed("removing", path) }
        } else if unlink(path) != 0 {
            throw failed("removing", path)
        }
    }
}
