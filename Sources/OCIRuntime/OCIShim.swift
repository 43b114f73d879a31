import CLinux
import ContainerRuntime
import Foundation
import PlaneCore
import ProcessSupervision

/// The process that stays with one backend for its whole life (`plane oci-shim BUNDLE`).
///
/// The drone starts it in a session of its own, so it outlives drone restarts. It makes
/// itself the *child subreaper*, runs the runtime binary's `run --detach` (crun: `create`
/// and `start`) with the backend's output going into pipes it reads, and reports the init pid (or why it failed)
/// on descriptor 3. From then on it copies the output, timestamped, into
/// `output.log`, reaps the init process when it ends — it is re-parented to the shim once
/// `run --detach` (or `create`) returns — and writes `exit.json` with the exit code and whether the memory
/// cgroup counted an OOM kill. Everything here is synchronous: no threads, no event loop.
public enum OCIShim {
    /// The descriptor the drone reads the `OCIShimReport` from.
    public static let statusDescriptor: Int32 = 3

    /// The argument of `plane oci-shim --standby`.
    public static let standbyFlag = "--standby"

    /// `plane oci-shim --standby`: a shim the drone started ahead of need, so a backend's
    /// start does not wait for this executable to load. It reads the bundle directory of the
    /// backend it is to run from descriptor 0 (one line), sends its stdout and stderr to that
    /// backend's `shim.log`, and is that backend's shim from then on (`main(bundle:)`).
    /// End of input before a line (the drone stopped or let it go) ends it quietly.
    public static func standby() -> Int32 {
        for ignored in [SIGPIPE, SIGHUP, SIGINT, SIGTERM, SIGQUIT] { signal(ignored, SIG_IGN) }
        // What the runtime would otherwise look up on the first decode, done while waiting.
        _ = try? JSONDecoder().decode(OCIShimConfiguration.self, from: Data(#"{"runtime_name":"","run_command":[],"oom_counter_files":[]}"#.utf8))
        var line: [UInt8] = []
        var byte: UInt8 = 0
        while line.count < 4_096 {
            let count = read(0, &byte, 1)
            if count < 0, errno == EINTR { continue }
            guard count == 1 else { return 0 }
            if byte == UInt8(ascii: "\n") { break }
            line.append(byte)
        }
        let bundle = String(decoding: line, as: UTF8.self)
        guard bundle.hasPrefix("/") else { return 0 }
        let log = open(OCIBackendDirectory(path: bundle).shimLog, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        if log >= 0 {
            dup2(log, 1)
            dup2(log, 2)
            close(log)
        }
        let null = open("/dev/null", O_RDONLY | O_CLOEXEC)
        if null >= 0 {
            dup2(null, 0)
            close(null)
        }
        return main(bundle: bundle)
    }

    /// Runs the shim for the bundle at `bundle`; returns the process's exit status.
    public static func main(bundle: String) -> Int32 {
        // The drone passes descriptors 0-3 only; anything else inherited must not reach
        // runc or the container. Marked close-on-exec rather than closed: the process's
        // runtime may own descriptors of its own.
        _ = plane_cloexec_from(UInt32(statusDescriptor + 1))
        for ignored in [SIGPIPE, SIGHUP, SIGINT, SIGTERM, SIGQUIT] { signal(ignored, SIG_IGN) }
        let directory = OCIBackendDirectory(path: bundle)
        var reporter = Reporter(descriptor: statusDescriptor)
        let configuration: OCIShimConfiguration
        do {
            let data = try Data(contentsOf: URL(fileURLWithPath: directory.shimConfigurationFile))
            configuration = try JSONDecoder().decode(OCIShimConfiguration.self, from: data)
        } catch {
            reporter.fail("The shim cannot read \(directory.shimConfigurationFile): \(error)")
            return 1
        }
        guard plane_set_child_subreaper() == 0 else {
            reporter.fail("The shim cannot become a child subreaper: \(String(cString: strerror(errno))).")
            return 1
        }
        // The drone knows a shim by its working directory (a standby shim's command line
        // does not name the bundle).
        guard chdir(bundle) == 0 else {
            reporter.fail("The shim cannot enter \(bundle): \(String(cString: strerror(errno))).")
            return 1
        }
        try? String(getpid()).write(toFile: directory.shimPIDFile, atomically: true, encoding: .utf8)

        let log = open(directory.outputLog, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard log >= 0 else {
            reporter.fail("The shim cannot open \(directory.outputLog): \(String(cString: strerror(errno))).")
            return 1
        }
        var output: [Int32] = [0, 0]
        var errors: [Int32] = [0, 0]
        guard plane_pipe_cloexec(&output) == 0, plane_pipe_cloexec(&errors) == 0 else {
            reporter.fail("The shim cannot create pipes: \(String(cString: strerror(errno))).")
            return 1
        }

        // crun on a hybrid host: its commands run in a private mount namespace without the
        // cgroup2 mount, entered here (no extra programs on the start's path) and left
        // once they are done, so the shim holds no copy of the host's mounts.
        var originalNamespace: Int32?
        if let detach = configuration.privateNamespaceDetach {
            let descriptor = plane_enter_private_mount_namespace(detach)
            guard descriptor >= 0 else {
                reporter.fail("The shim cannot enter a private mount namespace without \(detach) for \(configuration.runtimeName): \(String(cString: strerror(errno))).")
                return 1
            }
            originalNamespace = descriptor
        }
        func leavePrivateNamespace() {
            if let descriptor = originalNamespace, plane_return_to_mount_namespace(descriptor) != 0 {
                FileHandle.standardError.write(Data("oci-shim: cannot return to the drone's mount namespace: \(String(cString: strerror(errno)))\n".utf8))
            }
            originalNamespace = nil
        }

        // run --detach (or create): the container's stdout and stderr are the runtime binary's.
        var runStatus: Int32?
        var failedCommand = configuration.startCommand == nil ? "run" : "create"
        do {
            let run = try ProcessSpawner.spawn(configuration.runCommand[0], Array(configuration.runCommand.dropFirst()),
                                               descriptors: [1: output[1], 2: errors[1]])
            runStatus = ProcessSpawner.wait(for: run)
        } catch {
            leavePrivateNamespace()
            reporter.fail("\(error)")
            return 1
        }
        close(output[1])
        close(errors[1])
        var pump = OutputPump(log: log, output: output[0], errors: errors[0],
                              rotation: configuration.maxOutputBytes.map { OutputPump.Rotation(path: directory.outputLog, maxBytes: $0) })
        let initPID = (try? String(contentsOfFile: directory.initPIDFile, encoding: .utf8)).flatMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        // crun: the created process is the shim's child now; `start` lets it run.
        if let start = configuration.startCommand, let status = runStatus, plane_wifexited(status) != 0, plane_wexitstatus(status) == 0 {
            failedCommand = "start"
            do {
                runStatus = ProcessSpawner.wait(for: try ProcessSpawner.spawn(start[0], Array(start.dropFirst())))
            } catch {
                runStatus = nil
            }
        }
        leavePrivateNamespace()
        guard let runStatus, plane_wifexited(runStatus) != 0, plane_wexitstatus(runStatus) == 0 else {
            // A process it started before failing is ours to end (re-parented to us).
            if let initPID, initPID > 0 {
                kill(initPID, SIGKILL)
                _ = ProcessSpawner.wait(for: initPID)
            }
            pump.drain(until: .now + .milliseconds(200))
            let reason = runtimeError(directory) ?? pump.lastLines ?? "no message"
            reporter.fail("\(configuration.runtimeName) \(failedCommand) failed (\(ProcessSpawner.describe(status: runStatus ?? -1))): \(reason)")
            return 1
        }
        guard let initPID, initPID > 0 else {
            reporter.fail("\(configuration.runtimeName) run wrote no pid to \(directory.initPIDFile).")
            return 1
        }
        reporter.succeed(pid: initPID)

        let status = pump.run(untilExitOf: initPID)
        do {
            try BackendExitRecord(waitStatus: status, outOfMemoryCounterFiles: configuration.outOfMemoryCounterFiles).write(to: directory.exitFile)
        } catch {
            FileHandle.standardError.write(Data("plane oci-shim: cannot write \(directory.exitFile): \(error)\n".utf8))
            return 1
        }
        // Anything else re-parented to the shim meanwhile.
        ProcessSpawner.reapEndedChildren()
        return 0
    }

    /// The last error message in the runtime binary's JSON log, if it wrote one.
    static func runtimeError(_ directory: OCIBackendDirectory) -> String? {
        guard let text = try? String(contentsOfFile: directory.runtimeLog, encoding: .utf8) else { return nil }
        var message: String?
        for line in text.split(separator: "\n") {
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                message = String(line)
                continue
            }
            if let level = object["level"] as? String, level != "error", level != "fatal" { continue }
            if let text = object["msg"] as? String { message = text }
        }
        return message
    }

    /// Writes the one report on the status descriptor and closes it.
    struct Reporter {
        var descriptor: Int32

        mutating func succeed(pid: pid_t) { send(OCIShimReport(pid: pid)) }

        mutating func fail(_ message: String) {
            FileHandle.standardError.write(Data("plane oci-shim: \(message)\n".utf8))
            send(OCIShimReport(error: message))
        }

        private mutating func send(_ report: OCIShimReport) {
            guard descriptor >= 0 else { return }
            if var data = try? JSONEncoder().encode(report) {
                data.append(UInt8(ascii: "\n"))
                _ = data.withUnsafeBytes { FileDescriptorIO.writeAll(descriptor, $0) }
            }
            close(descriptor)
            descriptor = -1
        }
    }
}

