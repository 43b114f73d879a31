import CLinux
import Foundation
import ProcessSupervision

/// One per backend, started by the plugin in a session of its own so that it outlives the
/// plugin: starts the backend (through `launch`), copies its output into `output.log`,
/// reaps it and writes `exit.json`, so the exit code is known even when the plugin was
/// restarted meanwhile. Synchronous: no threads, no event loop.
enum ProcessShim {
    static func main(directory: ProcessBackendDirectory) -> Int32 {
        for ignored in [SIGPIPE, SIGHUP, SIGINT, SIGTERM, SIGQUIT] { signal(ignored, SIG_IGN) }
        guard let record = directory.read(ProcessBackendRecord.self, directory.recordFile) else {
            FileHandle.standardError.write(Data("plane-runtime-process shim: cannot read \(directory.recordFile)\n".utf8))
            return 1
        }
        // Processes the backend leaves behind are re-parented here, not to init.
        _ = plane_set_child_subreaper()
        try? String(getpid()).write(toFile: directory.shimPIDFile, atomically: true, encoding: .utf8)
        let log = open(directory.outputLog, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o640)
        var output: [Int32] = [0, 0]
        var errors: [Int32] = [0, 0]
        guard log >= 0, plane_pipe_cloexec(&output) == 0, plane_pipe_cloexec(&errors) == 0 else {
            FileHandle.standardError.write(Data("plane-runtime-process shim: cannot open the output log or pipes: \(String(cString: strerror(errno)))\n".utf8))
            return 1
        }
        let backend: pid_t
        do {
            backend = try ProcessSpawner.spawn(CommandLine.arguments[0], ["launch", directory.path], descriptors: [1: output[1], 2: errors[1]])
        } catch {
            try? "\(error)".write(toFile: directory.launchErrorFile, atomically: true, encoding: .utf8)
            return 1
        }
        close(output[1])
        close(errors[1])
        try? String(backend).write(toFile: directory.backendPIDFile, atomically: true, encoding: .utf8)
        var pump = OutputPump(log: log, output: output[0], errors: errors[0])
        let status = pump.run(untilExitOf: backend)
        // What the backend started and left running ends with it.
        kill(-backend, SIGKILL)
        let counters = record.cgroupDirectories.isEmpty ? [] : CgroupLayout.detect().outOfMemoryCounterFiles(record.cgroupPath)
        do {
            try BackendExitRecord(waitStatus: status, outOfMemoryCounterFiles: counters).write(to: directory.exitFile)
        } catch {
            FileHandle.standardError.write(Data("plane-runtime-process shim: cannot write \(directory.exitFile): \(error)\n".utf8))
            return 1
        }
        ProcessSpawner.reapEndedChildren()
        return 0
    }
}
