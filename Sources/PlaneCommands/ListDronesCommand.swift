import ArgumentParser
import Foundation
import NATS
import PlaneCore
import PlaneMessaging

/// `plane list-drones`: the drones heard from, by listening to their heartbeats
/// (`drone.*.status`, sent every 4 s) for `--wait` seconds (v0.3.10 panicked here).
struct ListDronesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list-drones",
        abstract: "List the drones whose heartbeats arrive, with state and running backends.",
        discussion: "Exit status: 0 (also when none was heard), 3 no NATS."
    )

    @Option(name: .long, help: ArgumentHelp("Listen this long for heartbeats, in seconds.", valueName: "seconds")) var wait: Double = 5
    @Option(name: .long, help: "Only drones of this cluster.") var cluster: String?
    @OptionGroup var options: ClusterOptions

    func run() async throws {
        let messenger = await options.connect()
        let subscription: PlaneSubscription<DroneStatusMessage, NullReply>
        do {
            subscription = try await messenger.subscribe(PlaneSubjects.droneStatusAll)
        } catch {
            CLIError.exit("Cannot subscribe to drone heartbeats: \(error)", code: 3)
        }
        var drones: [String: DroneStatusMessage] = [:]
        // Any number on the command line is a wait from 0.1 s to a day (NaN and 1e300 included).
        let seconds = wait.isFinite ? min(max(0.1, wait), 86_400) : 86_400
        let deadline = ContinuousClock.now + .milliseconds(Int64(seconds * 1000))
        let stopper = Task {
            try? await Task.sleep(until: deadline)
            try? subscription.unsubscribe()
        }
        for await delivery in subscription {
            if case .success(let status) = delivery.message, cluster == nil || status.cluster.rawValue == cluster {
                drones[status.droneID.rawValue] = status
            }
            if ContinuousClock.now >= deadline { break }
        }
        stopper.cancel()
        await messenger.client.close()
        let sorted = drones.values.sorted { ($0.cluster.rawValue, $0.droneID.rawValue) < ($1.cluster.rawValue, $1.droneID.rawValue) }
        if options.json {
            for drone in sorted {
                let capacity = drone.capacity
                options.printJSON(["drone": drone.droneID.rawValue, "cluster": drone.cluster.rawValue, "ready": drone.ready, "state": drone.state.rawValue,
                                   "running_backends": drone.runningBackends.map { Int($0) }, "version": drone.droneVersion,
                                   "runtime": drone.runtime, "runtime_classes": drone.runtimeClasses.map(\.rawValue), "pool": drone.pool?.rawValue,
                                   "capabilities": drone.capabilities,
                                   "memory_bytes": capacity?.memoryBytes, "memory_free_bytes": capacity?.memoryFreeBytes, "cpus": capacity?.cpus,
                                   "backend_slots": capacity?.backendSlots.map { Int($0) }, "backend_slots_free": capacity?.backendSlotsFree.map { Int($0) }])
            }
        } else if sorted.isEmpty {
            print("No drone heartbeat within \(wait) s.")
        } else {
            print("DRONE\tCLUSTER\tSTATE\tREADY\tBACKENDS\tRUNTIME\tCLASSES\tPOOL\tMEM_FREE\tCPUS\tSLOTS_FREE\tVERSION")
            for drone in sorted {
                let classes = drone.runtimeClasses.isEmpty ? "-" : drone.runtimeClasses.map(\.rawValue).joined(separator: ",")
                let memory = drone.capacity?.memoryFreeBytes.map(Self.bytes) ?? "-"
                let cpus = drone.capacity?.cpus.map { String(format: "%g", $0) } ?? "-"
                let slots = drone.capacity?.backendSlotsFree.map(String.init) ?? "-"
                print("\(drone.droneID)\t\(drone.cluster)\t\(drone.state.rawValue)\t\(drone.ready)\t\(drone.runningBackends.map(String.init) ?? "-")\t"
                      + "\(drone.runtime ?? "-")\t\(classes)\t\(drone.pool?.rawValue ?? "default")\t\(memory)\t\(cpus)\t\(slots)\t\(drone.droneVersion)")
            }
        }
    }

    /// 1.5G, 512M, 900K, 12B.
    static func bytes(_ count: UInt64) -> String {
        let units: [(UInt64, String)] = [(1 << 40, "T"), (1 << 30, "G"), (1 << 20, "M"), (1 << 10, "K")]
        for (size, unit) in units where count >= size { return String(format: "%.1f", Double(count) / Double(size)) + unit }
        return "\(count)B"
    }
}
