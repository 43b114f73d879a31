import CLinux
import ProcessSupervision
import Synchronization
import Foundation

/// Executables of this package, built next to the test bundle (`.build/<config>/`).
public enum TestExecutables {
    /// The absolute path of product `name`, or an error saying how to build it.
    public static func path(_ name: String) throws -> String {
        let buildDirectory = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        for candidate in [buildDirectory.appendingPathComponent(name).path, buildDirectory.deletingLastPathComponent().appendingPathComponent(name).path] {
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        throw TestSupportError("executable '\(name)' not found next to the tests in \(buildDirectory.path); run `swift build --product \(name)` (the test target should depend on it)")
    }
}

/// A child process the test started; ended by PID. Started with posix_spawn
/// (ProcessSpawner), not Foundation's Process, whose run() on Linux can crash the test
/// process (a dirent over-read of /proc/self/fd; see SystemProgram).
public final class ChildProcess: @unchecked Sendable {
    public let pid: Int32
    public let logPath: String
    /// The raw wait status once reaped.
    private let ended = Mutex<Int32?>(nil)

    /// Starts `executable` with `environment` added to the current one; output goes to a log file.
    public init(_ executable: String, arguments: [String] = [], environment: [String: String] = [:]) throws {
        logPath = NSTemporaryDirectory() + "plane-child-\(UUID().uuidString.prefix(8)).log"
        let log = open(logPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard log >= 0 else { throw TestSupportError("cannot create \(logPath): \(String(cString: strerror(errno)))") }
        defer { close(log) }
        // An executable of this package can be busy for a moment: the README's test runs
        // `make dev`, whose `swift build` may link `plane` again while other suites start it
        // (ETXTBSY). Such a start is tried again for up to 30 s.
        let busy = String(cString: strerror(ETXTBSY))
        var attempt = 0
        var started: Int32?
        while started == nil {
            do {
                // A session (so a process group) of its own, as Foundation's Process made one:
                // tests end a child with everything it started by signalling `-pid`.
                started = try ProcessSpawner.spawn(executable, arguments, descriptors: [1: log, 2: log], newSession: true,
                                                   environment: ProcessInfo.processInfo.environment.merging(environment) { $1 })
            } catch {
                attempt += 1
                guard error.message.contains(busy), attempt < 300 else { throw TestSupportError("cannot start \(executable): \(error)") }
                usleep(100_000)
            }
        }
        guard let started else { throw TestSupportError("cannot start \(executable)") }
        pid = started
    }

    /// Starts `executable` under a small watchdog shell that ends it when the test process
    /// ends, even if that process dies without cleaning up (a server shared by a whole test
    /// run has no end-of-run hook); `stop()` (SIGTERM) ends both.
    public static func watched(_ executable: String, arguments: [String], environment: [String: String] = [:]) throws -> ChildProcess {
        // SIGTERM first; SIGKILL after 2 s, since a child may have inherited SIGTERM blocked
        // from the thread of the test process that started it (seen with python3).
        let watchdog = """
            parent=$1; shift
            "$@" & child=$!
            end_child() {
              kill $child 2>/dev/null
              for _ in 1 2 3 4; do kill -0 $child 2>/dev/null || break; sleep 0.5; done
              kill -9 $child 2>/dev/null
              wait $child
            }
            trap 'end_child; exit 0' TERM INT
            while kill -0 "$parent" 2>/dev/null && kill -0 $child 2>/dev/null; do sleep 0.5; done
            end_child
            """
        return try ChildProcess("/bin/sh", arguments: ["-c", watchdog, "watchdog", String(getpid()), executable] + arguments, environment: environment)
    }

    /// Whether it still runs (reaps it once it has ended).
    public var isRunning: Bool {
        ended.withLock { status in
            guard status == nil else { return false }
            var raw: Int32 = 0
            let result = waitpid(pid, &raw, WNOHANG)
            if result == pid { status = raw; return false }
            // Not our child any more (reaped elsewhere): it has ended.
            if result == -1, errno == ECHILD { status = -1; return false }
            return true
        }
    }

    public var output: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    public func signal(_ signal: Int32) { if isRunning { kill(pid, signal) } }

    /// Waits for the process to end (up to `timeout`) and returns its exit status (the
    /// signal's number when a signal ended it, as Foundation reports it), or nil.
    public func waitForExit(timeout: Duration = .seconds(10)) async -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while isRunning, ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(10)) }
        if isRunning { return nil }
        return ended.withLock { $0 }.map { raw in
            plane_wifexited(raw) != 0 ? plane_wexitstatus(raw) : (plane_wifsignaled(raw) != 0 ? plane_wtermsig(raw) : raw)
        }
    }

    /// A test that throws before `stop()` still ends its process: the last reference kills it.
    deinit {
        if isRunning {
            kill(pid, SIGKILL)
            ended.withLock { status in
                if status == nil { status = ProcessSpawner.wait(for: pid) ?? -1 }
            }
        }
        try? FileManager.default.removeItem(atPath: logPath)
    }

    /// SIGTERM, then SIGKILL after `grace`; always reaps the process.
    public func stop(grace: Duration = .seconds(5)) async {
        signal(SIGTERM)
        if await waitForExit(timeout: grace) == nil {
            signal(SIGKILL)
            _ = await waitForExit(timeout: .seconds(10))
        }
        try? FileManager.default.removeItem(atPath: logPath)
    }
}
