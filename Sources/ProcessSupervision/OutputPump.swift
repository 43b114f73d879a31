import CLinux
import ContainerRuntime
import Foundation
import PlaneCore

/// Copies a backend's stdout and stderr (two pipes) into its output log
/// (`BackendOutputLog` records) until both end and the process was reaped; used by the
/// shims that outlive the drone (OCI) or the plugin (process runtime).
///
/// With `rotation`, the log is bounded: once it holds more than `maxBytes`, it is renamed
/// to `{path}.1` (replacing the one before) and a new one is started, so a backend's stored
/// output never takes more than about twice that. Readers that follow it reopen the path
/// when it is replaced (the OCI runtime's `logs(of:follow:)`).
public struct OutputPump {
    public struct Rotation: Sendable {
        public var path: String
        public var maxBytes: Int64
        public init(path: String, maxBytes: Int64) {
            self.path = path
            self.maxBytes = maxBytes
        }
    }

    var log: Int32
    let rotation: Rotation?
    var logBytes: Int64 = 0
    var streams: [(fd: Int32, stream: LogLine.Stream, lines: BackendOutputLog.LineAssembler)]
    var lastTime: Int64 = 0
    var recent: [String] = []

    public init(log: Int32, output: Int32, errors: Int32, rotation: Rotation? = nil) {
        self.log = log
        self.rotation = rotation
        var info = stat()
        if fstat(log, &info) == 0 { logBytes = Int64(info.st_size) }
        streams = [(output, .stdout, BackendOutputLog.LineAssembler()), (errors, .stderr, BackendOutputLog.LineAssembler())]
    }

    /// Closes the log it writes to. The pump owns the descriptor given to `init`: a
    /// rotation closes it and writes to a new one, so the caller's copy of the number may
    /// name another file (or another thread's socket) by then and must not be closed.
    public mutating func closeLog() {
        guard log >= 0 else { return }
        close(log)
        log = -1
    }

    /// The last few lines copied, for an error message.
    public var lastLines: String? { recent.isEmpty ? nil : recent.joined(separator: " | ") }

    /// Copies output until the process ends and its output is closed; returns init's wait status.
    public mutating func run(untilExitOf pid: pid_t) -> Int32? {
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
    public mutating func drain(until deadline: ContinuousClock.Instant) {
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
        let record = BackendOutputLog.encode(time: time, stream: stream, text: line)
        _ = record.withUnsafeBytes { FileDescriptorIO.writeAll(log, $0) }
        logBytes += Int64(record.count)
        if let rotation, logBytes > rotation.maxBytes { rotate(rotation) }
        recent.append(String(decoding: line, as: UTF8.self))
        if recent.count > 5 { recent.removeFirst() }
    }

    /// The current log becomes `{path}.1`; writing goes on in a new file at `path`. When
    /// the new file cannot be made, writing goes on in the old one (nothing is lost).
    ///
    /// `path` names a file at every moment (a reader that opens it mid-rotation gets the
    /// old file or the new one, never nothing): the new file is made under another name,
    /// the current one gets its second name `{path}.1` by a hard link, and a rename puts
    /// the new file in its place. Where hard links are not possible the old order is used
    /// (rename, then rename), with a moment without `path`.
    private mutating func rotate(_ rotation: Rotation) {
        let path = rotation.path
        let next = path + ".next"
        let older = path + ".1"
        unlink(next)
        let fresh = open(next, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0o600)
        guard fresh >= 0 else { return }
        unlink(older + ".next")
        let kept: Bool
        if link(path, older + ".next") == 0 {
            kept = rename(older + ".next", older) == 0
        } else {
            kept = rename(path, older) == 0
        }
        guard kept, rename(next, path) == 0 else {
            close(fresh)
            unlink(next)
            return
        }
        close(log)
        log = fresh
        logBytes = 0
    }
}
