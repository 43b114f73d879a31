import ArgumentParser
import ContainerRuntime
import ExternalRuntime
import Foundation
import Logging
import PlaneCore
import PlaneDrone
import ProcessSupervision

/// `plane dev-reaper` (hidden): what ends a `plane dev`'s backends when `plane dev` itself
/// cannot — when it is killed (SIGKILL, the OOM killer) and none of its own cleanup runs.
///
/// `plane dev` starts it in a session of its own (Ctrl-C in the terminal does not reach
/// it) and stops it with SIGTERM once its own shutdown has ended the backends. Until then
/// it only watches its parent; when the parent is gone (it was re-parented), it opens each
/// dev drone's runtime from the drone's state directory and stops and removes every
/// backend the runtime holds for that drone (containers, OCI shims and their mounts and
/// network namespaces, process-plugin backends), then ends the plugin processes it started
/// and exits. The nats-server ends by itself (its parent-death signal).
struct DevReaperCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dev-reaper",
        abstract: "Ends a killed plane dev's backends (started by plane dev).",
        shouldDisplay: false
    )

    @Option(name: .long, help: "The pid of the plane dev to watch.") var parent: Int32
    @Option(name: .long, help: "A dev drone as runtime=state_dir (repeated).") var drone: [String] = []

    func run() async throws {
        LoggingSystem.bootstrapPlane()
        let logger = Logger(label: "plane.dev-reaper")
        signal(SIGINT, SIG_IGN)
        signal(SIGHUP, SIG_IGN)
        while getppid() == parent {
            try await Task.sleep(for: .milliseconds(200))
        }
        logger.notice("dev_reaper.parent_gone", metadata: ["plane.parent_pid": "\(parent)"])
        for entry in drone {
            let parts = entry.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { continue }
            await Self.reap(runtime: parts[0], stateDirectory: parts[1], logger: logger)
        }
    }

    /// Stops and removes every backend that `runtime` holds for the drone of `stateDirectory`.
    static func reap(runtime name: String, stateDirectory: String, logger: Logger) async {
        let runtime: any ContainerRuntime
        do {
            let droneID = try DroneIdentity.load(stateDirectory: stateDirectory)
            runtime = try await DroneCommand.registry().makeRuntime(named: name, context: RuntimeContext(
                droneID: droneID, stateDirectory: stateDirectory, logger: logger))
        } catch {
            logger.warning("dev_reaper.runtime_unavailable", metadata: ["plane.runtime": "\(name)", "plane.state_dir": "\(stateDirectory)", "error": "\(error)"])
            return
        }
        let backends = (try? await runtime.list()) ?? []
        for handle in backends {
            do {
                try await runtime.stop(handle.backendID, grace: .zero)
                try await runtime.remove(handle.backendID)
            } catch {
                logger.warning("dev_reaper.remove_failed", metadata: ["plane.backend": "\(handle.backendID)", "error": "\(error)"])
            }
        }
        logger.notice("dev_reaper.reaped", metadata: ["plane.runtime": "\(name)", "plane.backends": "\(backends.count)"])
        if let external = runtime as? ExternalRuntime { await external.shutdown() }
    }

    /// Starts the reaper for this process's dev drones; stop it with `stop(_:)` once they
    /// have ended their backends. Its output goes to `log`.
    static func start(drones: [(runtime: String, stateDirectory: String)], log: String) throws -> pid_t {
        let executable = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().path
        let descriptor = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        defer { if descriptor >= 0 { close(descriptor) } }
        let arguments = ["dev-reaper", "--parent", String(getpid())] + drones.flatMap { ["--drone", "\($0.runtime)=\($0.stateDirectory)"] }
        let pid = try ProcessSpawner.spawn(executable, arguments, descriptors: descriptor >= 0 ? [1: descriptor, 2: descriptor] : [:], newSession: true)
        // Reaped when it ends (after `stop`, or after it reaped a dead parent's drones,
        // when this process is gone anyway).
        Thread.detachNewThread { _ = ProcessSpawner.wait(for: pid) }
        return pid
    }

    /// `plane dev` ended its backends itself: the reaper has nothing to do.
    static func stop(_ pid: pid_t) {
        kill(pid, SIGTERM)
    }
}
