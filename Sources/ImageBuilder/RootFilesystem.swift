import Foundation

/// The files of a minimal image: an executable, the shared libraries it links, and a few
/// files under `/etc`. Paths are absolute; parent directories are added automatically.
public struct RootFilesystem: Sendable {
    public enum Entry: Sendable, Equatable {
        case file(data: [UInt8], mode: UInt32)
        case directory(mode: UInt32)
        case symlink(String)
    }

    public private(set) var entries: [String: Entry] = ["/": .directory(mode: 0o755)]

    public init() {}

    public mutating func add(_ path: String, _ entry: Entry) {
        var parent = (path as NSString).deletingLastPathComponent
        var parents: [String] = []
        while parent != "/", !parent.isEmpty, entries[parent] == nil {
            parents.append(parent)
            parent = (parent as NSString).deletingLastPathComponent
        }
        for p in parents { entries[p] = .directory(mode: 0o755) }
        entries[path] = entry
    }

    /// Copies a host file's content (following symlinks) to `path` in the image.
    public mutating func copyHostFile(_ hostPath: String, to path: String? = nil, mode: UInt32? = nil) throws(ImageBuilderError) {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: hostPath))
        } catch {
            throw ImageBuilderError(.io, "Cannot read '\(hostPath)': \(error).")
        }
        let attributes = try? FileManager.default.attributesOfItem(atPath: (hostPath as NSString).resolvingSymlinksInPath)
        let hostMode = (attributes?[.posixPermissions] as? NSNumber)?.uint32Value ?? 0o755
        add(path ?? hostPath, .file(data: Array(data), mode: mode ?? hostMode))
    }

    /// The small `/etc` a process expects: users, groups, hosts, name service order; and `/tmp`.
    public mutating func addBaseFiles() {
        add("/etc/passwd", .file(data: Array("root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n".utf8), mode: 0o644))
        add("/etc/group", .file(data: Array("root:x:0:\nnogroup:x:65534:\n".utf8), mode: 0o644))
        add("/etc/hosts", .file(data: Array("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n".utf8), mode: 0o644))
        add("/etc/nsswitch.conf", .file(data: Array("passwd: files\ngroup: files\nhosts: files dns\n".utf8), mode: 0o644))
        add("/tmp", .directory(mode: 0o1777))
        add("/root", .directory(mode: 0o700))
    }

    /// The entries as an uncompressed tar layer, sorted by path (deterministic).
    public func tarLayer() throws(ImageBuilderError) -> [UInt8] {
        var tar = TarWriter()
        for (path, entry) in entries.sorted(by: { $0.key < $1.key }) where path != "/" {
            switch entry {
            case .file(let data, let mode): try tar.append(path: path, kind: .file(data), mode: mode)
            case .directory(let mode): try tar.append(path: path, kind: .directory, mode: mode)
            case .symlink(let target): try tar.append(path: path, kind: .symlink(target), mode: 0o777)
            }
        }
        return tar.finish()
    }
}
