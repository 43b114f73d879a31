import ArgumentParser
import PlaneCore
import PlaneMessaging

/// `plane drain <cluster> <drone> [--cancel]`: stops (or resumes) scheduling onto a drone;
/// its running backends stay until they end (spec §8).
struct DrainCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drain",
        abstract: "Stop scheduling new backends onto a drone (or resume with --cancel).",
        discussion: "Exit status: 0 the drone accepted, 3 no such drone answered (or no NATS)."
    )

    @Argument(help: "The cluster, e.g. plane.test.") var cluster: String
    @Argument(help: "The drone id (`plane list-drones` shows them).") var drone: String
    @Flag(name: .long, help: "Resume scheduling onto the drone.") var cancel = false
    @OptionGroup var options: ClusterOptions

    func run() async throws {
        let clusterName: ClusterName
        let droneID: DroneID
        do {
            clusterName = try ClusterName(cluster)
            droneID = try DroneID(drone)
        } catch {
            throw ValidationError(error.message)
        }
        let messenger = await options.connect()
        let subject = PlaneSubjects.drain(clusterName, droneID)
        do {
            _ = try await messenger.request(subject, DrainDrone(drone: droneID, cluster: clusterName, drain: !cancel), timeout: options.timeout)
        } catch {
            CLIError.request(error, subject: subject.subject, nobody: "Drone \(droneID) of cluster \(clusterName) did not answer; check the id with `plane list-drones`")
        }
        await messenger.client.close()
        if options.json {
            options.printJSON(["status": cancel ? "ready" : "draining", "drone": droneID.rawValue])
        } else {
            print(cancel ? "Draining cancelled on drone \(droneID)." : "Draining started on drone \(droneID).")
        }
    }
}
