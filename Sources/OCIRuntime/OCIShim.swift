import CLinux
import ContainerRuntime
import Foundation
import PlaneCore

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
        let log = open(OCIBackendDirectory(path: bundle).shimLog, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o640)
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

        let log = open(directory.outputLog, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o640)
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

        // run --detach (or create): the container's stdout and stderr are the runtime binary's.
        var runStatus: Int32?
        var failedCommand = configuration.startCommand == nil ? "run" : "create"
        do {
            let run = try ProcessSpawner.spawn(configuration.runCommand[0], Array(configuration.runCommand.dropFirst()),
                                               descriptors: [1: output[1], 2: errors[1]])
            runStatus = ProcessSpawner.wait(for: run)
        } catch {
            reporter.fail("\(error)")
            return 1
        }
        close(output[1])
        close(errors[1])
        var pump = OutputPump(log: log, output: output[0], errors: errors[0])
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
        let record = exitRecord(status: status, counters: configuration.outOfMemoryCounterFiles)
        do {
            let data = try JSONEncoder().encode(record)
            try data.write(to: URL(fileURLWithPath: directory.exitFile), options: .atomic)
        } catch {
            FileHandle.standardError.write(Data("plane oci-shim: cannot write \(directory.exitFile): \(error)\n".utf8))
            return 1
        }
        // Anything else re-parented to the shim meanwhile.
        var ignored: Int32 = 0
        while waitpid(-1, &ignored, WNOHANG) > 0 {}
        return 0
    }

    /// The exit record for a raw wait status (`nil`: the status was lost).
    static func exitRecord(status: Int32?, counters: [String]) -> OCIExitRecord {
        let outOfMemory = counters.contains { outOfMemoryKills(in: $0) > 0 }
        guard let status else { return OCIExitRecord(code: 255, signal: nil, outOfMemory: outOfMemory, time: .now()) }
        if plane_wifsignaled(status) != 0 {
            let signal = plane_wtermsig(status)
            return OCIExitRecord(code: 128 + signal, signal: signal, outOfMemory: outOfMemory, time: .now())
        }
        return OCIExitRecord(code: plane_wexitstatus(status), signal: nil, outOfMemory: outOfMemory, time: .now())
    }

    /// The `oom_kill` count in a cgroup `memory.events` or `memory.oom_control` file.
    static func outOfMemoryKills(in file: String) -> Int {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { return 0 }
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ")
            if fields.count == 2, fields[0] == "oom_kill" { return Int(fields[1]) ?? 0 }
        }
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

    /// Copies the backend's stdout and stderr into `output.log` until both end and the
    /// init process was reaped.
    struct OutputPump {
        let log: Int32
        var streams: [(fd: Int32, stream: LogLine.Stream, lines: OCIOutputLog.LineAssembler)]
        var lastTime: Int64 = 0
        var recent: [String] = []

        init(log: Int32, output: Int32, errors: Int32) {
            self.log = log
            streams = [(output, .stdout, OCIOutputLog.LineAssembler()), (errors, .stderr, OCIOutputLog.LineAssembler())]
        }

        /// The last few lines copied, for an error message.
        var lastLines: String? { recent.isEmpty ? nil : recent.joined(separator: " | ") }

        /// Copies output until init ends and its output is closed; returns init's wait status.
        mutating func run(untilExitOf pid: pid_t) -> Int32? {
            let pidDescriptor = plane_pidfd_open(pid)
            var status: Int32?
            var reaped = false
            var closedAt: ContinuousClock.Instant?
            while true {
                var descriptors = streams.filter { $0.fd >= 0 }.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
                if !reaped, pidDescriptor >= 0 { descriptors.append(pollfd(fd: pidDescriptor, events: Int16(POLLIN), revents: 0)) }
                if descriptors.isEmpty, reaped { break }
                // Without a pidfd (old kernels), look for the exit four times a second.
                let timeout: Int32 = reaped ? 200 : (pidDescriptor >= 0 ? -1 : 250)
                let ready = poll(&descriptors, nfds_t(descriptors.count), timeout)
                if ready < 0, errno != EINTR { break }
                for descriptor in descriptors where descriptor.revents != 0 && descriptor.fd != pidDescriptor {
                    copy(from: descriptor.fd)
                }
                if !reaped {
                    var raw: Int32 = 0
                    let result = waitpid(pid, &raw, WNOHANG)
                    if result == pid {
                        status = raw
                        reaped = true
                        closedAt = .now
                    } else if result == -1, errno == ECHILD {
                        reaped = true
                        closedAt = .now
                    }
                }
                // Processes re-parented to the shim; init among them when it ended just
                // after the look above, so its status is kept, not lost.
                var other: Int32 = 0
                while true {
                    let ended = waitpid(-1, &other, WNOHANG)
                    guard ended > 0 else { break }
                    if ended == pid, !reaped {
                        status = other
                        reaped = true
                        closedAt = .now
                    }
                }
                // A process that escaped the backend's pid namespace could hold the pipes
                // open forever; the backend's end is what counts.
                if reaped, let closedAt, ContinuousClock.now - closedAt > .seconds(2) { break }
                if reaped, streams.allSatisfy({ $0.fd < 0 }) { break }
            }
            if pidDescriptor >= 0 { close(pidDescriptor) }
            finish()
            return status
        }

        /// Copies what is left until `deadline` (after a failed create).
        mutating func drain(until deadline: ContinuousClock.Instant) {
            while ContinuousClock.now < deadline, streams.contains(where: { $0.fd >= 0 }) {
                var descriptors = streams.filter { $0.fd >= 0 }.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
                if poll(&descriptors, nfds_t(descriptors.count), 50) <= 0 { break }
                for descriptor in descriptors where descriptor.revents != 0 { copy(from: descriptor.fd) }
            }
            finish()
        }

        private mutating func copy(from fd: Int32) {
            guard let index = streams.firstIndex(where: { $0.fd == fd }) else { return }
            var chunk = [UInt8](repeating: 0, count: 65_536)
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0, errno == EINTR || errno == EAGAIN { return }
            if count <= 0 {
                close(fd)
                streams[index].fd = -1
                var assembler = streams[index].lines
                assembler.finish { write($0, streams[index].stream) }
                streams[index].lines = assembler
                return
            }
            var assembler = streams[index].lines
            let stream = streams[index].stream
            assembler.append(chunk[0..<count]) { write($0, stream) }
            streams[index].lines = assembler
        }

        private mutating func finish() {
            for index in streams.indices where streams[index].fd >= 0 {
                close(streams[index].fd)
                streams[index].fd = -1
                var assembler = streams[index].lines
                assembler.finish { write($0, streams[index].stream) }
                streams[index].lines = assembler
            }
        }

        private mutating func write(_ line: [UInt8], _ stream: LogLine.Stream) {
            var time = Timestamp.now().nanosecondsSinceEpoch
            if time <= lastTime { time = lastTime + 1 }
            lastTime = time
            let record = OCIOutputLog.encode(time: time, stream: stream, text: line)
            _ = record.withUnsafeBytes { FileDescriptorIO.writeAll(log, $0) }
            recent.append(String(decoding: line, as: UTF8.self))
            if recent.count > 5 { recent.removeFirst() }
        }
    }
}

/// Small descriptor helpers shared by the shim, the unpacker and the registry client.
enum FileDescriptorIO {
    /// Writes all of `bytes` (retrying short writes and EINTR); false on an error.
    @discardableResult
    static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let written = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if written < 0 {
                if errno == EINTR { continue }
                return false
            }
            offset += written
        }
        return true
    }
}
