import CTestServerSupport
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// What the OCI runtime's security tests ask a backend: which privileged operations its
/// sandbox refuses, its capabilities, and what its pids and memory limits do.
enum SandboxProbes {
    /// `PLANE_PROBE=sandbox`: run before any thread exists (unshare refuses threaded
    /// callers), print the results as JSON and exit.
    static func runSandboxProbe() -> Never {
        var results: [String: String] = [
            "unshare": errnoName(plane_probe_unshare()),
            "keyctl": errnoName(plane_probe_keyctl()),
            "mount": errnoName(plane_probe_mount()),
        ]
        if let status = generatedFile("/proc/self/status") {
            for line in status.split(separator: "\n") {
                let parts = line.split(separator: ":", maxSplits: 1)
                guard parts.count == 2 else { continue }
                let key = String(parts[0])
                if ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp"].contains(key) {
                    results[key] = String(parts[1].drop { $0 == " " || $0 == "\t" })
                }
            }
        }
        print(HTTPHandler.json(results))
        exit(0)
    }

    /// `PLANE_PROBE=limits`: print this process's rlimits (`/proc/self/limits`) and exit.
    static func runLimitsProbe() -> Never {
        print(generatedFile("/proc/self/limits") ?? "no /proc/self/limits")
        exit(0)
    }

    static func errnoName(_ code: Int32) -> String {
        switch code {
        case 0: "ok"
        case EPERM: "EPERM"
        case EACCES: "EACCES"
        case EINVAL: "EINVAL"
        case ENOSYS: "ENOSYS"
        case ENOENT: "ENOENT"
        case ECONNREFUSED: "ECONNREFUSED"
        case ENETUNREACH: "ENETUNREACH"
        case EHOSTUNREACH: "EHOSTUNREACH"
        case ETIMEDOUT: "ETIMEDOUT"
        case EROFS: "EROFS"
        case EDQUOT: "EDQUOT"
        case ENOSPC: "ENOSPC"
        default: "errno \(code)"
        }
    }

    /// Whether this backend can open a TCP connection to `host:port` (IPv4) within two
    /// seconds: `connected`, or the error (`ECONNREFUSED`, `ENETUNREACH`, `ETIMEDOUT`).
    /// What the OCI runtime's network tests ask a backend in its own namespace.
    static func connect(host: String, port: Int) -> String {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(truncatingIfNeeded: port).bigEndian)
        guard (0...65535).contains(port), inet_pton(AF_INET, host, &address.sin_addr) == 1 else { return "error: bad address" }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return "error: \(errnoName(errno))" }
        defer { close(fd) }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if result == 0 { return "connected" }
        guard errno == EINPROGRESS else { return "error: \(errnoName(errno))" }
        var descriptor = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        guard poll(&descriptor, 1, 2000) == 1 else { return "error: ETIMEDOUT" }
        var failure: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &failure, &length)
        return failure == 0 ? "connected" : "error: \(errnoName(failure))"
    }

    /// Creates (or truncates) the file at `path` and writes a byte: `ok` or `error: <errno>`.
    static func write(path: String) -> String {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o644)
        guard fd >= 0 else { return "error: \(errnoName(errno))" }
        defer { close(fd) }
        return Glibc.write(fd, "x", 1) == 1 ? "ok" : "error: \(errnoName(errno))"
    }

    /// Writes `megabytes` MiB to `path` (replacing it) and syncs it: `wrote {n}`, or the error
    /// and how many MiB went in before it (`error: EDQUOT after 7`).
    static func fill(path: String, megabytes: Int) -> String {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o644)
        guard fd >= 0 else { return "error: \(errnoName(errno))" }
        defer { close(fd) }
        let chunk = [UInt8](repeating: 0x5A, count: 1 << 20)
        for written in 0..<max(0, min(megabytes, 4096)) {
            var offset = 0
            while offset < chunk.count {
                let count = chunk.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, chunk.count - offset) }
                guard count > 0 else { return "error: \(errnoName(errno)) after \(written)" }
                offset += count
            }
        }
        guard fsync(fd) == 0 else { return "error: \(errnoName(errno)) at sync" }
        return "wrote \(megabytes)"
    }

    /// A file the kernel generates (`/proc`), read to its end (at most 1 MiB): Foundation's
    /// `String(contentsOfFile:)` stops after the first page of such a file, so a long
    /// mountinfo was cut.
    static func generatedFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16_384)
        while bytes.count < 1 << 20 {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { return count == 0 ? String(decoding: bytes, as: UTF8.self) : nil }
            bytes += chunk[0..<count]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The first 64 KiB of the file at `path`, or `error: <errno>`.
    static func readFile(path: String) -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { return "error: \(errnoName(errno))" }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 65_536)
        let count = bytes.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        return count >= 0 ? String(decoding: bytes.prefix(count), as: UTF8.self) : "error: \(errnoName(errno))"
    }

    /// The mount options of the mount at `target` as /proc/self/mountinfo shows them (its
    /// per-mount options, then the superblock's), or `error: not mounted`.
    static func mountOptions(of target: String) -> String {
        guard let text = generatedFile("/proc/self/mountinfo") else { return "error: no mountinfo" }
        var found: String?
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count > 6, fields[4] == target[...] else { continue }
            let superOptions = fields.last.map(String.init) ?? ""
            found = "\(fields[5]) \(superOptions)"
        }
        return found ?? "error: not mounted"
    }

    /// Runs this executable again with `PLANE_PROBE=sandbox` and returns what it printed.
    static func sandbox() -> String {
        var output: [Int32] = [0, 0]
        guard pipe(&output) == 0 else { return "{\"error\":\"pipe\"}" }
        guard let pid = spawnSelf(probe: "sandbox", standardOutput: output[1]) else {
            close(output[0]); close(output[1])
            return "{\"error\":\"spawn \(errno)\"}"
        }
        close(output[1])
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(output[0], $0.baseAddress, $0.count) }
            if count > 0 { bytes += chunk[0..<count] } else if count < 0, errno == EINTR { continue } else { break }
        }
        close(output[0])
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Starts up to `count` sleeping children (each a process against the pids limit) and
    /// reports how many started and the first error; then ends them all.
    static func spawnChildren(_ count: Int) -> String {
        var children: [pid_t] = []
        var failure = ""
        for _ in 0..<count {
            guard let pid = spawnSelf(probe: "sleep", standardOutput: nil) else {
                failure = errno == EAGAIN ? "EAGAIN" : errnoName(errno)
                break
            }
            children.append(pid)
        }
        for pid in children { kill(pid, SIGKILL) }
        for pid in children {
            var status: Int32 = 0
            waitpid(pid, &status, 0)
        }
        return HTTPHandler.json(["started": String(children.count), "error": failure])
    }

    /// Allocates and touches `megabytes` MiB (a backend over its memory limit is OOM-killed
    /// before it answers).
    static func allocate(_ megabytes: Int) -> String {
        var blocks: [UnsafeMutableRawPointer] = []
        for _ in 0..<megabytes {
            guard let block = malloc(1 << 20) else { return "malloc failed after \(blocks.count) MiB" }
            memset(block, 0xA5, 1 << 20)
            blocks.append(block)
        }
        let text = "allocated \(blocks.count) MiB"
        for block in blocks { free(block) }
        return text
    }

    /// `PLANE_PROBE=sleep`: a child that waits to be killed.
    static func runSleepProbe() -> Never {
        sleep(300)
        exit(0)
    }

    private static func spawnSelf(probe: String, standardOutput: Int32?) -> pid_t? {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if let standardOutput { posix_spawn_file_actions_adddup2(&actions, standardOutput, 1) }
        let executable = "/proc/self/exe"
        let arguments = [strdup("plane-test-server"), nil]
        let environment = [strdup("PLANE_PROBE=\(probe)"), nil]
        defer { free(arguments[0]); free(environment[0]) }
        var pid = pid_t()
        let result = arguments.withUnsafeBufferPointer { argv in
            environment.withUnsafeBufferPointer { env in posix_spawn(&pid, executable, &actions, nil, argv.baseAddress!, env.baseAddress!) }
        }
        guard result == 0 else {
            errno = result
            return nil
        }
        return pid
    }
}
