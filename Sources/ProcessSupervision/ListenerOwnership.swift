#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import PlaneCore

/// Who listens on a TCP port of this network namespace: whether the socket belongs to a
/// process of a given backend (the same cgroup as its main process). With host networking a
/// neighbour could bind a backend's assigned port before it and be routed its traffic; the
/// drone makes the route only when the listener is the backend's own.
///
/// Reads `/proc/net/tcp` and `tcp6` (LISTEN sockets on the port, by inode), then the
/// processes of the main process's cgroup (`/proc/<pid>/cgroup` equal to its) and their
/// open descriptors (`socket:[inode]`).
public enum ListenerOwnership {
    public enum Outcome: Sendable, Hashable {
        /// A process of the backend's cgroup holds a listening socket on the port.
        case owned
        /// Only processes outside the backend's cgroup listen on the port.
        case foreign
        /// Nothing listens on the port.
        case noListener
        /// The main process is not visible here (gone, or in a pid namespace this process
        /// does not see, e.g. a drone in a container): nothing can be told.
        case unknown
    }

    public static func check(port: UInt16, mainProcess: Int32, procRoot: String = "/proc") -> Outcome {
        guard let cgroup = read("\(procRoot)/\(mainProcess)/cgroup"), !cgroup.isEmpty else { return .unknown }
        let inodes = listeningInodes(port: port, procRoot: procRoot)
        guard !inodes.isEmpty else { return .noListener }
        for pid in processIDs(procRoot: procRoot) where read("\(procRoot)/\(pid)/cgroup") == cgroup {
            if holdsAny(inodes, pid: pid, procRoot: procRoot) { return .owned }
        }
        return .foreign
    }

    /// Inodes of TCP sockets in state LISTEN (0A) on `port`, IPv4 and IPv6.
    public static func listeningInodes(port: UInt16, procRoot: String = "/proc") -> Set<UInt64> {
        var inodes: Set<UInt64> = []
        for table in ["tcp", "tcp6"] {
            guard let text = read("\(procRoot)/net/\(table)", limit: 64 << 20) else { continue }
            for line in text.split(separator: "\n").dropFirst() {
                if let inode = listeningInode(line: line, port: port) { inodes.insert(inode) }
            }
        }
        return inodes
    }

    /// The inode of one `/proc/net/tcp` line when it is a LISTEN socket on `port`.
    static func listeningInode(line: Substring, port: UInt16) -> UInt64? {
        let fields = line.split(separator: " ", omittingEmptySubsequences: true)
        guard fields.count > 9, fields[3] == "0A" else { return nil }
        guard let colon = fields[1].lastIndex(of: ":"), let local = UInt16(fields[1][fields[1].index(after: colon)...], radix: 16), local == port else { return nil }
        guard let inode = UInt64(fields[9]), inode != 0 else { return nil }
        return inode
    }

    static func processIDs(procRoot: String) -> [Int32] {
        guard let directory = opendir(procRoot) else { return [] }
        defer { closedir(directory) }
        var pids: [Int32] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if let pid = Int32(name), pid > 0 { pids.append(pid) }
        }
        return pids
    }

    static func holdsAny(_ inodes: Set<UInt64>, pid: Int32, procRoot: String) -> Bool {
        let fdDirectory = "\(procRoot)/\(pid)/fd"
        guard let directory = opendir(fdDirectory) else { return false }
        defer { closedir(directory) }
        var target = [CChar](repeating: 0, count: 64)
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            guard Int(name) != nil else { continue }
            let count = readlink("\(fdDirectory)/\(name)", &target, target.count - 1)
            guard count > 0 else { continue }
            let link = String(decoding: target.prefix(count).map { UInt8(bitPattern: $0) }, as: UTF8.self)
            // socket:[12345]
            guard link.hasPrefix("socket:["), link.hasSuffix("]"), let inode = UInt64(link.dropFirst(8).dropLast()) else { continue }
            if inodes.contains(inode) { return true }
        }
        return false
    }

    /// A small file of /proc, whole; nil when it cannot be read or has more than `limit` bytes.
    static func read(_ path: String, limit: Int = 1 << 16) -> String? {
        BoundedFile.generatedText(path, limit: limit)
    }
}
