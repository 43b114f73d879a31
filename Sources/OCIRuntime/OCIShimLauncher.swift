import CLinux
import ContainerRuntime
import Foundation

/// Starts a backend's shim (`<shim executable> oci-shim <bundle>`) in a session of its own
/// and waits for its report: the init pid, or why the backend could not be started.
enum OCIShimLauncher {
    struct Launched: Sendable {
        var shimPID: pid_t
        var initPID: pid_t
    }

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
        let reader = status[0]
        let milliseconds = Int32(clamping: timeout.components.seconds * 1_000)
        let text: String? = await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(returning: readReport(reader, timeoutMilliseconds: milliseconds))
                close(reader)
            }
        }
        guard let text, let report = try? JSONDecoder().decode(OCIShimReport.self, from: Data(text.utf8)) else {
            kill(shimPID, SIGKILL)
            let diagnostics = (try? String(contentsOfFile: directory.shimLog, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
            throw RuntimeError(text == nil ? .timeout : .internal,
                               "The OCI shim of \(directory.path) \(text == nil ? "did not report within \(timeout)" : "ended without a report")\(diagnostics.isEmpty ? "" : ": \(diagnostics)").")
        }
        if let error = report.error { throw RuntimeError(.internal, error) }
        guard let pid = report.pid else { throw RuntimeError(.internal, "The OCI shim reported neither a pid nor an error.") }
        return Launched(shimPID: shimPID, initPID: pid)
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
