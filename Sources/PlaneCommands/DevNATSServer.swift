import Foundation
import Logging
import PlaneCore
import ServiceLifecycle
import Synchronization

/// The `nats-server` of `plane dev`: a child process with JetStream, its store in the dev
/// state directory, on 127.0.0.1 and a free port. A `Service`: it stops the server when the
/// group shuts down, and ends the group if the server dies.
final class DevNATSServer: Service, @unchecked Sendable {
    let port: Int
    let process: Process
    var url: String { "nats://127.0.0.1:\(port)" }

    /// Starts the server on `preferredPort` when it is free (0 or taken: a free port). A
    /// nats-server left on this store by a `plane dev` that was killed is stopped first
    /// (the caller holds the state directory's `DevStateLock`, so no live one owns it).
    /// The server is started through `setpriv --pdeathsig KILL` (util-linux) from a thread
    /// that lives as long as it: it ends with `plane dev`, even when that is SIGKILLed.
    static func start(directory: String, preferredPort: Int, logger: Logger) async throws -> DevNATSServer {
        let executable = try DevPrerequisites.program("nats-server", package: "nats-server")
        try FileManager.default.createDirectory(atPath: directory + "/jetstream", withIntermediateDirectories: true)
        let pidFile = directory + "/nats-server.pid"
        if let leftover = leftoverServer(pidFile: pidFile, configuration: directory + "/nats.conf") {
            logger.notice("dev.leftover_nats_server", metadata: ["plane.pid": "\(leftover)", "plane.state_dir": "\(directory)"])
            stop(pid: leftover)
        }
        let port = try DevPrerequisites.port(preferred: preferredPort)
        try """
            listen: "127.0.0.1:\(port)"
            jetstream { store_dir: "\(directory)/jetstream" }
            """.write(toFile: directory + "/nats.conf", atomically: true, encoding: .utf8)
        let process = Process()
        let arguments = ["-c", directory + "/nats.conf", "-l", directory + "/nats-server.log", "-P", pidFile]
        if let setpriv = try? DevPrerequisites.program("setpriv", package: "util-linux") {
            process.executableURL = URL(fileURLWithPath: setpriv)
            process.arguments = ["--pdeathsig", "KILL", "--", executable] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = arguments
        }
        try SpawnThread.run(process)
        let server = DevNATSServer(port: port, process: process)
        let deadline = ContinuousClock.now + .seconds(15)
        while ContinuousClock.now < deadline {
            if DevPrerequisites.accepts(port: port) { return server }
            guard process.isRunning else { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        server.stop()
        throw DevError("nats-server did not start on 127.0.0.1:\(port); see \(directory)/nats-server.log")
    }

    private init(port: Int, process: Process) {
        self.port = port
        self.process = process
    }

    func run() async throws {
        while process.isRunning, !Task.isCancelled, !Task.isShuttingDownGracefully {
            try? await Task.sleep(for: .milliseconds(200))
        }
        let died = !process.isRunning
        stop()
        if died { throw DevError("nats-server exited unexpectedly") }
    }

    /// The pid of a nats-server still running on this store (its pid file names a live
    /// nats-server started with this configuration), if any.
    static func leftoverServer(pidFile: String, configuration: String) -> pid_t? {
        guard let text = try? String(contentsOfFile: pidFile, encoding: .utf8),
              let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 1,
              let commandLine = try? BoundedFile.readGenerated("/proc/\(pid)/cmdline") else { return nil }
        let arguments = commandLine.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        guard arguments.contains(where: { $0.hasSuffix("nats-server") }), arguments.contains(configuration) else { return nil }
        return pid
    }

    /// SIGTERM, then SIGKILL after 5 s (a process that is not a child: not reaped here).
    static func stop(pid: pid_t) {
        kill(pid, SIGTERM)
        let deadline = Date().addingTimeInterval(5)
        while kill(pid, 0) == 0 && Date() < deadline { usleep(20_000) }
        if kill(pid, 0) == 0 { kill(pid, SIGKILL) }
    }

    /// SIGTERM, then SIGKILL after 5 s; always reaped.
    func stop() {
        defer { SpawnThread.release(process) }
        guard process.isRunning else { return }
        process.terminate()
        let deadline = Date().addingTimeInterval(5)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }
}

/// Starts child processes from threads that live as long as the child: a child started
/// with a parent-death signal (`setpriv --pdeathsig`) gets it when the *thread* that
/// started it ends, and the threads of Swift's concurrency pool come and go.
enum SpawnThread {
    private final class Entry: @unchecked Sendable {
        let started = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        var error: (any Error)?
    }
    private static let entries = Mutex<[ObjectIdentifier: Entry]>([:])

    /// Runs `process` from a thread of its own, which waits until `release(process)`.
    static func run(_ process: Process) throws {
        let entry = Entry()
        let box = UnsafeSendableProcess(process: process)
        let thread = Thread {
            do { try box.process.run() } catch { entry.error = error }
            entry.started.signal()
            entry.release.wait()
        }
        thread.start()
        entry.started.wait()
        if let error = entry.error {
            entry.release.signal()
            throw error
        }
        entries.withLock { $0[ObjectIdentifier(process)] = entry }
    }

    /// The process ended (and was reaped): its thread may end.
    static func release(_ process: Process) {
        entries.withLock { $0.removeValue(forKey: ObjectIdentifier(process)) }?.release.signal()
    }

    private struct UnsafeSendableProcess: @unchecked Sendable {
        let process: Process
    }
}

/// What `plane dev` needs from the machine, with messages that name the Debian package.
enum DevPrerequisites {
    /// The path of `name` on PATH, or an error naming the package that provides it.
    static func program(_ name: String, package: String) throws -> String {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        for directory in path.split(separator: ":") where FileManager.default.isExecutableFile(atPath: "\(directory)/\(name)") {
            return "\(directory)/\(name)"
        }
        throw DevError("\(name) is not installed; install it with: apt-get install -y \(package)")
    }

    static func has(_ name: String) -> Bool { (try? program(name, package: "")) != nil }

    /// A TCP port on 127.0.0.1 that was free a moment ago.
    static func freePort() throws -> Int {
        guard let port = TCPPortProbe.freePort() else { throw DevError("cannot find a free port on 127.0.0.1") }
        return port
    }

    /// `preferred` when it can be bound on 127.0.0.1; a free port when it is taken or 0.
    static func port(preferred: Int) throws -> Int {
        preferred != 0 && TCPPortProbe.canBind(port: preferred, address: "127.0.0.1") ? preferred : try freePort()
    }

    static func accepts(port: Int) -> Bool { TCPPortProbe.accepts(port: port) }

    /// Whether a Docker daemon answers on its unix socket.
    static func dockerAnswers(socketPath: String = "/var/run/docker.sock") -> Bool {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(socketPath.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            for (i, byte) in bytes.enumerated() { buffer[i] = byte }
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) == 0 }
        }
        guard connected else { return false }
        let request = Array("GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n".utf8)
        guard request.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) == request.count else { return false }
        var reply = [UInt8](repeating: 0, count: 64)
        let n = reply.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        return n > 12 && String(decoding: reply[0..<n], as: UTF8.self).contains(" 200 ")
    }
}

struct DevError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
