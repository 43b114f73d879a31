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
        discussion: "Exit status: 0 scheduled (with --wait: ready), 1 refused, no drone available (with --wait: ended or not ready in time), 3 nothing answered (no NATS, no controller)."
    )

    @Argument(help: "The cluster, e.g. plane.test.") var cluster: String
    @Argument(help: "The container image, e.g. ghcr.io/org/app:1.") var image: String
    @Option(name: [.short, .long], help: "The port the backend listens on (default 8080).") var port: UInt16?
    @Option(name: [.short, .long], help: ArgumentHelp("An environment variable for the backend (repeatable).", valueName: "KEY=VALUE")) var env: [String] = []
    @Option(name: .long, help: ArgumentHelp("Stop the backend after this many seconds without a connection.", valueName: "seconds")) var timeout: UInt64 = 300
    @Option(name: .long, help: "Run at most one backend for this lock name; an existing live one is returned.") var lock: String?
    @Flag(name: .long, help: "Require a bearer token for requests to the backend.") var bearerToken = false
    @Option(name: .long, help: "Only on drones that have this runtime class ([agent] runtime_classes).") var runtimeClass: String?
    @Option(name: .long, help: "Only on drones of this pool ([agent] pool); without it, drones of the default pool.") var pool: String?
    @Option(name: .customLong("option"), help: ArgumentHelp("A runtime option (repeatable); VALUE is JSON when it parses as JSON, else a string.", valueName: "KEY=VALUE"))
    var runtimeOptions: [String] = []
    @Option(name: .long, help: ArgumentHelp("The backend's memory limit.", valueName: "bytes")) var memory: Int64?
    @Option(name: .long, help: ArgumentHelp("Ready once GET of this path answers below 400 (default: the drone's check).", valueName: "path")) var readinessPath: String?
    @Option(name: .long, help: ArgumentHelp("With --readiness-path: not ready within this long ends it TimedOutBeforeReady.", valueName: "seconds")) var readinessTimeout: UInt64?
    @Option(name: .long, help: ArgumentHelp("End the backend (Terminated) this long after it was spawned, busy or not.", valueName: "seconds")) var maxLifetime: UInt64?
    @Flag(name: .long, help: "Wait until the backend is Ready; exit 1 if it ends (or is not ready within --wait-timeout) first.") var wait = false
    @Option(name: .long, help: ArgumentHelp("With --wait: the longest to wait for Ready, in seconds.", valueName: "seconds")) var waitTimeout: Int = 300
    @Flag(name: [.short, .long], help: "Print only the backend id (for `backend=$(plane spawn -q ...)`).") var quiet = false
    @OptionGroup var options: ClusterOptions

    func validate() throws {
        for entry in env where !entry.contains("=") || entry.hasPrefix("=") {
            throw ValidationError("--env '\(entry)' is not KEY=VALUE.")
        }
        for entry in runtimeOptions where !entry.contains("=") || entry.hasPrefix("=") {
            throw ValidationError("--option '\(entry)' is not KEY=VALUE.")
        }
        if readinessTimeout != nil, readinessPath == nil { throw ValidationError("--readiness-timeout needs --readiness-path.") }
        if maxLifetime == 0 { throw ValidationError("--max-lifetime must be at least 1 second.") }
        if let memory, memory <= 0 { throw ValidationError("--memory must be a positive number of bytes.") }
    }

    /// `--option` entries as a JSON object: `pids_limit=64` is the integer 64, `oci_runtime=runsc`
    /// the string "runsc".
    static func runtimeOptionObject(_ entries: [String]) -> JSONObject {
        var object = JSONObject()
        for entry in entries {
            let parts = entry.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let text = parts.count > 1 ? String(parts[1]) : ""
            object[String(parts[0])] = (try? JSONParser.parse(text, limits: .wire)) ?? .string(text)
        }
        return object
    }

    func run() async throws {
        let clusterName: ClusterName
        var lockName: LockName?
        var runtimeClassName: FleetLabel?
        var poolName: FleetLabel?
        var readiness: ReadinessCheck?
        do {
            clusterName = try ClusterName(cluster)
            if let lock { lockName = try LockName(lock) }
            if let runtimeClass { runtimeClassName = try FleetLabel(runtimeClass) }
            if let pool { poolName = try FleetLabel(pool) }
            if let readinessPath { readiness = try ReadinessCheck(path: readinessPath, timeoutSeconds: readinessTimeout.map { DurationSeconds($0) }) }
        } catch {
            throw ValidationError(error.message)
        }
        var variables: [String: String] = [:]
        for entry in env {
            let parts = entry.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            variables[String(parts[0])] = parts.count > 1 ? String(parts[1]) : ""
        }
        var executable = DockerExecutableConfig(image: image, env: variables, port: port)
        executable.resourceLimits.memoryLimitBytes = memory
        let request = ScheduleRequest(cluster: clusterName, maxIdleSeconds: DurationSeconds(timeout), executable: executable,
                                      requireBearerToken: bearerToken, lock: lockName, runtimeClass: runtimeClassName, pool: poolName,
                                      runtimeOptions: Self.runtimeOptionObject(runtimeOptions), readiness: readiness,
                                      maxLifetimeSeconds: maxLifetime.map { DurationSeconds($0) })
        let messenger = await options.connect()
        let subject = PlaneSubjects.schedule(clusterName)
        let response: ScheduleResponse
        do {
            response = try await messenger.request(subject, request, timeout: options.timeout)
        } catch {
            CLIError.request(error, subject: subject.subject, nobody: "No controller answered for cluster \(clusterName); start `plane controller` with a [scheduler] for it")
        }
        switch response {
        case .scheduled(let backend):
            var state: BackendState?
            if wait {
                if !quiet && !options.json { print("Backend \(backend.backendID) scheduled on drone \(backend.drone); waiting until it is ready...") }
                state = await waitUntilReady(backend.backendID, messenger: messenger)
            }
            await messenger.client.close()
            report(backend, cluster: clusterName, state: state)
        case .noDroneAvailable(let reason):
            await messenger.client.close()
            if options.json { options.printJSON(["status": "no_drone_available", "reason": reason]) }
            if let reason { CLIError.exit("No drone is available in cluster \(clusterName): \(reason).", code: 1) }
            CLIError.exit("No drone is available in cluster \(clusterName): start a drone (`plane drone`) for it, or wait until one is ready.", code: 1)
        case .error(let error):
            await messenger.client.close()
            if options.json { options.printJSON(["status": "error", "code": error.code, "message": error.message]) }
            CLIError.exit("The scheduler refused the request: \(error.message) (\(error.code)).", code: 1)
        }
    }

    /// Prints the scheduled backend; with `--wait`, ends with exit 1 unless `state` is Ready.
    func report(_ backend: ScheduledBackend, cluster: ClusterName, state: BackendState?) {
        let url = "https://\(backend.backendID).\(cluster)"
        if options.json {
            options.printJSON(["status": "scheduled", "backend_id": backend.backendID.rawValue, "drone": backend.drone.rawValue, "url": url,
                               "bearer_token": backend.bearerToken, "spawned": backend.spawned, "state": state?.rawValue])
        } else if quiet {
            if !wait || state == .ready { print(backend.backendID) }
        } else {
            if !wait { print(backend.spawned ? "Backend scheduled." : "Backend already running for lock \(lock ?? "").") }
            if state == .ready { print("Backend is ready.") }
            print("URL: \(url)")
            print("Drone: \(backend.drone)")
            print("Backend ID: \(backend.backendID)")
            if let token = backend.bearerToken { print("Bearer token: \(token)") }
        }
        fflush(nil)
        guard wait, state != .ready else { return }
        if let state {
            CLIError.exit("Backend \(backend.backendID) ended as \(state.rawValue) before it was ready; see `plane logs \(backend.backendID)` and the drone's log.", code: 1)
        }
        CLIError.exit("Backend \(backend.backendID) was not ready within \(waitTimeout) s (--wait-timeout); `plane status \(backend.backendID) --follow` shows its state.", code: 1)
    }

    /// Follows the backend's history until it is Ready or ends (that state), or nil when
    /// `--wait-timeout` passes first.
    func waitUntilReady(_ backend: BackendID, messenger: PlaneMessenger) async -> BackendState? {
        let history: BackendStateHistory
        do {
            history = try await messenger.backendStateHistory(of: backend)
        } catch {
            CLIError.exit("Cannot read the backend_status stream to wait for \(backend): \(error)", code: 3)
        }
        let limit = Duration.seconds(min(max(1, waitTimeout), 365 * 86_400))
        return await withTaskGroup(of: BackendState?.self) { group in
            group.addTask {
                do {
                    for try await stored in history {
                        if case .success(let message) = stored.message, message.state == .ready || message.state.isTerminal { return message.state }
                    }
                } catch {}
                return nil
            }
            group.addTask {
                try? await Task.sleep(for: limit)
                return nil
            }
            let first = await group.next() ?? nil
            history.stop()
            group.cancelAll()
            return first
        }
    }
}
