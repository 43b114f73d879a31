import CLinux
import ContainerRuntime
import Foundation
import ProcessSupervision

/// A backend's writable root: an overlay of the image's shared, read-only unpacked layers
/// with an upper directory of its own (nothing is copied, ~ms to set up), or — where the
/// kernel or the filesystem refuses overlayfs — a private merged copy of the layers. Either
/// way an image's setuid and setgid bits grant nothing and its device nodes open nothing:
/// the overlay is mounted `nosuid,nodev`, and a copy leaves both out.
enum RootFilesystem {
    enum Kind: Sendable, Equatable { case overlay, copy }

    /// overlayfs takes its options in one page.
    static let maximumOptionsLength = 4_000

    /// Makes `directory.rootfs` from `layers` (unpacked layer directories, bottom first).
    /// With `writableLayerBytes`, the overlay's upper and work directories are a btrfs
    /// subvolume (`overlay/`) whose quota group is limited to that many bytes: a write
    /// beyond fails with EDQUOT. Such a root is always an overlay (a copy would not be
    /// limited).
    static func create(in directory: OCIBackendDirectory, layers: [String], allowOverlay: Bool = true,
                       writableLayerBytes: Int64? = nil) throws(RuntimeError) -> Kind {
        if let writableLayerBytes { try makeLimitedWritableLayer(directory, bytes: writableLayerBytes) }
        for path in [directory.rootfs, directory.overlayUpper, directory.overlayWork] {
            do {
                try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            } catch {
                throw RuntimeError(.internal, "Cannot create \(path) for the backend's root.", underlying: error)
            }
        }
        if allowOverlay, try mountOverlay(directory, layers: layers) { return .overlay }
        if writableLayerBytes != nil {
            throw RuntimeError(.unavailable, "The backend's root cannot be an overlay here, and [agent.oci] writable_layer_bytes limits only an overlay's writable layer; fix overlayfs on the state directory or remove the key.")
        }
        for layer in layers { try LayerMerger.merge(layer: layer, into: directory.rootfs) }
        return .copy
    }

    /// The backend's `overlay/` as a btrfs subvolume limited to `bytes`.
    static func makeLimitedWritableLayer(_ directory: OCIBackendDirectory, bytes: Int64) throws(RuntimeError) {
        do {
            try FileManager.default.createDirectory(atPath: directory.path, withIntermediateDirectories: true)
        } catch {
            throw RuntimeError(.internal, "Cannot create \(directory.path) for the backend's root.", underlying: error)
        }
        let subvolume = "\(directory.path)/overlay"
        guard FileManager.default.fileExists(atPath: subvolume) || plane_btrfs_create_subvolume(directory.path, "overlay") == 0 else {
            throw RuntimeError(.unavailable, "Cannot make \(subvolume) a btrfs subvolume: \(String(cString: strerror(errno))). [agent.oci] writable_layer_bytes needs state_dir on btrfs.")
        }
        guard plane_btrfs_limit_subvolume(subvolume, UInt64(max(0, bytes))) == 0 else {
            let reason = errno == ENOTCONN ? "quotas are not enabled on its filesystem (btrfs quota enable {mount point})" : String(cString: strerror(errno))
            throw RuntimeError(.unavailable, "Cannot limit \(subvolume) to \(bytes) bytes: \(reason).")
        }
    }

    /// Why `directory` cannot hold limited writable layers, or nil when it can: it must be
    /// on btrfs with quotas enabled. Tried for real: a subvolume is made, limited and removed.
    static func writableLayerLimitProblem(in directory: String) -> String? {
        switch plane_is_btrfs(directory) {
        case 1: break
        case 0: return "it is not on btrfs"
        default: return String(cString: strerror(errno))
        }
        let probe = "writable-layer-check-\(UInt32.random(in: 0...UInt32.max))"
        guard plane_btrfs_create_subvolume(directory, probe) == 0 else { return "cannot create a subvolume there: \(String(cString: strerror(errno)))" }
        defer { rmdir("\(directory)/\(probe)") }
        guard plane_btrfs_limit_subvolume("\(directory)/\(probe)", 1 << 20) == 0 else {
            return errno == ENOTCONN ? "btrfs quotas are not enabled (btrfs quota enable {mount point})" : "cannot limit a subvolume: \(String(cString: strerror(errno)))"
        }
        return nil
    }

    /// Mounts the overlay; false when overlayfs is not possible here (so a copy is made).
    static func mountOverlay(_ directory: OCIBackendDirectory, layers: [String]) throws(RuntimeError) -> Bool {
        guard !layers.isEmpty, layers.allSatisfy({ !$0.contains(":") && !$0.contains(",") }) else { return false }
        let lower = layers.reversed().joined(separator: ":")
        let options = "lowerdir=\(lower),upperdir=\(directory.overlayUpper),workdir=\(directory.overlayWork)"
        guard options.utf8.count <= maximumOptionsLength else { return false }
        if mount("overlay", directory.rootfs, "overlay", UInt(MS_NOSUID) | UInt(MS_NODEV), options) == 0 { return true }
        switch errno {
        // Not supported here (no overlayfs, upper on an overlay, no privilege): copy instead.
        case ENODEV, EINVAL, EPERM, EOPNOTSUPP, ENOTSUP: return false
        default:
            throw RuntimeError(.internal, "Cannot mount the overlay root at \(directory.rootfs): \(String(cString: strerror(errno))).")
        }
    }

    /// Unmounts the overlay (if mounted) and removes the backend's directory. Refuses to
    /// remove anything while the root is still a mount point.
    static func remove(_ directory: OCIBackendDirectory) throws(RuntimeError) {
        if isMountPoint(directory.rootfs) {
            if umount2(directory.rootfs, Int32(MNT_DETACH)) != 0, errno != EINVAL, errno != ENOENT {
                throw RuntimeError(.internal, "Cannot unmount the backend root \(directory.rootfs): \(String(cString: strerror(errno))).")
            }
            guard !isMountPoint(directory.rootfs) else {
                throw RuntimeError(.internal, "The backend root \(directory.rootfs) is still mounted; not removing it.")
            }
        }
        do {
            if FileManager.default.fileExists(atPath: directory.path) { try FileManager.default.removeItem(atPath: directory.path) }
        } catch {
            throw RuntimeError(.internal, "Cannot remove \(directory.path).", underlying: error)
        }
    }

    /// Whether `path` is on another device than its parent (a mount point).
    static func isMountPoint(_ path: String) -> Bool {
        var own = stat()
        var parent = stat()
        guard lstat(path, &own) == 0, lstat("\(path)/..", &parent) == 0 else { return false }
        return own.st_dev != parent.st_dev || own.st_ino == parent.st_ino
    }
}

/// Copies unpacked overlay-format layers (whiteouts as 0/0 character devices, opaque
/// directories marked with `trusted.overlay.opaque`) on top of each other into one tree:
/// what overlayfs shows, as real files. Never follows a symlink of the tree it writes. As
/// the overlay is mounted `nosuid,nodev`, the copy drops setuid and setgid bits and leaves
/// device nodes out (layers unpacked by this version have neither; older ones may).
enum LayerMerger {
    static let keptModeBits = LayerUnpacker.keptModeBits

    static func merge(layer: String, into root: String) throws(RuntimeError) {
        try mergeDirectory(source: layer, destination: root)
    }

    private static func mergeDirectory(source: String, destination: String) throws(RuntimeError) {
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: source) } catch {
            throw RuntimeError(.internal, "Cannot read the unpacked layer directory \(source).", underlying: error)
        }
        for name in names {
            let from = "\(source)/\(name)"
            let to = "\(destination)/\(name)"
            var info = stat()
            guard lstat(from, &info) == 0 else { throw failure("lstat", from) }
            let type = info.st_mode & S_IFMT
            if type == S_IFCHR, info.st_rdev == 0 {
                try removeTree(to)
                continue
            }
            if type == S_IFDIR {
                var existing = stat()
                let exists = lstat(to, &existing) == 0
                if exists, (existing.st_mode & S_IFMT) != S_IFDIR || isOpaque(from) { try removeTree(to) }
                if !exists || (existing.st_mode & S_IFMT) != S_IFDIR || isOpaque(from) {
                    guard mkdir(to, 0o700) == 0 else { throw failure("mkdir", to) }
                }
                try mergeDirectory(source: from, destination: to)
                try copyMetadata(info, to: to)
                continue
            }
            try removeTree(to)
            switch type {
            case S_IFREG:
                try copyFile(from, to: to, mode: info.st_mode & keptModeBits)
            case S_IFLNK:
                var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
                let length = readlink(from, &buffer, buffer.count - 1)
                guard length >= 0 else { throw failure("readlink", from) }
                buffer[length] = 0
                guard symlink(buffer, to) == 0 else { throw failure("symlink", to) }
            case S_IFCHR, S_IFBLK:
                continue
            default:
                guard mknod(to, info.st_mode & (S_IFMT | keptModeBits), info.st_rdev) == 0 else { throw failure("mknod", to) }
            }
            try copyMetadata(info, to: to)
        }
    }

    static func isOpaque(_ path: String) -> Bool {
        var value = [UInt8](repeating: 0, count: 2)
        return lgetxattr(path, "trusted.overlay.opaque", &value, value.count) == 1 && value[0] == UInt8(ascii: "y")
    }

    private static func copyFile(_ source: String, to destination: String, mode: mode_t) throws(RuntimeError) {
        let input = open(source, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard input >= 0 else { throw failure("open", source) }
        defer { close(input) }
        let output = open(destination, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode)
        guard output >= 0 else { throw failure("create", destination) }
        defer { close(output) }
        var buffer = [UInt8](repeating: 0, count: 131_072)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(input, $0.baseAddress, $0.count) }
            if count < 0, errno == EINTR { continue }
            guard count >= 0 else { throw failure("read", source) }
            if count == 0 { break }
            guard buffer.withUnsafeBytes({ FileDescriptorIO.writeAll(output, UnsafeRawBufferPointer(rebasing: $0[0..<count])) }) else {
                throw failure("write", destination)
            }
        }
    }

    private static func copyMetadata(_ info: stat, to path: String) throws(RuntimeError) {
        guard lchown(path, info.st_uid, info.st_gid) == 0 else { throw failure("lchown", path) }
        if info.st_mode & S_IFMT != S_IFLNK {
            guard chmod(path, info.st_mode & keptModeBits) == 0 else { throw failure("chmod", path) }
        }
        let times = [info.st_atim, info.st_mtim]
        _ = times.withUnsafeBufferPointer { utimensat(AT_FDCWD, path, $0.baseAddress, AT_SYMLINK_NOFOLLOW) }
    }

    private static func removeTree(_ path: String) throws(RuntimeError) {
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        do { try FileManager.default.removeItem(atPath: path) } catch {
            throw RuntimeError(.internal, "Cannot replace \(path) while merging layers.", underlying: error)
        }
    }

    private static func failure(_ operation: String, _ path: String) -> RuntimeError {
        RuntimeError(.internal, "Merging image layers: \(operation) \(path) failed: \(String(cString: strerror(errno))).")
    }
}
