import ArgumentParser
import PlaneCore
import PlaneMessaging

/// `plane terminate <cluster> <backend>`: asks the backend's drone to stop it (spec §8).
struct TerminateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "terminate",
        abstract: "Stop a backend.",
        discussion: "Exit status: 0 the drone accepted, 3 no drone answered (no such running backend, or no NATS). `plane status` shows when it has stopped."
    )

    @Argument(help: "The cluster, e.g. plane.test.") var cluster: String
    @Argument(help: "The backend id.") var backend: String
    @OptionGroup var options: ClusterOptions

    func run() async throws {
        let clusterName: ClusterName
        let backendID: BackendID
        do {
            clusterName = try ClusterName(cluster)
            backendID = try BackendID(backend)
        } catch {
            throw ValidationError(error.message)
        }
        let messenger = await options.connect()
        let subject = PlaneSubjects.terminate(clusterName, backendID)
        do {
            _ = try await messenger.request(subject, TerminationRequest(cluster: clusterName, backendID: backendID), timeout: options.timeout)
        } catch {
            CLIError.request(error, subject: subject.subject, nobody: "No drone of cluster \(clusterName) runs backend \(backendID)")
        }
        await messenger.client.close()
        if options.json { options.printJSON(["status": "terminating", "backend_id": backendID.rawValue]) } else { print("Termination requested for \(backendID).") }
    }
}
