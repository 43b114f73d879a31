import CLinux
import ContainerRuntime
import Foundation

/// Starts programs with `posix_spawn`, giving the child exactly the descriptors it is meant
/// to have (0, 1, 2 and any listed; everything else closed), optionally in a new session.
/// Used by the OCI runtime for the runtime binary's commands and its shims, and by the
/// process runtime plugin for its shims and backends.
public enum ProcessSpawner {
    /// The output of a program run to completion.
    public struct Completion: Sendable {
        /// The raw wait status.
        public var status: Int32
        public var standardOutput: String
        public var standardError: String

        public var succeeded: Bool { plane_wifexited(status) != 0 && plane_wexitstatus(status) == 0 }

        /// "exit status 1" or "signal 9".
        public var statusDescription: String { ProcessSpawner.describe(status: status) }
    }

    /// Spawns `executable` with `descriptors` (child descriptor → descriptor of this process);
    /// unlisted standard descriptors are /dev/null. `environment`: the child's whole
    /// environment (nil: this process's). Returns the child's pid.
    public static func spawn(_ executable: String, _ arguments: [String], descriptors: [Int32: Int32] = [:],
                             newSession: Bool = false, environment: [String: String]? = nil) throws(RuntimeError) -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }

        for target in Int32(0)...2 where descriptors[target] == nil {
            posix_spawn_file_actions_addopen(&actions, target, "/dev/null", target == 0 ? O_RDONLY : O_WRONLY, 0)
        }
        for (target, source) in descriptors.sorted(by: { $0.key < $1.key }) {
            posix_spawn_file_actions_adddup2(&actions, source, target)
        }
        let highest = max(2, descriptors.keys.max() ?? 2)
        plane_spawn_add_close_from(&actions, highest + 1)

        // Signals: default dispositions and nothing blocked, whatever this process changed.
        var defaults = sigset_t()
        sigfillset(&defaults)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        var flags = Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK)
        if newSession { flags |= PLANE_POSIX_SPAWN_SETSID }
        posix_spawnattr_setflags(&attributes, flags)

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        let envp: [UnsafeMutablePointer<CChar>?]? = environment.map { $0.sorted { $0.key < $1.key }.map { strdup("\($0.key)=\($0.value)") } + [nil] }
        defer { for pointer in envp ?? [] { free(pointer) } }
        var pid = pid_t()
        let result = argv.withUnsafeBufferPointer { arguments in
            if let envp { return envp.withUnsafeBufferPointer { posix_spawn(&pid, executable, &actions, &attributes, arguments.baseAddress!, $0.baseAddress!) } }
            return posix_spawn(&pid, executable, &actions, &attributes, arguments.baseAddress!, environ)
        }
        guard result == 0 else {
            throw RuntimeError(.unavailable, "Cannot start \(executable): \(String(cString: strerror(result))).")
        }
        return pid
    }

    /// Waits for `pid` to end and returns its raw wait status (retrying on EINTR); nil when
    /// it is not a child of this process.
    public static func wait(for pid: pid_t) -> Int32? {
        var status: Int32 = 0
        while true {
            let result = waitpid(pid, &status, 0)
            if result == pid { return status }
            if result == -1, errno == EINTR { continue }
            return nil
        }
    }

    /// Reaps every child that has ended, without waiting (a subreaper's leftovers).
    public static func reapEndedChildren() {
        var ignored: Int32 = 0
        while waitpid(-1, &ignored, WNOHANG) > 0 {}
    }

    /// Runs a program to completion off the cooperative pool and returns its output.
    /// `input` (at most a pipe's capacity, 64 KiB) is its standard input.
    public static func run(_ executable: String, _ arguments: [String], input: String? = nil) async throws(RuntimeError) -> Completion {
        var output: [Int32] = [0, 0]
        var errors: [Int32] = [0, 0]
        var standardInput: [Int32] = [-1, -1]
        guard plane_pipe_cloexec(&output) == 0 else { throw RuntimeError(.internal, "pipe2 failed: \(String(cString: strerror(errno))).") }
        guard plane_pipe_cloexec(&errors) == 0 else {
            close(output[0]); close(output[1])
            throw RuntimeError(.internal, "pipe2 failed: \(String(cString: strerror(errno))).")
        }
        if let input {
            // Written whole before the child starts (it fits the pipe), so a child that
            // ends without reading cannot make the write fail.
            guard input.utf8.count <= 65_536, plane_pipe_cloexec(&standardInput) == 0 else {
                for fd in output + errors { close(fd) }
                throw RuntimeError(.internal, "Cannot pass \(input.utf8.count) bytes of input to \(executable).")
            }
            let bytes = Array(input.utf8)
            var written = 0
            while written < bytes.count {
                let count = bytes[written...].withUnsafeBytes { write(standardInput[1], $0.baseAddress, $0.count) }
                if count < 0 { if errno == EINTR { continue } else { break } }
                written += count
            }
            close(standardInput[1])
            standardInput[1] = -1
        }
        let pid: pid_t
        do {
            var descriptors: [Int32: Int32] = [1: output[1], 2: errors[1]]
            if input != nil { descriptors[0] = standardInput[0] }
            pid = try spawn(executable, arguments, descriptors: descriptors)
        } catch {
            for fd in output + errors + standardInput where fd >= 0 { close(fd) }
            throw error
        }
        close(output[1])
        close(errors[1])
        if standardInput[0] >= 0 { close(standardInput[0]) }
        let (outputFD, errorFD) = (output[0], errors[0])
        return await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                let (standardOutput, standardError) = readBoth(outputFD, errorFD)
                close(outputFD)
                close(errorFD)
                let status = wait(for: pid) ?? -1
                continuation.resume(returning: Completion(status: status, standardOutput: standardOutput, standardError: standardError))
            }
        }
    }

    /// Reads two descriptors to their ends together (a child filling one pipe while the
    /// other is read would otherwise block both).
    static func readBoth(_ first: Int32, _ second: Int32) -> (String, String) {
        var buffers: [[UInt8]] = [[], []]
        var descriptors = [pollfd(fd: first, events: Int16(POLLIN), revents: 0), pollfd(fd: second, events: Int16(POLLIN), revents: 0)]
        var chunk = [UInt8](repeating: 0, count: 16_384)
        while descriptors.contains(where: { $0.fd >= 0 }) {
            let ready = poll(&descriptors, nfds_t(descriptors.count), -1)
            if ready < 0 { if errno == EINTR { continue } else { break } }
            for index in descriptors.indices where descriptors[index].fd >= 0 && descriptors[index].revents != 0 {
                let count = chunk.withUnsafeMutableBytes { read(descriptors[index].fd, $0.baseAddress, $0.count) }
                if count > 0 {
                    buffers[index].append(contentsOf: chunk[0..<count])
                } else if count == 0 || errno != EINTR {
                    descriptors[index].fd = -1
                }
            }
        }
        return (String(decoding: buffers[0], as: UTF8.self), String(decoding: buffers[1], as: UTF8.self))
    }

    /// "exit status N" or "signal N" for a raw wait status.
    public static func describe(status: Int32) -> String {
        if plane_wifsignaled(status) != 0 { return "signal \(plane_wtermsig(status))" }
        return "exit status \(plane_wexitstatus(status))"
    }
}
