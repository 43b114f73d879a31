import ArgumentParser
import Foundation
import PlaneCore
import PlaneMessaging

/// `plane spawn <cluster> <image>`: asks the cluster's scheduler for a backend (spec §8,
/// with the port of `--nats` honoured, `--lock`, `--bearer-token` and `--json` added).
struct SpawnCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "spawn",
        abstract: "Start a backend on the cluster and print its URL, drone and id.",
        discussion: "Exit status: 0 scheduled, 1 refused or no drone available, 3 nothing answered (no NATS, no controller)."
    )

    @Argument(help: "The cluster, e.g. plane.test.") var cluster: String
    @Argument(help: "The container image, e.g. ghcr.io/org/app:1.") var image: String
    @Option(name: [.short, .long], help: "The port the backend listens on (default 8080).") var port: UInt16?
    @Option(name: [.short, .long], help: ArgumentHelp("An environment variable for the backend (repeatable).", valueName: "KEY=VALUE")) var env: [String] = []
    @Option(name: .long, help: ArgumentHelp("Stop the backend after this many seconds without a connection.", valueName: "seconds")) var timeout: UInt64 = 300
    @Option(name: .long, help: "Run at most one backend for this lock name; an existing live one is returned.") var lock: String?
    @Flag(name: .long, help: "Require a bearer token for requests to the backend.") var bearerToken = false
    @OptionGroup var options: ClusterOptions

    func validate() throws {
        for entry in env where !entry.contains("=") || entry.hasPrefix("=") {
            throw ValidationError("--env '\(entry)' is not KEY=VALUE.")
        }
    }

    func run() async throws {
        let clusterName: ClusterName
        var lockName: LockName?
        do {
            clusterName = try ClusterName(cluster)
            if let lock { lockName = try LockName(lock) }
        } catch {
            throw ValidationError(error.message)
        }
        var variables: [String: String] = [:]
        for entry in env {
            let parts = entry.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            variables[String(parts[0])] = parts.count > 1 ? String(parts[1]) : ""
        }
        let request = ScheduleRequest(cluster: clusterName, maxIdleSeconds: DurationSeconds(timeout),
                                      executable: DockerExecutableConfig(image: image, env: variables, port: port),
                                      requireBearerToken: bearerToken, lock: lockName)
        let messenger = await options.connect()
        let subject = PlaneSubjects.schedule(clusterName)
        let response: ScheduleResponse
        do {
            response = try await messenger.request(subject, request, timeout: options.timeout)
        } catch {
            CLIError.request(error, subject: subject.subject, nobody: "No controller answered for cluster \(clusterName); start `plane controller` with a [scheduler] for it")
        }
        await messenger.client.close()
        switch response {
        case .scheduled(let backend):
            let url = "https://\(backend.backendID).\(clusterName)"
            if options.json {
                options.printJSON(["status": "scheduled", "backend_id": backend.backendID.rawValue, "drone": backend.drone.rawValue, "url": url,
                                   "bearer_token": backend.bearerToken, "spawned": backend.spawned])
            } else {
                print(backend.spawned ? "Backend scheduled." : "Backend already running for lock \(lock ?? "").")
                print("URL: \(url)")
                print("Drone: \(backend.drone)")
                print("Backend ID: \(backend.backendID)")
                if let token = backend.bearerToken { print("Bearer token: \(token)") }
            }
        case .noDroneAvailable:
            if options.json { options.printJSON(["status": "no_drone_available"]) }
            CLIError.exit("No drone is available in cluster \(clusterName): start a drone (`plane drone`) for it, or wait until one is ready.", code: 1)
        case .error(let error):
            if options.json { options.printJSON(["status": "error", "code": error.code, "message": error.message]) }
            CLIError.exit("The scheduler refused the request: \(error.message) (\(error.code)).", code: 1)
        }
    }
}
