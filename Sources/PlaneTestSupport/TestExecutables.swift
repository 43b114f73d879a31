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

/// A child process the test started; ended by PID.
public final class ChildProcess: @unchecked Sendable {
    public let process: Process
    public let logPath: String

    /// Starts `executable` with `environment` added to the current one; output goes to a log file.
    public init(_ executable: String, arguments: [String] = [], environment: [String: String] = [:]) throws {
        process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        logPath = NSTemporaryDirectory() + "plane-child-\(UUID().uuidString.prefix(8)).log"
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = FileHandle(forWritingAtPath: logPath)
        process.standardOutput = log
        process.standardError = log
        try process.run()
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

    public var pid: Int32 { process.processIdentifier }
    public var isRunning: Bool { process.isRunning }
    public var output: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    public func signal(_ signal: Int32) { if process.isRunning { kill(process.processIdentifier, signal) } }

    /// Waits for the process to end (up to `timeout`) and returns its exit status, or nil.
    public func waitForExit(timeout: Duration = .seconds(10)) async -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning, ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(10)) }
        if process.isRunning { return nil }
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// A test that throws before `stop()` still ends its process: the last reference kills it.
    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
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
