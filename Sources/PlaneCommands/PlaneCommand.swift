import ArgumentParser
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
        subcommands: [ControllerCommand.self, DroneCommand.self, NATSCheckCommand.self, OCIShimCommand.self]
    )

    public init() {}
}

/// Entry point of the `plane` executable.
public enum PlaneMain {
    public static func run() async {
        await PlaneCommand.main(nil)
    }
}
