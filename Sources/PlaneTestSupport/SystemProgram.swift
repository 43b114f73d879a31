import CLinux
import Foundation
import PlaneCore
import ProcessSupervision
import Synchronization

/// A program the tests need from the system, with the Debian package that provides it.
public struct SystemProgram: Sendable {
    public let name: String
    public let debianPackage: String

    public init(_ name: String, debianPackage: String) {
        self.name = name
        self.debianPackage = debianPackage
    }

    public static let natsServer = SystemProgram("nats-server", debianPackage: "nats-server")
    public static let openssl = SystemProgram("openssl", debianPackage: "openssl")
    public static let dig = SystemProgram("dig", debianPackage: "dnsutils")

    /// The program's absolute path, or an error that says how to install it.
    public func path() throws -> String {
        if name.contains("/") {
            if FileManager.default.isExecutableFile(atPath: name) { return name }
            throw TestSupportError("'\(name)' is not an executable file")
        }
        let searchPath = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        for dir in searchPath.split(separator: ":") {
            let candidate = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        throw TestSupportError("'\(name)' is not installed; install it with: apt-get install -y \(debianPackage) (or run scripts/bootstrap.sh)")
    }

    /// Runs the program to completion; throws with its output when it fails. Blocks the
    /// calling thread, so async code uses the async overload (see below).
    @available(*, noasync, message: "blocks a thread of the cooperative pool; use the async overload")
    @discardableResult
    public func run(_ arguments: [String], in directory: String? = nil) throws -> String {
        let (status, text) = try Self.run(executable: try path(), arguments, in: directory)
        guard status == 0 else {
            throw TestSupportError("\(name) \(arguments.joined(separator: " ")) failed with status \(status): \(text)")
        }
        return text
    }

    /// Runs any executable to completion: its exit status and its output (stdout and
    /// stderr together). Blocks the calling thread, like `run(_:in:)`.
    @available(*, noasync, message: "blocks a thread of the cooperative pool; use the async overload")
    public static func run(executable: String, _ arguments: [String], in directory: String? = nil,
                           environment: [String: String] = [:]) throws -> (status: Int32, output: String) {
        // posix_spawn (ProcessSpawner), not Foundation's Process: its run() on Linux reads
        // /proc/self/fd with a dirent over-read that crashed the test process now and then
        // (SIGSEGV in memcpy; swift-corelibs-foundation PR 5472).
        var pipe: [Int32] = [0, 0]
        guard plane_pipe_cloexec(&pipe) == 0 else { throw TestSupportError("pipe2 failed: \(String(cString: strerror(errno)))") }
        var program = executable
        var argumentList = arguments
        if let directory {
            program = "/bin/sh"
            argumentList = ["-c", #"cd "$0" && exec "$@""#, directory, executable] + arguments
        }
        let pid: pid_t
        do {
            pid = try ProcessSpawner.spawn(program, argumentList, descriptors: [1: pipe[1], 2: pipe[1]],
                                           environment: environment.isEmpty ? nil : ProcessInfo.processInfo.environment.merging(environment) { $1 })
        } catch {
            close(pipe[0])
            close(pipe[1])
            throw TestSupportError("cannot start \(executable): \(error)")
        }
        close(pipe[1])
        var output: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(pipe[0], $0.baseAddress, $0.count) }
            if count > 0 { output += buffer[0..<count]; continue }
            if count < 0, errno == EINTR { continue }
            break
        }
        close(pipe[0])
        let status = ProcessSpawner.wait(for: pid) ?? -1
        // As Foundation reports it: the exit code, or the signal that ended the program.
        let reported = plane_wifexited(status) != 0 ? plane_wexitstatus(status) : (plane_wifsignaled(status) != 0 ? plane_wtermsig(status) : status)
        return (reported, String(decoding: output, as: UTF8.self))
    }
}

extension SystemProgram {
    /// `run(_:in:)` for async code: the program runs and is waited for on a thread of its
    /// own. Waiting on a thread of Swift's cooperative pool (one per core; two here) stalls
    /// every task of the test process meanwhile: a test waiting for `dig` would hold up
    /// another test's NATS reply until that one timed out, and two tests waiting for curl
    /// on the controller of their own process stalled the whole run for curl's 30 s. The
    /// blocking overloads are therefore `noasync`.
    @discardableResult
    public func run(_ arguments: [String], in directory: String? = nil) async throws -> String {
        try await Self.offThePool { try self.run(arguments, in: directory) }
    }

    /// `run(executable:_:in:environment:)` for async code, on a thread of its own.
    public static func run(executable: String, _ arguments: [String], in directory: String? = nil,
                           environment: [String: String] = [:]) async throws -> (status: Int32, output: String) {
        try await offThePool { try run(executable: executable, arguments, in: directory, environment: environment) }
    }

    /// Runs blocking work on a new thread and waits for it without blocking the caller's.
    public static func offThePool<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread { continuation.resume(with: Result { try work() }) }
        }
    }

    /// `offThePool` that gives up after `timeout` (nil then): for work that must not block,
    /// so that a test of it fails instead of hanging. The thread of work that does block is
    /// left behind.
    public static func offPool<T: Sendable>(timeout: Duration, _ work: @escaping @Sendable () -> T) async throws -> T? {
        await withCheckedContinuation { (continuation: CheckedContinuation<T?, Never>) in
            let resumed = Mutex(false)
            let resume: @Sendable (T?) -> Void = { value in
                if resumed.withLock({ done in defer { done = true }; return !done }) { continuation.resume(returning: value) }
            }
            Thread.detachNewThread { resume(work()) }
            Thread.detachNewThread {
                Thread.sleep(forTimeInterval: Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18)
                resume(nil)
            }
        }
    }
}

public struct TestSupportError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Loopback ports and temporary directories for tests.
public enum TestEnvironment {
    /// Ports `freePort` gave out in this process. Suites run in parallel in one test
    /// process; a port given to one test but not bound yet (a backend still starting) looks
    /// free to another, so no port is given out twice while others remain.
    private static let handedOut = Mutex<Set<Int>>([])

    /// A TCP port on 127.0.0.1 that was free a moment ago and that this process has not
    /// given out before (unless all 10,000 were).
    public static func freePort() throws -> Int {
        // Below Linux's ephemeral range (32768-60999), so the outgoing connections of tests
        // running in parallel cannot take the port between this check and its use.
        var generator = SystemRandomNumberGenerator()
        for attempt in 0..<400 {
            let port = Int.random(in: 10_000...19_999, using: &generator)
            let fresh = handedOut.withLock { $0.count >= 9_000 || attempt >= 300 || $0.insert(port).inserted }
            if fresh, canBind(port: port, address: "127.0.0.1"), canBind(port: port, address: "0.0.0.0") { return port }
        }
        throw TestSupportError("no free port found in 10000-19999")
    }

    static func canBind(port: Int, address text: String) -> Bool { TCPPortProbe.canBind(port: port, address: text) }

    /// A new empty directory below this test process's temporary root, which goes away
    /// with the process.
    public static func temporaryDirectory(_ prefix: String) throws -> String {
        let path = temporaryRoot + "/\(prefix)-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// `$TMPDIR/plane-tests-<pid>`: every temporary directory of this test process (image
    /// layouts, content stores, drone state: gigabytes over a full run). Removed when the
    /// process exits; the roots of test processes that were killed are removed by the next
    /// one.
    public static let temporaryRoot: String = {
        let base = NSTemporaryDirectory()
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: base)) ?? [] where entry.hasPrefix(rootPrefix) {
            guard let pid = pid_t(entry.dropFirst(rootPrefix.count)), pid != getpid(), kill(pid, 0) != 0, errno == ESRCH else { continue }
            removeTree(base + entry)
        }
        let root = base + rootPrefix + "\(getpid())"
        try? FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        atexit { TestEnvironment.removeTree(TestEnvironment.temporaryRoot) }
        return root
    }()

    private static let rootPrefix = "plane-tests-"

    /// `rm -rf --one-file-system`: what a test left mounted below the tree (an overlay root
    /// it did not unmount) is skipped rather than emptied. Spawned with posix_spawn, not
    /// Foundation's Process, as it also runs from an `atexit` handler.
    static func removeTree(_ path: String) {
        guard let pid = try? ProcessSpawner.spawn("/bin/rm", ["-rf", "--one-file-system", path]) else { return }
        _ = ProcessSpawner.wait(for: pid)
    }
}
