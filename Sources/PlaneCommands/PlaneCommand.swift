import ArgumentParser
import Foundation
import OCIRuntime
import PlaneCore

/// The `plane` executable's root command.
public struct PlaneCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "plane",
        abstract: "Plane for Swift: run one process per key (session backends) on a cluster of drones.",
        discussion: """
            A client asks the cluster for a backend; a drone runs it as a container, gives it the \
            hostname {backend}.{cluster}, proxies HTTPS and WebSocket traffic to it and stops it \
            when idle. Controllers and drones talk over NATS with the Plane v0.3 wire format.
            """,
        version: PlaneVersion.current,
        subcommands: [DevCommand.self, SpawnCommand.self, StatusCommand.self, TerminateCommand.self, DrainCommand.self, ListDronesCommand.self, ListDNSCommand.self, LogsCommand.self,
                      ControllerCommand.self, DroneCommand.self, RuntimesCommand.self, NATSCheckCommand.self, OCIShimCommand.self, DevReaperCommand.self]
    )

    public init() {}
}

/// Entry point of the `plane` executable.
public enum PlaneMain {
    /// Runs the command line and exits. Synchronous on purpose: `plane oci-shim` must run
    /// while the process still has one thread (no libdispatch worker or event-loop thread
    /// with descriptors of its own, as an async `main` would start), so it is dispatched
    /// here first; every other command then runs as a task on the main queue.
    public static func main() -> Never {
        runShimIfAsked()
        Task { @MainActor in
            await PlaneCommand.main(nil)
            exit(0)
        }
        dispatchMain()
    }

    /// `plane oci-shim BUNDLE` (or `--standby`) runs once per backend start of the oci runtime, so it goes
    /// straight to `OCIShim` instead of through the argument parser, whose reflection over
    /// every type of this executable costs tens of milliseconds (`docs/benchmarks.md`).
    /// Any other shape of the command (e.g. `--help`) is the parser's.
    static func runShimIfAsked() {
        let arguments = CommandLine.arguments
        guard arguments.count == 3, arguments[1] == OCIShimCommand.commandName else { return }
        if arguments[2] == OCIShim.standbyFlag { exit(OCIShim.standby()) }
        guard !arguments[2].hasPrefix("-") else { return }
        exit(OCIShim.main(bundle: arguments[2]))
    }
}
