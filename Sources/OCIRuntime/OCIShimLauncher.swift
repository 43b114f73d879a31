import CLinux
import ContainerRuntime
import Foundation
import ProcessSupervision

/// Starts a backend's shim (`<shim executable> oci-shim <bundle>`) in a session of its own
/// and waits for its report: the init pid, or why the backend could not be started.
enum OCIShimLauncher {
    struct Launched: Sendable {
        var shimPID: pid_t
        var initPID: pid_t
    }

    /// A shim started ahead of need (`plane oci-shim --standby`): loaded and waiting for
    /// the bundle directory of the backend it is to run.
    struct Standby: Sendable {
        var pid: pid_t
        /// Our end of the socket the shim reads its bundle from (a socket, so a write to a
        /// shim that died fails with EPIPE instead of raising SIGPIPE here).
        var command: Int32
        /// The read end of its status pipe.
        var status: Int32

        /// Lets the shim go unused: it reads end of input and exits.
        func dismiss() {
            close(command)
            close(status)
        }
    }

    /// Starts a standby shim in a session of its own.
    static func standby(shim: String) throws(RuntimeError) -> Standby {
        var command: [Int32] = [0, 0]
        guard plane_socketpair_cloexec(&command) == 0 else {
            throw RuntimeError(.internal, "socketpair failed: \(String(cString: strerror(errno))).")
        }
        var status: [Int32] = [0, 0]
        guard plane_pipe_cloexec(&status) == 0 else {
            close(command[0]); close(command[1])
            throw RuntimeError(.internal, "pipe2 failed: \(String(cString: strerror(errno))).")
        }
        defer { close(command[1]); close(status[1]) }
        do {
            let pid = try ProcessSpawner.spawn(shim, ["oci-shim", OCIShim.standbyFlag],
                                               descriptors: [0: command[1], OCIShim.statusDescriptor: status[1]], newSession: true)
            return Standby(pid: pid, command: command[0], status: status[0])
        } catch {
            close(command[0]); close(status[0])
            throw RuntimeError(.unavailable, "Cannot start the OCI shim \(shim); set [agent.oci] shim to the plane executable.", cause: error.description)
        }
    }

    /// Runs the backend in `directory` with `standby` if it takes the job, else with a shim
    /// started now, and waits for its report. A standby that turned out dead is returned in
    /// `dismissed` (its pid is to be reaped).
    static func launch(shim: String, directory: OCIBackendDirectory, standby: Standby?, timeout: Duration = .seconds(120)) async throws(RuntimeError) -> (Launched, dismissed: pid_t?) {
        if let standby {
            let line = Array("\(directory.path)\n".utf8)
            let sent = line.withUnsafeBytes { send(standby.command, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            close(standby.command)
            if sent == line.count {
                return (try await awaitReport(shimPID: standby.pid, reader: standby.status, directory: directory, timeout: timeout), nil)
            }
            close(standby.status)
            kill(standby.pid, SIGKILL)
            return (try await launch(shim: shim, directory: directory, timeout: timeout), standby.pid)
        }
        return (try await launch(shim: shim, directory: directory, timeout: timeout), nil)
    }

    /// Starts a shim for the backend in `directory` and waits for its report.
    static func launch(shim: String, directory: OCIBackendDirectory, timeout: Duration = .seconds(120)) async throws(RuntimeError) -> Launched {
        let log = open(directory.shimLog, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o640)
        guard log >= 0 else { throw RuntimeError(.internal, "Cannot open \(directory.shimLog): \(String(cString: strerror(errno))).") }
        var status: [Int32] = [0, 0]
        guard plane_pipe_cloexec(&status) == 0 else {
            close(log)
            throw RuntimeError(.internal, "pipe2 failed: \(String(cString: strerror(errno))).")
        }
        let shimPID: pid_t
        do {
            shimPID = try ProcessSpawner.spawn(shim, ["oci-shim", directory.path],
                                               descriptors: [1: log, 2: log, OCIShim.statusDescriptor: status[1]], newSession: true)
        } catch {
            close(log); close(status[0]); close(status[1])
            throw RuntimeError(.unavailable, "Cannot start the OCI shim \(shim); set [agent.oci] shim to the plane executable.", cause: error.description)
        }
        close(log)
        close(status[1])
        return try await awaitReport(shimPID: shimPID, reader: status[0], directory: directory, timeout: timeout)
    }

    /// Reads the shim's report from `reader` (closing it): the init pid, or why it failed.
    static func awaitReport(shimPID: pid_t, reader: Int32, directory: OCIBackendDirectory, timeout: Duration) async throws(RuntimeError) -> Launched {
        let milliseconds = Int32(clamping: timeout.components.seconds * 1_000)
        let text: String? = await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(returning: readReport(reader, timeoutMilliseconds: milliseconds))
                close(reader)
            }
        }
        guard let text, let report = try? JSONDecoder().decode(OCIShimReport.self, from: Data(text.utf8)) else {
            kill(shimPID, SIGKILL)
            reapInBackground(shimPID)
            let diagnostics = (try? String(contentsOfFile: directory.shimLog, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
            throw RuntimeError(text == nil ? .timeout : .internal,
                               "The OCI shim of \(directory.path) \(text == nil ? "did not report within \(timeout)" : "ended without a report")\(diagnostics.isEmpty ? "" : ": \(diagnostics)").")
        }
        if let error = report.error {
            // A shim that failed exits right after its report.
            reapInBackground(shimPID)
            throw RuntimeError(.internal, error)
        }
        guard let pid = report.pid else { throw RuntimeError(.internal, "The OCI shim reported neither a pid nor an error.") }
        return Launched(shimPID: shimPID, initPID: pid)
    }

    /// Waits for a failed shim to end, so it does not stay a zombie of the drone.
    static func reapInBackground(_ pid: pid_t) {
        Thread.detachNewThread {
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0, errno == EINTR {}
        }
    }

    /// Reads until the shim closes its end (or `timeoutMilliseconds` pass); nil on timeout.
    static func readReport(_ fd: Int32, timeoutMilliseconds: Int32) -> String? {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4_096)
        let deadline = ContinuousClock.now + .milliseconds(Int64(timeoutMilliseconds))
        while true {
            let remaining = deadline - ContinuousClock.now
            guard remaining > .zero else { return nil }
            var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&descriptor, 1, Int32(clamping: remaining.components.seconds * 1_000 + remaining.components.attoseconds / 1_000_000_000_000_000 + 1))
            if ready < 0, errno == EINTR { continue }
            if ready == 0 { return nil }
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0, errno == EINTR { continue }
            if count <= 0 { return String(decoding: bytes, as: UTF8.self) }
            bytes.append(contentsOf: chunk[0..<count])
        }
    }
}
